"""A local stand-in for Tencent Cloud SMS (API 3.0, version 2021-01-11: SendSms, and the delivery reports of
PullSmsSendStatusByPhoneNumber), for tests and demos.

It is a real HTTP server on 127.0.0.1 that checks what the real endpoint checks: the TC3-HMAC-SHA256
`Authorization` header (recomputed from the request with the configured SecretKey), the timestamp
(more than 300 s off: AuthFailure.SignatureExpire), the X-TC-Action/Version/Region headers, the
SmsSdkAppId, the signature name, the template id and its parameter count, and each phone number.
It answers with Tencent Cloud's JSON (`{"Response": {"SendStatusSet": [...], "RequestId": ...}}`, or
`{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`, always HTTP 200), so the official SDK,
pointed at `endpoint` with scheme "http", cannot tell the difference.

Test controls: `fail_next` (a per-number code, a whole-request error, an HTTP 500 or a dropped
connection), `stall_next`/`wait_stalled`/`release` (hold a request in flight), `withhold_reports` (the
carrier has not reported yet), `sent`, `wait_for`, `pulls`. Every accepted message is reported delivered
at once, with the SessionContext it was sent with.

A stalled request that is released after its client went away (a timeout, a killed worker) is NOT
recorded as sent: before recording, the handler peeks at the client's socket, and end-of-file there
means nobody is waiting for the answer. Such requests are counted in `abandoned`. This mirrors the
only case in which the real service's outcome matters to us: a message counts as sent exactly when
the sender can still learn that it was.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Mapping

from standins.loopback import LoopbackHandler, LoopbackServer

logger = logging.getLogger(__name__)

SERVICE = "sms"
ACTION = "SendSms"
PULL_ACTION = "PullSmsSendStatusByPhoneNumber"  # the delivery reports of one number, by time
MAX_PULL_LIMIT = 100
VERSION = "2021-01-11"
MAX_CLOCK_SKEW_SECONDS = 300
MAX_NUMBERS_PER_REQUEST = 200
STALLED_EOF_GRACE_SECONDS = 0.05
JSON_CONTENT_TYPE = "application/json"  # exactly this: the SDK only parses errors for this type
_AUTHORIZATION = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<secret_id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/,\s]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$")
_MAINLAND_MOBILE = re.compile(r"^(?:\+86|0086|86)?(1[3-9][0-9]{9})$")
FAILURE_KINDS = ("number", "request", "http500", "close")


class TencentError(Exception):
    """A request the real service answers with `Response.Error`."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SentSms:
    phone: str  # E.164
    template_id: str
    params: list[str]
    sign_name: str
    serial_no: str
    accepted_at: float = field(default_factory=time.time)  # epoch seconds
    session_context: str = ""


@dataclass
class _Failure:
    kind: str
    code: str


@dataclass
class _Stall:
    after_accepting: bool = False  # held with the message already sent, its answer not yet given
    released: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class _Drop(Exception):
    """Close the connection without answering."""


