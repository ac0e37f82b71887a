"""WeChat Pay API v3, JSAPI (paid inside the official account's web page), through `wechatpayv3` in
WeChat-Pay-public-key mode: responses and notifications are verified with the configured public key,
so nothing is downloaded at start-up. The pages and the notification endpoint are in
payments/wechatpay_views.py; turning WeChat Pay's answers into order changes is payments/reconcile.py."""
from __future__ import annotations

import json
import logging
import secrets
import time
from base64 import b64encode
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

import requests
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.hashes import SHA256
from sqlalchemy import update
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import rsa_verify

import messages
from payments.links import PayLinks
from settings import ConfigError, Settings, WeChatPaySettings
from store.db import Database
from store.models import Order

log = logging.getLogger(__name__)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
BEIJING = ZoneInfo("Asia/Shanghai")
APIV3_KEY_BYTES = 32
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"


class WeChatPayError(Exception):
    """A call to WeChat Pay that did not succeed: a network failure, an error answer, a bad signature."""

    def __init__(self, code: str, message: str = "", status: int | None = None):
        self.code, self.message, self.status = code, message, status
        super().__init__(f"{status or '-'} {code}: {message}")


class OrderNotFound(WeChatPayError):
    """WeChat Pay has no order under this out_trade_no (the page was never opened)."""


class NotificationRejected(Exception):
    """A notification we refuse (answered 4xx): forged, stale, or not about one of our orders."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted notification: TRANSACTION.SUCCESS or REFUND.*; `resource` is the plain JSON."""
    id: str
    event_type: str
    resource: dict[str, Any]


@dataclass(frozen=True)
class Transaction:
    """A payment as WeChat Pay reports it, in a notification or a query."""
    appid: str
    mchid: str
    out_trade_no: str
    transaction_id: str | None
    trade_state: str  # SUCCESS | NOTPAY | USERPAYING | CLOSED | PAYERROR | REFUND | REVOKED
    amount_total: int | None
    currency: str | None
    payer_openid: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Transaction":
        amount, payer = data.get("amount") or {}, data.get("payer") or {}
        return cls(appid=str(data.get("appid", "")), mchid=str(data.get("mchid", "")),
                   out_trade_no=str(data.get("out_trade_no", "")), transaction_id=data.get("transaction_id"),
                   trade_state=str(data.get("trade_state", "")), amount_total=amount.get("total"),
                   currency=amount.get("currency"), payer_openid=payer.get("openid"))


@dataclass(frozen=True)
class RefundResult:
    """A refund as WeChat Pay reports it (the refund API's answer, or a REFUND.* notification)."""
    mchid: str
    out_refund_no: str
    refund_id: str | None
    status: str  # PROCESSING | SUCCESS | CLOSED | ABNORMAL

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RefundResult":
        return cls(mchid=str(data.get("mchid", "")), out_refund_no=str(data.get("out_refund_no", "")),
                   refund_id=data.get("refund_id"), status=str(data.get("refund_status") or data.get("status") or ""))


