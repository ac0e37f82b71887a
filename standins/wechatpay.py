"""A local stand-in for WeChat Pay API v3 (https://api.mch.weixin.qq.com), for tests and demos.

A real HTTP server on 127.0.0.1 (port 0 picks a free port) speaking the API the JSAPI gateway uses:
JSAPI orders, order queries, closing, refunds. It checks the merchant's `Authorization:
WECHATPAY2-SHA256-RSA2048 …` signature against the merchant public key (401 SIGN_ERROR otherwise) and
signs every answer with the "platform" private key under the public key id, like WeChat Pay in
public-key mode. Test controls play the candidate (`pay`) and WeChat Pay's side of notifications:
signed, AES-256-GCM-encrypted, posted to the notify_url the merchant gave.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from base64 import b64decode, b64encode
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

from standins.loopback import LoopbackHandler, LoopbackServer

logger = logging.getLogger(__name__)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
MAX_CLOCK_SKEW_SECONDS = 300
BEIJING = ZoneInfo("Asia/Shanghai")
AUTHORIZATION = re.compile(r"^WECHATPAY2-SHA256-RSA2048\s+(.*)$")
AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')

Headers = dict[str, str]
# (url, headers, body) -> HTTP status of the merchant's answer
Deliver = Callable[[str, Headers, bytes], int]


class ApiError(Exception):
    """An answer WeChat Pay gives as {"code": …, "message": …} with an HTTP error status."""

    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{status} {code}: {message}")


@dataclass
class FakeOrder:
    out_trade_no: str
    appid: str
    mchid: str
    description: str
    amount_total: int
    currency: str
    payer_openid: str
    notify_url: str
    time_expire: str | None
    prepay_id: str
    request: dict[str, Any]
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: str | None = None


@dataclass
class FakeRefund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str | None
    amount_refund: int
    amount_total: int
    reason: str
    notify_url: str
    request: dict[str, Any]
    status: str = "PROCESSING"
    create_time: str = field(default_factory=lambda: _rfc3339(time.time()))


@dataclass(frozen=True)
class Delivery:
    """A notification posted to the merchant, and how it answered."""
    url: str
    headers: Headers
    body: bytes
    status: int


class FakeWeChatPay(LoopbackServer):
    """WeChat Pay on 127.0.0.1. Thread-safe; use as a context manager."""

    def __init__(self, *, mchid: str, appid: str, apiv3_key: str, merchant_serial_no: str,
                 merchant_public_key: rsa.RSAPublicKey, platform_private_key: rsa.RSAPrivateKey,
                 public_key_id: str, port: int = 0, deliver: Deliver | None = None):
        super().__init__(port)
        self.mchid, self.appid = mchid, appid
        self.apiv3_key = apiv3_key
        self.merchant_serial_no = merchant_serial_no
        self.merchant_public_key = merchant_public_key
        self.platform_private_key = platform_private_key
        self.public_key_id = public_key_id
        self.deliver: Deliver = deliver or post_over_http
        self.lost_notifications = False  # True: pay() and refund_success() post nothing (they still return it)
        self._lock = threading.Lock()
        self._orders: dict[str, FakeOrder] = {}
        self._refunds: dict[str, FakeRefund] = {}
        self._notifications: list[Delivery] = []
        self._requests: list[tuple[str, str]] = []
        self._refund_requests = 0
        self._failing_refunds: list[ApiError] = []
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, dict | None]]]] = [
            ("POST", re.compile(r"^/v3/pay/transactions/jsapi$"), self._create_jsapi),
            ("GET", re.compile(r"^/v3/pay/transactions/out-trade-no/([^/]+)$"), self._query),
            ("POST", re.compile(r"^/v3/pay/transactions/out-trade-no/([^/]+)/close$"), self._close),
            ("POST", re.compile(r"^/v3/refund/domestic/refunds$"), self._create_refund),
            ("GET", re.compile(r"^/v3/refund/domestic/refunds/([^/]+)$"), self._query_refund),
        ]

    # --- lifecycle -------------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    @property
    def base_url(self) -> str:
        return f"http://{self.address()}"

    # --- test controls: the candidate and WeChat Pay's notifications -------------------------------

    def pay(self, out_trade_no: str, openid: str | None = None, notify: bool = True) -> tuple[Headers, bytes]:
        """The candidate pays the order in WeChat. Posts TRANSACTION.SUCCESS to the order's notify_url
        (unless notify is False or notifications are lost) and returns it (headers, body) for replays."""
        with self._lock:
            order = self._orders.get(out_trade_no)
            if order is None:
                raise ValueError(f"no JSAPI order {out_trade_no}")
            if order.trade_state != "NOTPAY":
                raise ValueError(f"order {out_trade_no} is {order.trade_state}, it cannot be paid")
            if openid is not None and openid != order.payer_openid:
                raise ValueError(f"order {out_trade_no} is for {order.payer_openid}, not {openid}")
            if order.time_expire and datetime.fromisoformat(order.time_expire) <= datetime.now(timezone.utc):
                raise ValueError(f"order {out_trade_no} expired at {order.time_expire}")
            order.trade_state = "SUCCESS"
            order.transaction_id = "4200" + "".join(secrets.choice("0123456789") for _ in range(24))
            order.success_time = _rfc3339(time.time())
            resource = self._transaction_json(order)
        notification = self.notification("TRANSACTION.SUCCESS", "transaction", resource, "支付成功")
        if notify:
            self._post(order.notify_url, notification)
        return notification

    def refund_success(self, out_refund_no: str, status: str = "SUCCESS", notify: bool = True) -> tuple[Headers, bytes]:
        """The refund finishes (SUCCESS, CLOSED or ABNORMAL); REFUND.<status> goes to its notify_url."""
        with self._lock:
            refund = self._refunds[out_refund_no]
            refund.status = status
            resource = {
                "mchid": self.mchid, "out_trade_no": refund.out_trade_no, "transaction_id": refund.transaction_id,
                "out_refund_no": refund.out_refund_no, "refund_id": refund.refund_id, "refund_status": status,
                "success_time": _rfc3339(time.time()), "user_received_account": "支付用户零钱",
                "amount": {"total": refund.amount_total, "refund": refund.amount_refund,
                           "payer_total": refund.amount_total, "payer_refund": refund.amount_refund},
            }
        notification = self.notification(f"REFUND.{status}", "refund", resource, "退款成功")
        if notify:
            self._post(refund.notify_url, notification)
        return notification

    def fail_next_refunds(self, count: int, status: int = 500, code: str = "SYSTEM_ERROR") -> None:
        """Answer the next `count` refund requests with this error (nothing is refunded)."""
        with self._lock:
            self._failing_refunds = [ApiError(status, code, "系统繁忙，请稍后重试") for _ in range(count)]

    def notification(self, event_type: str, original_type: str, resource: dict[str, Any], summary: str, *,
                     timestamp: int | None = None, serial: str | None = None) -> tuple[Headers, bytes]:
        """A notification as WeChat Pay sends it: the resource encrypted with the APIv3 key, the whole
        body signed. `timestamp` and `serial` let tests forge stale or foreign ones."""
        nonce = secrets.token_urlsafe(9)[:12]
        ciphertext = AESGCM(self.apiv3_key.encode("utf-8")).encrypt(
            nonce.encode("ascii"), json.dumps(resource, ensure_ascii=False).encode("utf-8"),
            original_type.encode("ascii"))
        envelope = {
            "id": secrets.token_hex(18), "create_time": _rfc3339(time.time()), "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": summary,
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": b64encode(ciphertext).decode("ascii"), "associated_data": original_type,
                         "nonce": nonce},
        }
        body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
        return self.sign(body, timestamp=timestamp, serial=serial), body

    def sign(self, body: bytes, *, timestamp: int | None = None, serial: str | None = None) -> Headers:
        """The Wechatpay-* headers of a body signed with the platform key."""
        stamp, nonce = str(int(time.time()) if timestamp is None else timestamp), secrets.token_hex(16)
        message = f"{stamp}\n{nonce}\n".encode("utf-8") + body + b"\n"
        signature = self.platform_private_key.sign(message, padding.PKCS1v15(), SHA256())
        return {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": b64encode(signature).decode("ascii"),
                "Wechatpay-Serial": self.public_key_id if serial is None else serial,
                "Wechatpay-Signature-Type": SIGNATURE_TYPE, "Request-ID": secrets.token_hex(16)}

    def transaction_json(self, out_trade_no: str) -> dict[str, Any]:
        with self._lock:
            return self._transaction_json(self._orders[out_trade_no])

    def _post(self, url: str, notification: tuple[Headers, bytes]) -> None:
        if self.lost_notifications:
            return
        headers, body = notification
        status = self.deliver(url, headers, body)
        with self._lock:
            self._notifications.append(Delivery(url, headers, body, status))

    # --- observations ----------------------------------------------------------------------------

    def order(self, out_trade_no: str) -> FakeOrder | None:
        with self._lock:
            order = self._orders.get(out_trade_no)
            return FakeOrder(**asdict(order)) if order else None

    @property
    def orders(self) -> list[FakeOrder]:
        with self._lock:
            return [FakeOrder(**asdict(order)) for order in self._orders.values()]

    @property
    def refunds(self) -> list[FakeRefund]:
        """Refunds accepted, one per out_refund_no."""
        with self._lock:
            return [FakeRefund(**asdict(refund)) for refund in self._refunds.values()]

    @property
    def refund_requests(self) -> int:
        """Refund API calls received (a repeat of the same refund counts again)."""
        with self._lock:
            return self._refund_requests

    @property
    def notifications(self) -> list[Delivery]:
        """Notifications posted so far, with the merchant's answer."""
        with self._lock:
            return list(self._notifications)

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._requests)

    # --- the API (called from server threads) ----------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, bytes, Headers]:
        path = urlsplit(raw_path).path
        with self._lock:
            self._requests.append((method, path))
        try:
            self._check_authorization(method, raw_path, headers, body)
            status, payload = self._route(method, path, urlsplit(raw_path).query, body)
        except ApiError as error:
            status, payload = error.status, {"code": error.code, "message": error.message}
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8") if payload is not None else b""
        return status, data, self.sign(data)

    def _route(self, method: str, path: str, query: str, body: bytes) -> tuple[int, dict | None]:
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match and route_method == method:
                params = {key: values[-1] for key, values in parse_qs(query).items()}
                return handler(*match.groups(), params=params, body=_json_body(body) if method == "POST" else {})
        raise ApiError(404, "NOT_FOUND", "no such API")

    def _check_authorization(self, method: str, raw_path: str, headers: Any, body: bytes) -> None:
        match = AUTHORIZATION.match(headers.get("Authorization", ""))
        params = dict(AUTH_PARAM.findall(match.group(1))) if match else {}
        if not match or set(params) < {"mchid", "nonce_str", "signature", "timestamp", "serial_no"}:
            raise ApiError(401, "SIGN_ERROR", "Authorization 格式错误")
        if params["mchid"] != self.mchid or params["serial_no"] != self.merchant_serial_no:
            raise ApiError(401, "SIGN_ERROR", "商户号或证书序列号错误")
        if not params["timestamp"].isdigit() or abs(time.time() - int(params["timestamp"])) > MAX_CLOCK_SKEW_SECONDS:
            raise ApiError(401, "SIGN_ERROR", "时间戳超出范围")
        message = (f"{method}\n{raw_path}\n{params['timestamp']}\n{params['nonce_str']}\n".encode("utf-8")
                   + body + b"\n")
        try:
            self.merchant_public_key.verify(b64decode(params["signature"]), message, padding.PKCS1v15(), SHA256())
        except (InvalidSignature, ValueError) as exc:
            raise ApiError(401, "SIGN_ERROR", "签名错误") from exc

    def _create_jsapi(self, *, params: dict, body: dict) -> tuple[int, dict]:
        required = ("appid", "mchid", "description", "out_trade_no", "notify_url", "amount", "payer")
        missing = [key for key in required if not body.get(key)]
        if missing:
            raise ApiError(400, "PARAM_ERROR", f"缺少参数 {', '.join(missing)}")
        if body["mchid"] != self.mchid or body["appid"] != self.appid:
            raise ApiError(400, "PARAM_ERROR", "appid 和 mch_id 不匹配")
        amount, openid = body["amount"], body["payer"].get("openid")
        if not isinstance(amount.get("total"), int) or amount["total"] <= 0 or not openid:
            raise ApiError(400, "PARAM_ERROR", "amount.total 或 payer.openid 无效")
        with self._lock:
            existing = self._orders.get(body["out_trade_no"])
            if existing is not None:
                return self._repeat_jsapi(existing, body)
            order = FakeOrder(out_trade_no=body["out_trade_no"], appid=body["appid"], mchid=body["mchid"],
                              description=body["description"], amount_total=amount["total"],
                              currency=amount.get("currency", "CNY"), payer_openid=openid,
                              notify_url=body["notify_url"], time_expire=body.get("time_expire"),
                              prepay_id="wx" + secrets.token_hex(16), request=body)
            self._orders[order.out_trade_no] = order
        return 200, {"prepay_id": order.prepay_id}

    @staticmethod
    def _repeat_jsapi(order: FakeOrder, body: dict) -> tuple[int, dict]:
        """The same out_trade_no again: the same prepay_id while unpaid and unchanged."""
        if order.trade_state == "SUCCESS":
            raise ApiError(400, "ORDERPAID", "该订单已支付")
        if order.trade_state == "CLOSED":
            raise ApiError(400, "ORDER_CLOSED", "该订单已关闭")
        if order.request != body:
            raise ApiError(400, "INVALID_REQUEST", "201 商户订单号重复")
        return 200, {"prepay_id": order.prepay_id}

    def _query(self, out_trade_no: str, *, params: dict, body: dict) -> tuple[int, dict]:
        if params.get("mchid") != self.mchid:
            raise ApiError(400, "PARAM_ERROR", "mchid 错误")
        with self._lock:
            order = self._orders.get(out_trade_no)
            if order is None:
                raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
            return 200, self._transaction_json(order)

    def _close(self, out_trade_no: str, *, params: dict, body: dict) -> tuple[int, None]:
        if body.get("mchid") != self.mchid:
            raise ApiError(400, "PARAM_ERROR", "mchid 错误")
        with self._lock:
            order = self._orders.get(out_trade_no)
            if order is None:
                raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
            if order.trade_state == "SUCCESS":
                raise ApiError(400, "ORDERPAID", "该订单已支付")
            order.trade_state = "CLOSED"
        return 204, None

    def _create_refund(self, *, params: dict, body: dict) -> tuple[int, dict]:
        out_refund_no, amount = body.get("out_refund_no"), body.get("amount") or {}
        if not out_refund_no or not isinstance(amount.get("refund"), int) or not isinstance(amount.get("total"), int):
            raise ApiError(400, "PARAM_ERROR", "缺少 out_refund_no 或 amount")
        with self._lock:
            self._refund_requests += 1
            if self._failing_refunds:
                raise self._failing_refunds.pop()
            existing = self._refunds.get(out_refund_no)
            if existing is not None:
                if existing.request != body:
                    raise ApiError(400, "INVALID_REQUEST", "退款单号重复，且请求参数与原退款不一致")
                return 200, self._refund_json(existing)
            order = self._find_paid_order(body)
            if amount["total"] != order.amount_total or not 0 < amount["refund"] <= order.amount_total:
                raise ApiError(400, "PARAM_ERROR", "退款金额与订单金额不符")
            refund = FakeRefund(out_refund_no=out_refund_no, refund_id="50" + secrets.token_hex(14),
                                out_trade_no=order.out_trade_no, transaction_id=order.transaction_id,
                                amount_refund=amount["refund"], amount_total=amount["total"],
                                reason=body.get("reason", ""), notify_url=body.get("notify_url") or order.notify_url,
                                request=body)
            self._refunds[out_refund_no] = refund
            return 200, self._refund_json(refund)

    def _find_paid_order(self, body: dict) -> FakeOrder:
        if body.get("transaction_id"):
            order = next((o for o in self._orders.values() if o.transaction_id == body["transaction_id"]), None)
        else:
            order = self._orders.get(body.get("out_trade_no", ""))
        if order is None:
            raise ApiError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if order.trade_state != "SUCCESS":
            raise ApiError(400, "INVALID_REQUEST", "订单未支付，不能退款")
        return order

    def _query_refund(self, out_refund_no: str, *, params: dict, body: dict) -> tuple[int, dict]:
        with self._lock:
            refund = self._refunds.get(out_refund_no)
            if refund is None:
                raise ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            return 200, self._refund_json(refund)

    def _transaction_json(self, order: FakeOrder) -> dict[str, Any]:
        data: dict[str, Any] = {
            "appid": order.appid, "mchid": order.mchid, "out_trade_no": order.out_trade_no,
            "trade_type": "JSAPI", "trade_state": order.trade_state,
            "trade_state_desc": {"NOTPAY": "订单未支付", "SUCCESS": "支付成功", "CLOSED": "订单已关闭"}.get(
                order.trade_state, order.trade_state),
            "payer": {"openid": order.payer_openid},
            "amount": {"total": order.amount_total, "currency": order.currency},
        }
        if order.trade_state == "SUCCESS":
            data.update(transaction_id=order.transaction_id, success_time=order.success_time, bank_type="OTHERS",
                        attach="")
            data["amount"].update(payer_total=order.amount_total, payer_currency=order.currency)
        return data

    @staticmethod
    def _refund_json(refund: FakeRefund) -> dict[str, Any]:
        return {"refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
                "transaction_id": refund.transaction_id, "out_trade_no": refund.out_trade_no, "channel": "ORIGINAL",
                "user_received_account": "支付用户零钱", "create_time": refund.create_time, "status": refund.status,
                "amount": {"total": refund.amount_total, "refund": refund.amount_refund,
                           "payer_total": refund.amount_total, "payer_refund": refund.amount_refund,
                           "currency": "CNY"}}


def post_over_http(url: str, headers: Headers, body: bytes) -> int:
    """How WeChat Pay delivers a notification: an HTTP POST of the JSON body."""
    response = requests.post(url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=5)
    return response.status_code


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "PARAM_ERROR", "请求体不是合法的 JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "PARAM_ERROR", "请求体不是 JSON 对象")
    return data


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, BEIJING).isoformat(timespec="seconds")


def _make_handler(api: FakeWeChatPay) -> type[BaseHTTPRequestHandler]:
    class Handler(LoopbackHandler):
        server_version = "FakeWeChatPay"

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            status, data, headers = api.handle(method, self.path, self.headers, self.read_body())
            content_type = [("Content-Type", "application/json; charset=utf-8")] if data else []
            self.send(status, data, [*content_type, *headers.items()])

    return Handler