class FakeTencentSms(LoopbackServer):
    """Tencent Cloud SMS on 127.0.0.1 (port 0 picks a free port). Thread-safe; use as a context manager.

    `templates` maps each approved template id to its number of parameters.
    """

    def __init__(self, secret_id: str, secret_key: str, sdk_app_id: str, sign_name: str,
                 templates: Mapping[str, int], region: str = "ap-guangzhou", port: int = 0,
                 clock: Callable[[], float] = time.time):
        super().__init__(port)
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.templates = dict(templates)
        self.region = region
        self.clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sent: list[SentSms] = []
        self._requests = 0
        self._abandoned = 0
        self._failures: list[_Failure] = []
        self._stalls_wanted: list[bool] = []  # after_accepting, for each stall asked for
        self._claimed: list[_Stall] = []  # stalls given to requests, holding or about to hold
        self._stalled: list[_Stall] = []  # those holding now
        self._reports_withheld = False
        self._pulls = 0
        self._connections: set[socket.socket] = set()

    # --- lifecycle -------------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def stop(self) -> None:
        """Stops listening and closes open (keep-alive) connections, so that a stopped fake refuses
        every request, as a server that is down would; stalled requests are released first."""
        if self._server is not None:
            self.release(wait=False)
        super().stop()

    def _closing(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def endpoint(self) -> str:
        """What goes in `[sms] endpoint` (with scheme = "http")."""
        return self.address()

    @property
    def base_url(self) -> str:
        return f"http://{self.endpoint}/"

    # --- test controls ---------------------------------------------------------------------------

    def fail_next(self, count: int = 1, code: str = "LimitExceeded.PhoneNumberDailyLimit",
                  kind: str = "number") -> None:
        """Fail the next `count` well-formed, authenticated requests (a look-up of delivery reports fails
        with any kind but "number"). `kind`:
        "number": HTTP 200, `SendStatusSet[].Code = code` (how throttling and bad numbers come back);
        "request": HTTP 200, `Response.Error.Code = code` (how template, signature, auth errors come back);
        "http500": an HTTP 500 with a text body; "close": the connection is closed without an answer."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"kind must be one of {FAILURE_KINDS}")
        with self._lock:
            self._failures.extend(_Failure(kind, code) for _ in range(count))

    def stall_next(self, count: int = 1, after_accepting: bool = False) -> None:
        """Hold the next `count` accepted requests until `release()`: before they are recorded as sent,
        or, `after_accepting`, once recorded and before the answer (a sender killed then never learns)."""
        with self._lock:
            self._stalls_wanted += [after_accepting] * count

    def wait_stalled(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least `count` requests are being held."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._stalled) >= count, timeout):
                raise TimeoutError(f"expected {count} stalled request(s) within {timeout}s, got {len(self._stalled)}")

    def release(self, wait: bool = True, timeout: float = 5.0) -> None:
        """Let every held request go on (and cancel stalls asked for but not used yet). With `wait`,
        returns once each has been recorded as sent or as abandoned (its client gone)."""
        with self._lock:
            stalls, self._claimed, self._stalled = self._claimed, [], []
            self._stalls_wanted = []
        for stall in stalls:
            stall.released.set()
        if wait:
            for stall in stalls:
                if not stall.done.wait(timeout):
                    raise TimeoutError("a released request did not finish")

    def withhold_reports(self, withheld: bool = True) -> None:
        """Delivery reports not in yet: PullSmsSendStatusByPhoneNumber finds nothing (the carrier has not
        reported, as happens for seconds to minutes after a message is accepted)."""
        with self._lock:
            self._reports_withheld = withheld

    # --- observations ----------------------------------------------------------------------------

    @property
    def sent(self) -> list[SentSms]:
        """Messages accepted so far, in order (a snapshot)."""
        with self._lock:
            return list(self._sent)

    @property
    def requests(self) -> int:
        """HTTP requests received (any outcome)."""
        with self._lock:
            return self._requests

    @property
    def pulls(self) -> int:
        """PullSmsSendStatusByPhoneNumber requests answered."""
        with self._lock:
            return self._pulls

    @property
    def abandoned(self) -> int:
        """Released stalled requests whose client had gone away; not sent."""
        with self._lock:
            return self._abandoned

    def wait_for(self, count: int, timeout: float = 5.0) -> list[SentSms]:
        """Block until at least `count` messages were accepted; all of them. TimeoutError if not."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._sent) >= count, timeout):
                raise TimeoutError(f"expected {count} SMS within {timeout}s, got {len(self._sent)}")
            return list(self._sent)

    # --- request handling (server threads) -------------------------------------------------------

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes,
               connection: socket.socket) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body) for one request; raises _Drop to close without answering."""
        with self._lock:
            self._requests += 1
        request_id = str(uuid.uuid4())
        stall = None
        try:
            self._check_signature(method, path, query, headers, body)
            self._check_headers(headers)
            params = _json_body(body)
            if headers.get("X-TC-Action") == PULL_ACTION:
                return 200, JSON_CONTENT_TYPE, _encode({**self._pull(params), "RequestId": request_id})
            numbers = self._check_params(params)
            stall = self._claim_stall()
            held_before = stall is not None and not stall.after_accepting
            if held_before:
                self._hold(stall)
            statuses = self._deliver(params, numbers, connection, stalled=held_before)
            if stall is not None and stall.after_accepting:
                self._hold(stall)
        except TencentError as error:
            payload = {"Error": {"Code": error.code, "Message": error.message}, "RequestId": request_id}
            return 200, JSON_CONTENT_TYPE, _encode(payload)
        except _HttpFailure as failure:
            return failure.status, "text/plain", failure.body
        finally:
            if stall is not None:
                stall.done.set()  # recorded as sent, or as abandoned, by now
        return 200, JSON_CONTENT_TYPE, _encode({"SendStatusSet": statuses, "RequestId": request_id})

    def _check_signature(self, method: str, path: str, query: str, headers: Any, body: bytes) -> None:
        match = _AUTHORIZATION.match(headers.get("Authorization", ""))
        if match is None:
            raise TencentError("AuthFailure.InvalidAuthorization", "Authorization in the request header is invalid.")
        if match["secret_id"] != self.secret_id:
            raise TencentError("AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that "
                                                               "your SecretId is correct.")
        try:
            timestamp = int(headers.get("X-TC-Timestamp", ""))
        except ValueError:
            raise TencentError("MissingParameter", "The request is missing a required parameter `Timestamp`.")
        if abs(self.clock() - timestamp) > MAX_CLOCK_SKEW_SECONDS:
            raise TencentError("AuthFailure.SignatureExpire", f"Signature expired. Timestamp {timestamp}, "
                                                              f"server time {int(self.clock())}.")
        # The SDK's unsignedPayload mode signs the literal "UNSIGNED-PAYLOAD" instead of the body.
        payload = b"UNSIGNED-PAYLOAD" if headers.get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD" else body
        expected = tc3_signature(self.secret_key, method, path, query, headers, match["signed"].split(";"),
                                 payload, timestamp, match["service"])
        scope_ok = match["service"] == SERVICE and match["date"] == _utc_date(timestamp)
        if not scope_ok or not hmac.compare_digest(expected, match["signature"]):
            raise TencentError("AuthFailure.SignatureFailure", "The provided credentials could not be validated. "
                                                               "Please check your signature is correct.")

    def _check_headers(self, headers: Any) -> None:
        if headers.get("X-TC-Action") not in (ACTION, PULL_ACTION):
            raise TencentError("InvalidAction", f"The action {headers.get('X-TC-Action')!r} is not found.")
        if headers.get("X-TC-Version") != VERSION:
            raise TencentError("NoSuchVersion", f"The version {headers.get('X-TC-Version')!r} is not supported.")
        if headers.get("X-TC-Region") != self.region:
            raise TencentError("UnsupportedRegion", f"The region {headers.get('X-TC-Region')!r} is not supported.")

    def _deliver(self, params: dict[str, Any], numbers: list[str], connection: socket.socket,
                 stalled: bool) -> list[dict[str, Any]]:
        # After a stall, give a client that has just been killed a moment for its FIN to arrive.
        if _client_gone(connection, wait=STALLED_EOF_GRACE_SECONDS if stalled else 0.0):
            with self._changed:
                self._abandoned += 1
                self._changed.notify_all()
            logger.info("client went away while its SendSms was stalled; not sent")
            raise _Drop()
        failure = self._next_failure()
        if failure is not None and failure.kind != "number":
            _raise_failure(failure)
        return [self._status(number, params, failure) for number in numbers]

    def _pull(self, params: dict[str, Any]) -> dict[str, Any]:
        """The delivery reports of one number between BeginTime and EndTime (Offset is always 0)."""
        for name in ("BeginTime", "Offset", "Limit", "PhoneNumber", "SmsSdkAppId"):
            if params.get(name) is None:
                raise TencentError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        if params["SmsSdkAppId"] != self.sdk_app_id:
            raise TencentError("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId does not exist.")
        if params["Offset"] != 0 or not 0 < params["Limit"] <= MAX_PULL_LIMIT:
            raise TencentError("InvalidParameter", "Offset must be 0 and Limit between 1 and 100.")
        failure = self._next_failure(whole_request_only=True)  # fail_next answers a look-up too
        if failure is not None:
            _raise_failure(failure)
        begin, end = params["BeginTime"], params.get("EndTime") or self.clock()
        with self._lock:
            self._pulls += 1
            found = [] if self._reports_withheld else [
                sms for sms in self._sent if sms.phone == params["PhoneNumber"] and begin <= sms.accepted_at <= end]
        return {"PullSmsSendStatusSet": [_report(sms) for sms in found[:params["Limit"]]]}

    def _check_params(self, params: dict[str, Any]) -> list[str]:
        for name in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
            if not params.get(name):
                raise TencentError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        numbers = params["PhoneNumberSet"]
        template_params = params.get("TemplateParamSet") or []
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise TencentError("InvalidParameter", "PhoneNumberSet must be an array of strings.")
        if len(numbers) > MAX_NUMBERS_PER_REQUEST:
            raise TencentError("LimitExceeded.PhoneNumberCountLimit", "More than 200 phone numbers in one request.")
        if not isinstance(template_params, list) or not all(isinstance(p, str) for p in template_params):
            raise TencentError("InvalidParameter", "TemplateParamSet must be an array of strings.")
        if params["SmsSdkAppId"] != self.sdk_app_id:
            raise TencentError("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId does not exist.")
        if params.get("SignName") != self.sign_name:
            raise TencentError("FailedOperation.SignatureIncorrectOrUnapproved",
                               "signature format is incorrect or signature is not approved")
        if params["TemplateId"] not in self.templates:
            raise TencentError("FailedOperation.TemplateIncorrectOrUnapproved",
                               "template is not approved or request content does not match the approved template content")
        if len(template_params) != self.templates[params["TemplateId"]]:
            raise TencentError("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                               "the number of template parameters does not match the approved template")
        return numbers

    def _claim_stall(self) -> _Stall | None:
        """A stall for this request, if one was asked for; `release` lets it go even before it holds."""
        with self._lock:
            if not self._stalls_wanted:
                return None
            stall = _Stall(self._stalls_wanted.pop(0))
            self._claimed.append(stall)
            return stall

    def _hold(self, stall: _Stall) -> None:
        with self._changed:
            self._stalled.append(stall)
            self._changed.notify_all()
        stall.released.wait()

    def _next_failure(self, whole_request_only: bool = False) -> _Failure | None:
        """The next injected failure; `whole_request_only` leaves a per-number one for the next SendSms."""
        with self._lock:
            if not self._failures or (whole_request_only and self._failures[0].kind == "number"):
                return None
            return self._failures.pop(0)

    def _status(self, number: str, params: dict[str, Any], failure: _Failure | None) -> dict[str, Any]:
        match = _MAINLAND_MOBILE.match(number)
        e164 = "+86" + match[1] if match else number
        if match is None:
            return _status(e164, "InvalidParameterValue.IncorrectPhoneNumber", "phone number format is incorrect")
        if failure is not None:
            return _status(e164, failure.code, f"injected failure {failure.code}")
        serial = f"2433:{uuid.uuid4().int % 10**28:028d}"
        record = SentSms(e164, params["TemplateId"], list(params.get("TemplateParamSet") or []),
                         params.get("SignName", ""), serial, self.clock(), params.get("SessionContext", ""))
        with self._changed:
            self._sent.append(record)
            self._changed.notify_all()
        return {"SerialNo": serial, "PhoneNumber": e164, "Fee": 1, "SessionContext": params.get("SessionContext", ""),
                "Code": "Ok", "Message": "send success", "IsoCode": "CN"}


class _HttpFailure(Exception):
    def __init__(self, status: int, body: bytes):
        super().__init__(status)
        self.status = status
        self.body = body


def _raise_failure(failure: _Failure) -> None:
    if failure.kind == "request":
        raise TencentError(failure.code, f"injected failure {failure.code}")
    if failure.kind == "http500":
        raise _HttpFailure(500, b"Internal Server Error")
    raise _Drop()


def _report(sms: SentSms) -> dict[str, Any]:
    return {"UserReceiveTime": int(sms.accepted_at), "CountryCode": "86", "SubscriberNumber": sms.phone[3:],
            "PhoneNumber": sms.phone, "SerialNo": sms.serial_no, "ReportStatus": "SUCCESS",
            "Description": "DELIVRD", "SessionContext": sms.session_context}


def _status(e164: str, code: str, message: str) -> dict[str, Any]:
    return {"SerialNo": "", "PhoneNumber": e164, "Fee": 0, "SessionContext": "", "Code": code,
            "Message": message, "IsoCode": "CN" if e164.startswith("+86") else ""}


def tc3_signature(secret_key: str, method: str, path: str, query: str, headers: Any, signed_headers: list[str],
                  payload: bytes, timestamp: int, service: str) -> str:
    """The TC3-HMAC-SHA256 signature of a request, as the server recomputes it."""
    canonical_headers = "".join(f"{name}:{(headers.get(name) or '').strip().lower()}\n" for name in signed_headers)
    canonical_request = "\n".join([method, path, query, canonical_headers, ";".join(signed_headers),
                                   hashlib.sha256(payload).hexdigest()])
    date = _utc_date(timestamp)
    string_to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), f"{date}/{service}/tc3_request",
                                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = ("TC3" + secret_key).encode("utf-8")
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        params = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TencentError("InvalidParameter", "The request body is not valid JSON.")
    if not isinstance(params, dict):
        raise TencentError("InvalidParameter", "The request body must be a JSON object.")
    return params


def _encode(response: dict[str, Any]) -> bytes:
    return json.dumps({"Response": response}, ensure_ascii=False).encode("utf-8")


def _client_gone(connection: socket.socket, wait: float = 0.0) -> bool:
    """True when the client closed its end: the socket is readable and a peek reads end-of-file.
    (A client that sent more data, e.g. a pipelined request, is still there.)"""
    try:
        readable, _, _ = select.select([connection], [], [], wait)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _make_handler(fake: FakeTencentSms) -> type[BaseHTTPRequestHandler]:
    class Handler(LoopbackHandler):
        server_version = "FakeTencentSms"

        def setup(self) -> None:
            super().setup()
            fake._track(self.connection, True)

        def finish(self) -> None:
            fake._track(self.connection, False)
            super().finish()

        def do_POST(self) -> None:
            path, _, query = self.path.partition("?")
            if path != "/":
                self.send(404, b"Not Found", [("Content-Type", "text/plain")])
                return
            try:
                status, content_type, payload = fake.handle("POST", path, query, self.headers, self.read_body(),
                                                            self.connection)
            except _Drop:
                self.close_connection = True
                return
            try:
                self.send(status, payload, [("Content-Type", content_type)])
            except (BrokenPipeError, ConnectionResetError):
                logger.info("client went away before the response was sent")
                self.close_connection = True

    return Handler