class WeChatPayGateway:
    name = "wechatpay"

    def __init__(self, settings: Settings):
        config = settings.wechatpay
        self._private_key, self._public_key = check_config(settings)
        self.config = config
        self.appid = config.appid or settings.wechat.appid
        self.public_base_url = settings.payment.public_base_url.rstrip("/")
        self.notify_url = f"{self.public_base_url}/pay/notify"
        self.links = PayLinks(self.public_base_url, "/pay/wechat", settings.secret_key, salt="wechatpay-pay")
        self.client = WeChatPay(
            wechatpay_type=WeChatPayType.JSAPI, mchid=config.mchid, private_key=_pem(self._private_key),
            cert_serial_no=config.merchant_serial_no, appid=self.appid, apiv3_key=config.apiv3_key,
            notify_url=self.notify_url, timeout=config.http_timeout_seconds,
            public_key=_pem(self._public_key), public_key_id=config.public_key_id,
        )
        # wechatpayv3 hard-codes https://api.mch.weixin.qq.com in Core._gate_way and offers no option;
        # this is the one place that points it at the configured gateway (a local fake in tests).
        self.client._core._gate_way = config.api_base_url.rstrip("/")

    # -- links ------------------------------------------------------------------------------------

    def checkout_url(self, out_trade_no: str) -> str:
        return self.links.url(out_trade_no)

    def trade_no(self, token: str) -> str:
        return self.links.trade_no(token)

    # -- orders -----------------------------------------------------------------------------------

    def payable_until(self, order: Order) -> datetime:
        return order.created_at + timedelta(minutes=self.config.order_expire_minutes)

    def ensure_prepay(self, db: Database, order: Order, now: datetime) -> str:
        """The order's JSAPI prepay_id: the stored one while the order is payable, else a new JSAPI
        order at WeChat Pay, stored on the order. Called outside any transaction (it waits on the network)."""
        if order.prepay_id and order.expires_at and order.expires_at > now:
            return order.prepay_id
        expires_at = self.payable_until(order)
        prepay_id = self.create_jsapi_order(order, expires_at)
        with db.session() as session:
            session.execute(update(Order).where(Order.id == order.id)
                            .values(prepay_id=prepay_id, expires_at=expires_at)
                            .execution_options(synchronize_session=False))
        order.prepay_id, order.expires_at = prepay_id, expires_at
        return prepay_id

    def create_jsapi_order(self, order: Order, expires_at: datetime) -> str:
        data = self._call(self.client.pay, description=messages.WECHATPAY_DESCRIPTION,
                          out_trade_no=order.out_trade_no, amount={"total": order.amount_fen, "currency": "CNY"},
                          payer={"openid": order.openid}, time_expire=rfc3339(expires_at),
                          notify_url=self.notify_url, pay_type=WeChatPayType.JSAPI)
        prepay_id = data.get("prepay_id")
        if not prepay_id:
            raise WeChatPayError("NO_PREPAY_ID", "the JSAPI order answer has no prepay_id")
        return prepay_id

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """What the page hands to WeixinJSBridge's getBrandWCPayRequest, signed with the merchant key."""
        timestamp, nonce, package = str(int(time.time())), secrets.token_hex(16), f"prepay_id={prepay_id}"
        message = f"{self.appid}\n{timestamp}\n{nonce}\n{package}\n".encode("utf-8")
        signature = self._private_key.sign(message, padding.PKCS1v15(), SHA256())
        return {"appId": self.appid, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": b64encode(signature).decode("ascii")}

    def query(self, out_trade_no: str) -> Transaction:
        return Transaction.from_json(self._call(self.client.query, out_trade_no=out_trade_no))

    def close(self, out_trade_no: str) -> None:
        self._call(self.client.close, out_trade_no=out_trade_no)

    def refund(self, *, out_refund_no: str, out_trade_no: str, transaction_id: str | None, amount_fen: int,
               total_fen: int, reason: str) -> RefundResult:
        data = self._call(self.client.refund, out_refund_no=out_refund_no, transaction_id=transaction_id,
                          out_trade_no=None if transaction_id else out_trade_no, reason=reason,
                          amount={"refund": amount_fen, "total": total_fen, "currency": "CNY"},
                          notify_url=self.notify_url)
        return RefundResult.from_json(data)

    def query_refund(self, out_refund_no: str) -> RefundResult:
        data = self._call(self.client.query_refund, out_refund_no=out_refund_no)
        # The query's answer names no mchid (a notification does); it answered our own signed call.
        return RefundResult.from_json({**data, "mchid": self.config.mchid})

    def _call(self, method: Callable[..., tuple[int, Any]], **kwargs: Any) -> dict[str, Any]:
        try:
            status, text = method(**kwargs)
        except requests.RequestException as exc:
            raise WeChatPayError("NETWORK", str(exc)) from exc
        except Exception as exc:  # wechatpayv3 raises bare Exception, e.g. for a response that fails verification
            raise WeChatPayError("SDK", str(exc)) from exc
        data = _json_or_empty(text)
        if 200 <= status < 300:
            return data
        code, message = str(data.get("code", "HTTP_ERROR")), str(data.get("message", ""))
        error = OrderNotFound if status == 404 and code in ("ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS") else WeChatPayError
        raise error(code, message, status)

    # -- notifications ----------------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> Notification:
        """Verifies and decrypts a notification, or raises NotificationRejected saying why."""
        signed = _signature_headers(headers)
        # Checked first: with any other serial wechatpayv3 would try to download platform certificates.
        if signed["Wechatpay-Serial"] != self.config.public_key_id:
            raise NotificationRejected("unknown Wechatpay-Serial")
        if signed["Wechatpay-Signature-Type"] not in ("", SIGNATURE_TYPE):
            raise NotificationRejected("unsupported Wechatpay-Signature-Type")
        signed["Wechatpay-Signature-Type"] = SIGNATURE_TYPE
        self._check_timestamp(signed["Wechatpay-Timestamp"], time.time() if now is None else now)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotificationRejected("body is not UTF-8") from exc
        if not rsa_verify(signed["Wechatpay-Timestamp"], signed["Wechatpay-Nonce"], text,
                          signed["Wechatpay-Signature"], self._public_key):
            raise NotificationRejected("bad signature")
        data = self._decrypt(signed, text)
        resource = data.get("resource")
        if not isinstance(resource, dict) or not data.get("event_type"):
            raise NotificationRejected("no event_type or resource")
        return Notification(id=str(data.get("id", "")), event_type=str(data["event_type"]), resource=resource)

    def _check_timestamp(self, value: str, now: float) -> None:
        try:
            timestamp = int(value)
        except ValueError as exc:
            raise NotificationRejected("bad Wechatpay-Timestamp") from exc
        if abs(now - timestamp) > self.config.max_clock_skew_seconds:
            raise NotificationRejected("stale Wechatpay-Timestamp")

    def _decrypt(self, headers: dict[str, str], text: str) -> dict[str, Any]:
        try:
            data = self.client.callback(headers, text)  # verifies the signature again, then AES-256-GCM
        except Exception as exc:  # bare Exception for an unsupported algorithm; JSON errors
            raise NotificationRejected(f"unreadable notification: {exc}") from exc
        if not data:
            raise NotificationRejected("resource could not be decrypted")
        return data


def rfc3339(moment: datetime) -> str:
    """2026-11-24T10:34:56+08:00: the form WeChat Pay expects, in Beijing time."""
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def check_config(settings: Settings) -> tuple[rsa.RSAPrivateKey, rsa.RSAPublicKey]:
    """The merchant's private key and WeChat Pay's public key, loaded; raises ConfigError naming
    everything in [wechatpay] that cannot work."""
    config: WeChatPaySettings = settings.wechatpay
    required = ("mchid", "merchant_serial_no", "private_key_path", "apiv3_key", "public_key_path", "public_key_id")
    missing = [key for key in required if not str(getattr(config, key)).strip()]
    if missing:
        raise ConfigError(f"payment.gateway is \"wechatpay\" but [wechatpay] lacks: {', '.join(missing)}")
    if len(config.apiv3_key.encode("utf-8")) != APIV3_KEY_BYTES:
        raise ConfigError("wechatpay.apiv3_key must be the 32-character APIv3 key")
    if not config.public_key_id.startswith(PUBLIC_KEY_ID_PREFIX):
        raise ConfigError(f"wechatpay.public_key_id must be the WeChat Pay public key's id ({PUBLIC_KEY_ID_PREFIX}…)")
    if config.appid and config.appid != settings.wechat.appid:
        raise ConfigError("wechatpay.appid must be the official account's appid ([wechat] appid): "
                          "JSAPI pays with the openid the page learns through that account")
    if not config.api_base_url.startswith(("https://", "http://")):
        raise ConfigError("wechatpay.api_base_url must be an http(s) URL")
    return _load_private_key(config.private_key_path), _load_public_key(config.public_key_path)


def _load_private_key(path: str) -> rsa.RSAPrivateKey:
    data = _read(path, "private_key_path")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"wechatpay.private_key_path: {path} is not an unencrypted RSA private key PEM "
                          "(apiclient_key.pem)")
    return key


def _load_public_key(path: str) -> rsa.RSAPublicKey:
    data = _read(path, "public_key_path")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"wechatpay.public_key_path: {path} is not an RSA public key PEM (pub_key.pem)")
    return key


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"wechatpay.{key}: cannot read {path}: {exc.strerror}") from exc


def _pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """PKCS#8 / SubjectPublicKeyInfo PEM, the only forms wechatpayv3 parses (a PKCS#1 file is converted)."""
    if isinstance(key, rsa.RSAPrivateKey):
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    else:
        data = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data.decode("ascii")


def _signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    names = ("Wechatpay-Serial", "Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce",
             "Wechatpay-Signature-Type")
    return {name: str(headers.get(name) or "") for name in names}


def _json_or_empty(text: Any) -> dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {"message": text[:200]}
    return data if isinstance(data, dict) else {}
