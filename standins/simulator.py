"""WeChat's side of the webhook: signed (optionally AES-encrypted) XML pushes, as the platform sends them.

A `WeChatSimulator` builds the XML WeChat pushes for a user's message or event, signs it with the token
(`signature`, and in safe mode `msg_signature` over the encrypted envelope), posts it through a
transport and decodes the passive reply, checking the reply's own signature in safe mode.
Transports: `flask_transport` (a Flask test client) and `http_transport` (a real HTTP server).
"""
from __future__ import annotations

import itertools
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import urlencode

import requests
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

# (method, path with query, body) -> (HTTP status, body)
Transport = Callable[[str, str, bytes], tuple[int, bytes]]

DEFAULT_PATH = "/wechat"
DEFAULT_ACCOUNT_ID = "gh_0123456789ab"  # the official account's original id, WeChat's ToUserName
XML_CONTENT_TYPE = "text/xml"
EMPTY_REPLIES = (b"", b"success")


class ReplyError(Exception):
    """The webhook answered 200 with something WeChat would not accept as a passive reply."""


@dataclass(frozen=True)
class SimReply:
    status: int
    body: bytes
    msg_type: str | None = None
    content: str = ""
    media_id: str | None = None
    to_user: str | None = None
    from_user: str | None = None
    xml: str = ""  # the reply XML, decrypted in safe mode

    @property
    def empty(self) -> bool:
        return self.body.strip() in EMPTY_REPLIES


