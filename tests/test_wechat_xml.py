"""bot/wechat_xml.py reads WeChat's pushes and writes the text reply without xmltodict and wechatpy's field
classes, for speed: it must read and write exactly what wechatpy does."""
from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest
import wechatpy
from wechatpy.replies import TextReply

from bot import wechat_xml
from standins.simulator import message_xml
from tests.conftest import simulator_for

HEAD = ("<ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[o_reader]]></FromUserName>"
        "<CreateTime>1796040566</CreateTime>")

PUSHES = {
    "text": f"<xml>{HEAD}<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[帮助]]></Content>"
            "<MsgId>1000123456789012</MsgId></xml>",
    "text, spaces and a line break kept in CDATA": f"<xml>{HEAD}<MsgType>text</MsgType><Content><![CDATA[  张三\n"
                                                   "  ]]></Content><MsgId>7</MsgId></xml>",
    "text, empty": f"<xml>{HEAD}<MsgType>text</MsgType><Content></Content><MsgId>8</MsgId></xml>",
    "text, entities": f"<xml>{HEAD}<MsgType>text</MsgType><Content>a &amp; b &lt;c&gt;</Content><MsgId>9</MsgId></xml>",
    "image": f"<xml>{HEAD}<MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x/0]]></PicUrl>"
             "<MediaId><![CDATA[media_1]]></MediaId><MsgId>10</MsgId></xml>",
    "voice": f"<xml>{HEAD}<MsgType>voice</MsgType><MediaId>m</MediaId><Format>amr</Format><MsgId>11</MsgId></xml>",
    "location": f"<xml>{HEAD}<MsgType>location</MsgType><Location_X>39.9</Location_X><Location_Y>116.4</Location_Y>"
                "<Scale>15</Scale><Label><![CDATA[北京]]></Label><MsgId>12</MsgId></xml>",
    "link": f"<xml>{HEAD}<MsgType>link</MsgType><Title>t</Title><Description>d</Description><Url>u</Url>"
            "<MsgId>13</MsgId></xml>",
    "an unknown type": f"<xml>{HEAD}<MsgType>miniprogrampage</MsgType><MsgId>14</MsgId></xml>",
    "subscribe": f"<xml>{HEAD}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>",
    "subscribe by a QR code": f"<xml>{HEAD}<MsgType>event</MsgType><Event>subscribe</Event>"
                              "<EventKey>qrscene_123</EventKey><Ticket>t</Ticket></xml>",
    "subscribe by a product scan": f"<xml>{HEAD}<MsgType>event</MsgType><Event>subscribe</Event>"
                                   "<EventKey>scanbarcode|x</EventKey></xml>",
    "a menu click": f"<xml>{HEAD}<MsgType>event</MsgType><Event>CLICK</Event><EventKey>HELP</EventKey></xml>",
    "a scan push, nested": f"<xml>{HEAD}<MsgType>event</MsgType><Event>scancode_push</Event><EventKey>k</EventKey>"
                           "<ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>r</ScanResult></ScanCodeInfo></xml>",
    "photos sent from the menu, a repeated item": (
        f"<xml>{HEAD}<MsgType>event</MsgType><Event>pic_sysphoto</Event><EventKey>k</EventKey>"
        "<SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>a</PicMd5Sum></item>"
        "<item><PicMd5Sum>b</PicMd5Sum></item></PicList></SendPicsInfo></xml>"),
    "a device event": f"<xml>{HEAD}<MsgType>device_event</MsgType><Event>bind</Event><DeviceType>d</DeviceType></xml>",
    "attributes, and text beside children": (
        f'<xml>{HEAD}<MsgType>text</MsgType><Content lang="zh">帮助</Content>'
        "<Extra>before<Inner>i</Inner>after</Extra><MsgId>15</MsgId></xml>"),
    "the simulator's text": message_xml(to_user="gh_sim", from_user="o_sim", create_time=1796040566,
                                        msg_type="text", fields={"Content": "我叫 张三"}, msg_id=16).decode(),
}


@pytest.mark.parametrize("xml", PUSHES.values(), ids=PUSHES.keys())
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_a_push_is_read_as_wechatpy_reads_it(xml, as_bytes):
    given = xml.encode() if as_bytes else xml
    ours, theirs = wechat_xml.parse_message(given), wechatpy.parse_message(given)
    assert type(ours) is type(theirs)
    assert ours._data == theirs._data
    assert (ours.source, ours.target, ours.create_time) == (theirs.source, theirs.target, theirs.create_time)


