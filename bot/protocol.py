"""WeChat's side of the webhook, framework-free: signatures, timestamps, AES, parsing, replies."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import ImageReply, TransferCustomerServiceReply

from bot import wechat_xml
from bot.replay import MemoryNonceStore, NonceStore, fingerprint, nonce_key, ttl_for
from handlers.base import Incoming, Reply
from settings import WeChatSettings

EMPTY_REPLY = b"success"  # WeChat's documented "no reply" answer


class ProtocolError(Exception):
    """A request we refuse, with the HTTP status to answer it with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted and parsed request."""
    message: Any  # a wechatpy message or event
    incoming: Incoming
    encrypted: bool
    retry_key: str
    # The replay check left to the message's transaction (take_nonce): (key, fingerprint, ttl).
    nonce: tuple[str, str, int] | None = None


class WeChatProtocol:
    def __init__(self, settings: WeChatSettings, clock: Callable[[], float] = time.time,
                 nonces: NonceStore | None = None):
        """nonces: where used (timestamp, nonce) pairs are remembered; shared by every process in a
        deployment (bot/replay.py), or this process's memory when none is given."""
        self.settings = settings
        self.clock = clock
        self.mode = settings.message_mode
        self.nonces = nonces if nonces is not None else MemoryNonceStore()
        self.crypto = (WeChatCrypto(settings.token, settings.encoding_aes_key, settings.appid)
                       if settings.encoding_aes_key else None)

    def verify_url(self, args: Mapping[str, str]) -> str:
        """GET /wechat: the server-address check WeChat runs when the URL is configured."""
        self._check_signature(args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", ""))
        echostr = args.get("echostr")
        if not echostr:
            raise ProtocolError(400, "missing echostr")
        return echostr

    def open(self, args: Mapping[str, str], body: bytes, defer_nonce: bool = False) -> Opened:
        """defer_nonce: a nonce store in the database takes the pair in the caller's transaction
        (take_nonce) instead of one of its own."""
        timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
        encrypted = args.get("encrypt_type", "raw").lower() == "aes"
        _refuse_declarations(body)
        if encrypted:
            xml = self._decrypt(body, args.get("msg_signature", ""), timestamp, nonce)
        elif self.mode == "safe":
            # The plain signature does not cover the body: anyone holding one query string could
            # write any message under it.
            raise ProtocolError(403, "plain request refused in safe mode")
        else:
            self._check_signature(args.get("signature", ""), timestamp, nonce)
            xml = body
        message = _parse(xml)
        pending = None
        if self.mode != "safe":
            # In safe mode msg_signature covers the ciphertext, so a pair cannot carry another message.
            pending = self._check_replay(timestamp, nonce, message, defer_nonce)
        return Opened(message=message, incoming=to_incoming(message), encrypted=encrypted,
                      retry_key=retry_key(message), nonce=pending)

    def take_nonce(self, opened: Opened, session) -> Callable[[], None] | None:
        """The replay check open() left to the message's transaction (`session`): the pair's INSERT is queued
        there (store/driver.queue, to go out with the statements queued after it); the check it returns
        refuses the message once that has gone out. None: nothing was left to check."""
        if opened.nonce is None:
            return None
        key, mine, ttl = opened.nonce
        holder = self.nonces.queue_in(session, key, mine, ttl)

        def check() -> None:
            if holder() != mine:
                raise ProtocolError(403, "nonce already used by another message (replayed query string)")
        return check

    def render(self, reply: Reply, opened: Opened) -> str:
        """The plaintext passive reply (kept for retries); seal() encrypts it per request."""
        if reply.empty:
            return EMPTY_REPLY.decode()
        if reply.transfer_to_kf:
            return TransferCustomerServiceReply(message=opened.message).render()
        if reply.image_media_id:
            return ImageReply(message=opened.message, media_id=reply.image_media_id).render()
        return wechat_xml.text_reply(opened.message, reply.text)

    def seal(self, reply_xml: str, encrypted: bool) -> bytes:
        """A stored plaintext reply, encrypted afresh when the request was."""
        if reply_xml == EMPTY_REPLY.decode() or not encrypted:
            return reply_xml.encode("utf-8")
        return self.crypto.encrypt_message(reply_xml, secrets.token_hex(8), str(int(self.clock()))).encode("utf-8")

    def _check_signature(self, signature: str, timestamp: str, nonce: str) -> None:
        expected = _sha1(self.settings.token, timestamp, nonce)
        if not signature or not hmac.compare_digest(expected, signature):
            raise ProtocolError(403, "bad signature")
        self._check_timestamp(timestamp)

    def _check_timestamp(self, timestamp: str) -> None:
        try:
            skew = abs(self.clock() - int(timestamp))
        except ValueError:
            raise ProtocolError(403, "bad timestamp") from None
        if skew > self.settings.max_clock_skew_seconds:
            raise ProtocolError(403, f"stale timestamp ({int(skew)} s off)")

    def _check_replay(self, timestamp: str, nonce: str, message, defer: bool) -> tuple[str, str, int] | None:
        """A (timestamp, nonce) belongs to the first message that used it; WeChat's retries of that
        message may repeat it and go on to the retry guard. Deferred: what take_nonce takes."""
        mine = fingerprint(message._data)
        ttl = ttl_for(timestamp, self.settings.max_clock_skew_seconds, self.clock())
        key = nonce_key(timestamp, nonce)
        if defer and hasattr(self.nonces, "queue_in"):
            self.nonces.maybe_purge()
            return key, mine, ttl
        if self.nonces.take(key, mine, ttl) != mine:
            raise ProtocolError(403, "nonce already used by another message (replayed query string)")
        return None

    def _decrypt(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        if not msg_signature:
            raise ProtocolError(403, "missing msg_signature")
        if self.crypto is None:
            raise ProtocolError(403, "encrypted request, but no encoding_aes_key is configured")
        try:
            envelope = wechat_xml.read_envelope(body)
            xml = self.crypto.decrypt_message(envelope, msg_signature, timestamp, nonce)
        except InvalidSignatureException:
            raise ProtocolError(403, "bad msg_signature") from None
        except InvalidAppIdException:
            raise ProtocolError(403, "message for another appid") from None
        except Exception as exc:  # malformed envelope: no Encrypt, bad base64, bad padding…
            raise ProtocolError(400, f"malformed encrypted body: {type(exc).__name__}") from None
        self._check_timestamp(timestamp)
        return xml


def _sha1(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def _refuse_declarations(body: bytes) -> None:
    # WeChat never sends DTDs; refusing them closes the door on entity-expansion tricks.
    head = body[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise ProtocolError(400, "XML declarations are not accepted")


def _parse(xml: str | bytes):
    try:
        message = wechat_xml.parse_message(xml)
    except Exception as exc:  # expat errors, a root that is not <xml>, no MsgType…
        raise ProtocolError(400, f"malformed XML: {type(exc).__name__}") from None
    data = getattr(message, "_data", None)
    if not isinstance(data, dict) or not message.source or not data.get("CreateTime"):
        raise ProtocolError(400, "not a WeChat message")
    return message


def to_incoming(message) -> Incoming:
    data = message._data
    raw_type = str(data.get("MsgType", "")).lower()
    msg_id = str(data["MsgId"]) if data.get("MsgId") else None
    if raw_type == "text":
        return Incoming(message.source, "text", text=data.get("Content") or "", raw_type=raw_type, msg_id=msg_id)
    if raw_type == "image":
        return Incoming(message.source, "image", media_id=data.get("MediaId"), raw_type=raw_type, msg_id=msg_id)
    if raw_type == "event":
        return Incoming(message.source, "event", event=str(data.get("Event", "")).lower(), raw_type=raw_type)
    return Incoming(message.source, "other", raw_type=raw_type or "unknown", msg_id=msg_id)


def retry_key(message) -> str:
    """WeChat retries with the same MsgId; events carry none, so sender + CreateTime stand in."""
    data = message._data
    if data.get("MsgId"):
        return f"msg:{data['MsgId']}"
    return f"evt:{message.source}:{data.get('CreateTime')}"