def flask_transport(client) -> Transport:
    """A transport through a Flask test client (`app.test_client()`)."""

    def send(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        response = client.open(path, method=method, data=body, content_type=XML_CONTENT_TYPE)
        return response.status_code, response.get_data()

    return send


def http_transport(base_url: str, session: requests.Session | None = None, timeout: float = 5.0) -> Transport:
    """A transport over HTTP to `base_url` (scheme://host:port), keeping the connection alive.

    The default timeout is WeChat's: it gives up on a webhook after 5 seconds.
    """
    session = session or requests.Session()
    root = base_url.rstrip("/")

    def send(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        response = session.request(
            method,
            root + path,
            data=body or None,
            headers={"Content-Type": XML_CONTENT_TYPE},
            timeout=timeout,
        )
        return response.status_code, response.content

    return send


class WeChatSimulator:
    """Pushes messages to a webhook the way the WeChat platform does, and decodes the replies."""

    def __init__(
        self,
        token: str,
        appid: str,
        encoding_aes_key: str,
        transport: Transport,
        aes: bool = False,
        clock: Callable[[], float] = time.time,
        *,
        path: str = DEFAULT_PATH,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ):
        self.token = token
        self.appid = appid
        self.transport = transport
        self.aes = aes
        self.clock = clock
        self.path = path
        self.account_id = account_id
        self._crypto = WeChatCrypto(token, encoding_aes_key, appid)
        # WeChat's MsgIds are 64-bit and globally unique: start somewhere random, then count up.
        self._msg_ids = itertools.count(10**15 + secrets.randbelow(2**52))

    # --- what a user does ----------------------------------------------------------------------

    def text(self, openid: str, content: str, msg_id: int | None = None) -> SimReply:
        return self.message(openid, "text", {"Content": content}, msg_id=msg_id)

    def image(self, openid: str, media_id: str, msg_id: int | None = None) -> SimReply:
        pic_url = f"http://mmbiz.qpic.cn/mmbiz_jpg/{media_id}/0"
        return self.message(openid, "image", {"PicUrl": pic_url, "MediaId": media_id}, msg_id=msg_id)

    def voice(self, openid: str, media_id: str, audio_format: str = "amr", msg_id: int | None = None) -> SimReply:
        return self.message(openid, "voice", {"MediaId": media_id, "Format": audio_format}, msg_id=msg_id)

    def event(self, openid: str, event: str = "subscribe", create_time: int | None = None) -> SimReply:
        """An event push (no MsgId: WeChat deduplicates events by FromUserName + CreateTime)."""
        return self.message(openid, "event", {"Event": event}, create_time=create_time)

    def message(
        self,
        openid: str,
        msg_type: str,
        fields: Mapping[str, object],
        msg_id: int | None = None,
        create_time: int | None = None,
    ) -> SimReply:
        """Any message type; every type but "event" carries a MsgId (a fresh one unless given)."""
        if msg_type != "event" and msg_id is None:
            msg_id = self.next_msg_id()
        xml = message_xml(
            to_user=self.account_id,
            from_user=openid,
            create_time=int(self.clock()) if create_time is None else create_time,
            msg_type=msg_type,
            fields=fields,
            msg_id=msg_id if msg_type != "event" else None,
        )
        return self.post_xml(xml, openid=openid)

    def next_msg_id(self) -> int:
        return next(self._msg_ids)

    # --- raw requests --------------------------------------------------------------------------

    def post_xml(
        self,
        xml_bytes: bytes,
        signature_ok: bool = True,
        timestamp: int | None = None,
        encrypt: bool | None = None,
        openid: str | None = None,
    ) -> SimReply:
        """POST a message body as WeChat would: signed, encrypted in safe mode (`encrypt` defaults to `aes`).

        `signature_ok=False` signs with a wrong token (a forged request); `timestamp` sets the signed
        timestamp (a stale or replayed request). The XML itself is sent as given, malformed or not.
        """
        encrypt = self.aes if encrypt is None else encrypt
        timestamp_text = str(int(self.clock()) if timestamp is None else timestamp)
        nonce = _nonce()
        token = self.token if signature_ok else self.token + "-forged"
        query = {"signature": _sign(token, timestamp_text, nonce), "timestamp": timestamp_text, "nonce": nonce}
        if openid is not None:
            query["openid"] = openid
        body = xml_bytes
        if encrypt:
            encrypted = PrpCrypto(self._crypto.key).encrypt(xml_bytes, self.appid).decode("ascii")
            body = envelope_xml(self.account_id, encrypted)
            query["encrypt_type"] = "aes"
            query["msg_signature"] = _sign(token, timestamp_text, nonce, encrypted)
        status, reply_body = self.transport("POST", f"{self.path}?{urlencode(query)}", body)
        return self._decode_reply(status, reply_body, encrypted=encrypt)

    def verify_url(self, echostr: str, signature_ok: bool = True) -> SimReply:
        """The GET WeChat sends when the webhook URL is configured; the server must echo `echostr`."""
        timestamp = str(int(self.clock()))
        nonce = _nonce()
        token = self.token if signature_ok else self.token + "-forged"
        query = {"signature": _sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "echostr": echostr}
        status, body = self.transport("GET", f"{self.path}?{urlencode(query)}", b"")
        return SimReply(status=status, body=body, content=body.decode("utf-8", "replace"))

    # --- replies -------------------------------------------------------------------------------

    def _decode_reply(self, status: int, body: bytes, encrypted: bool) -> SimReply:
        reply = SimReply(status=status, body=body)
        if status != 200 or reply.empty:
            return reply
        xml = self._decrypt_reply(body) if encrypted else body.decode("utf-8")
        root = _parse_xml(xml)
        msg_type = root.findtext("MsgType")
        return SimReply(
            status=status,
            body=body,
            msg_type=msg_type,
            content=root.findtext("Content") or "",
            media_id=root.findtext("Image/MediaId"),
            to_user=root.findtext("ToUserName"),
            from_user=root.findtext("FromUserName"),
            xml=xml,
        )

    def _decrypt_reply(self, body: bytes) -> str:
        """Check the safe-mode reply's MsgSignature and decrypt it (wechatpy raises on a bad signature)."""
        envelope = _parse_xml(body.decode("utf-8"))
        fields = {name: envelope.findtext(name) for name in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")}
        missing = [name for name, value in fields.items() if not value]
        if missing:
            raise ReplyError(f"safe-mode reply lacks {', '.join(missing)}: {body[:200]!r}")
        return self._crypto.decrypt_message(
            body, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"]
        )


def message_xml(
    to_user: str,
    from_user: str,
    create_time: int,
    msg_type: str,
    fields: Mapping[str, object],
    msg_id: int | None = None,
) -> bytes:
    """The XML WeChat pushes for a message or event, in WeChat's element order."""
    nodes = [
        _cdata_node("ToUserName", to_user),
        _cdata_node("FromUserName", from_user),
        f"<CreateTime>{create_time}</CreateTime>",
        _cdata_node("MsgType", msg_type),
    ]
    nodes += [_node(name, value) for name, value in fields.items()]
    if msg_id is not None:
        nodes.append(f"<MsgId>{msg_id}</MsgId>")
    return ("<xml>" + "".join(nodes) + "</xml>").encode("utf-8")


def envelope_xml(account_id: str, encrypted: str) -> bytes:
    """The safe-mode request body: only the account id and the ciphertext."""
    return f"<xml>{_cdata_node('ToUserName', account_id)}{_cdata_node('Encrypt', encrypted)}</xml>".encode("utf-8")


def _node(name: str, value: object) -> str:
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    return _cdata_node(name, str(value))


def _cdata_node(name: str, value: str) -> str:
    # "]]>" cannot appear inside CDATA: split it across two sections.
    safe = value.replace("]]>", "]]]]><![CDATA[>")
    return f"<{name}><![CDATA[{safe}]]></{name}>"


def _parse_xml(text: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise ReplyError(f"reply is not XML ({exc}): {text[:200]!r}") from exc


def _sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def _nonce() -> str:
    return str(secrets.randbelow(10**10))