@pytest.mark.parametrize("xml", [
    "<xml><Hello>world</Hello></xml>",  # no MsgType
    "<notxml><MsgType>text</MsgType></notxml>",
    "<xml><MsgType>text</MsgType>",
    "<xml>just text</xml>",
    "not xml at all",
])
def test_what_wechatpy_cannot_read_is_not_read(xml):
    with pytest.raises(Exception):
        wechatpy.parse_message(xml)
    with pytest.raises(Exception):
        wechat_xml.parse_message(xml)


def test_declarations_are_refused_wherever_they_stand():
    """The push's first 4 KiB are checked before the body is opened; the document as parsed, all of it."""
    padding = "<!--" + " " * 5000 + "-->"
    bomb = (f'{padding}<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            f"<xml>{HEAD}<MsgType>text</MsgType><Content>&lol2;</Content><MsgId>4</MsgId></xml>")
    with pytest.raises(ValueError, match="declarations"):
        wechat_xml.parse_message(bomb.encode())


def test_a_body_that_is_not_utf8_is_refused():
    with pytest.raises(UnicodeDecodeError):
        wechat_xml.parse_message(PUSHES["text"].encode("utf-16"))


@pytest.mark.parametrize("content", ["请一字不差地输入院校全称。", "您输入的是 a ]]> b", ""])
def test_the_text_reply_is_wechatpys(content):
    message = wechatpy.parse_message(PUSHES["text"])
    ours = wechat_xml.text_reply(message, content)
    theirs = TextReply(message=message, content=wechat_xml.cdata_safe(content)).render()
    assert STAMP.sub("", ours) == STAMP.sub("", theirs)
    assert abs(_stamp(ours) - _stamp(theirs)) <= 1
    assert wechatpy.parse_message(ours).content == wechatpy.parse_message(theirs).content  # the text comes back


STAMP = re.compile(r"<CreateTime>(\d+)</CreateTime>")


def _stamp(xml: str) -> int:
    return int(STAMP.search(xml).group(1))


def test_a_user_name_that_would_end_the_cdata_section_stays_inside_it():
    """wechatpy writes the names as they came; a "]]>" in one (a forged push) would end its section."""
    message = wechat_xml.parse_message(PUSHES["text"].replace("o_reader", "o_]]]]><![CDATA[><evil/>"))
    assert message.source == "o_]]><evil/>"
    reply = wechat_xml.parse_message(wechat_xml.text_reply(message, "好"))
    assert (reply.target, reply.content) == ("o_]]><evil/>", "好")


def test_an_encrypted_push_carrying_a_declaration_is_a_400(app):
    """Safe mode opens the envelope before the XML inside is read: the declaration check is the parser's."""
    wechat = simulator_for(app, aes=True)
    inner = (b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><xml><ToUserName>gh</ToUserName><FromUserName>o_x'
             b"</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&a;</Content>"
             b"<MsgId>5</MsgId></xml>")
    assert wechat.post_xml(inner).status == 400


def test_an_envelope_is_read_as_xmltodict_reads_it_and_opens_the_same():
    """wechatpy's decrypt_message reads a string envelope through xmltodict; given ours, it opens the same."""
    import xmltodict
    from wechatpy.crypto import WeChatCrypto

    from tests.conftest import AES_KEY, APPID, TOKEN

    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    envelope = crypto.encrypt_message(PUSHES["text"], "nonce-1", "1700000000")
    signature = xmltodict.parse(envelope)["xml"]["MsgSignature"]
    envelope = envelope.replace("<xml>", "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>", 1)
    ours = wechat_xml.read_envelope(envelope.encode())
    assert ours == xmltodict.parse(envelope)["xml"]
    assert crypto.decrypt_message(ours, signature, "1700000000", "nonce-1") == PUSHES["text"]


@pytest.mark.parametrize("envelope", [b"<xml>just text</xml>", b"<notxml><Encrypt>x</Encrypt></notxml>", b"<xml>",
                                      b'<!DOCTYPE x [<!ENTITY a "a">]><xml><Encrypt>&a;</Encrypt></xml>'])
def test_an_envelope_that_is_not_one_is_refused(envelope):
    with pytest.raises((ValueError, ElementTree.ParseError)):
        wechat_xml.read_envelope(envelope)
