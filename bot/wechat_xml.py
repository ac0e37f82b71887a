"""The XML of WeChat's pushes and of the text reply, read and written on the webhook's hot path.

wechatpy reads a push through xmltodict, whose expat callbacks are Python functions (about 200 000
instructions a message, 7 % of a text step), and writes a reply through its field classes (about 96 000).
`parse_message` builds the same dictionary from ElementTree's C parser and hands it to the same wechatpy
message class; `text_reply` writes the same XML as wechatpy's TextReply. tests/test_wechat_xml.py holds
both to wechatpy's own output.
"""
from __future__ import annotations

import time
from xml.etree import ElementTree

from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage


def parse_message(xml: str | bytes):
    """What wechatpy.parse_message returns for `xml` (its dispatch, kept as it is), or an exception for XML
    it could not read (not UTF-8, ElementTree's ParseError, a root that is not <xml>, no MsgType…) or will
    not: a document type declaration. xmltodict refused entity declarations; ElementTree would expand
    them, so none is let through, in a push or in the plaintext of an encrypted one."""
    message = _read(xml)
    message_type = message["MsgType"].lower()
    if message_type == "event" or message_type.startswith("device_"):
        return _event_class(message, message_type)(message)
    return MESSAGE_TYPES.get(message_type, UnknownMessage)(message)


def read_envelope(xml: str | bytes) -> dict:
    """An encrypted push's envelope (<xml><ToUserName/><Encrypt/></xml>) as xmltodict reads it, for
    wechatpy's decrypt_message, which would otherwise read it through xmltodict itself (about 30 µs of the
    40 a decryption cost, measured 1 Dec 2026). The same declarations are refused as in parse_message."""
    envelope = _read(xml)
    if not isinstance(envelope, dict):
        raise ValueError("an envelope without elements")
    return envelope


def _read(xml: str | bytes):
    """The <xml> document as xmltodict reads it (_value), declarations refused."""
    text = xml.decode("utf-8") if isinstance(xml, bytes) else xml  # as wechatpy's to_text: UTF-8 or nothing
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError("XML declarations are not accepted")
    root = ElementTree.fromstring(text)
    if root.tag != "xml":
        raise ValueError(f"root element <{root.tag}>, not <xml>")
    return _value(root)


def _value(element):
    """xmltodict's reading of an element: its text (stripped; None when empty) when it has neither
    attributes nor children; else a dict of "@attribute", child tag (a list when repeated) and "#text"."""
    children = list(element)
    text = "".join([element.text or "", *(child.tail or "" for child in children)]).strip() or None
    if not children and not element.attrib:
        return text
    value = {f"@{name}": attribute for name, attribute in element.attrib.items()}
    for child in children:
        item = _value(child)
        if child.tag not in value:
            value[child.tag] = item
        elif isinstance(value[child.tag], list):
            value[child.tag].append(item)
        else:
            value[child.tag] = [value[child.tag], item]
    if text is not None:
        value["#text"] = text
    return value


def _event_class(message: dict, message_type: str):
    # wechatpy.parser.parse_message's event dispatch, line for line.
    event_type = None
    if "Event" in message:
        event_type = message["Event"].lower()
    if event_type is None and message_type.startswith("device_"):
        event_type = message_type
    elif message_type.startswith("device_"):
        event_type = f"device_{event_type}"
    if event_type == "subscribe" and message.get("EventKey"):
        event_key = message["EventKey"]
        if event_key.startswith(("scanbarcode|", "scanimage|")):
            event_type = "subscribe_scan_product"
            message["Event"] = event_type
        elif event_key.startswith("qrscene_"):
            event_type = "subscribe_scan"
            message["Event"] = event_type
            message["EventKey"] = event_key[len("qrscene_"):]
    return EVENT_TYPES.get(event_type, UnknownMessage)


def text_reply(message, content: str) -> str:
    """wechatpy's TextReply(message=message, content=cdata_safe(content)).render(): to the sender, from the
    account, stamped now. The content and the two user names are made safe inside their CDATA sections (a
    "]]>" in what the candidate typed, echoed back, or in a forged push's names)."""
    return ("<xml>\n<MsgType><![CDATA[text]]></MsgType>\n"
            f"<Content><![CDATA[{cdata_safe(content)}]]></Content>\n"
            f"<FromUserName><![CDATA[{cdata_safe(message.target)}]]></FromUserName>\n"
            f"<ToUserName><![CDATA[{cdata_safe(message.source)}]]></ToUserName>\n"
            f"<CreateTime>{int(time.time())}</CreateTime>\n</xml>")


def cdata_safe(text: str) -> str:
    # A "]]>" in the text would end the CDATA section early: split the section around it instead.
    return text.replace("]]>", "]]]]><![CDATA[>")
