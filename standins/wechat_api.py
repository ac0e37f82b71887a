"""A local stand-in for the WeChat official-account HTTP API, for tests, demos and the bench.

It is a real HTTP server on 127.0.0.1 speaking the same protocol as https://api.weixin.qq.com/cgi-bin/:
access tokens (with expiry), temporary media download/upload, customer-service messages and the
web-page OAuth of snsapi_base (/connect/oauth2/authorize, /sns/oauth2/access_token), with
WeChat's error JSON (`{"errcode": 40007, "errmsg": "invalid media_id"}`, HTTP 200) for mistakes.
Point a `WeChatClient` at `FakeWeChatAPI.base_url` and it cannot tell the difference.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from standins.loopback import LoopbackHandler, LoopbackServer

logger = logging.getLogger(__name__)

TOKEN_LIFETIME_SECONDS = 7200
# Like WeChat: fetching a token retires the previous ones, which keep working this long.
TOKEN_GRACE_SECONDS = 300.0
FAKE_MEDIA_PATH = "/fake/media"  # POST the file; the answer is {"media_id": …}
FAKE_SENT_PATH = "/fake/sent"  # ?since=N: {"messages": [customer-service messages N onwards], "total": …}
JSON_CONTENT_TYPE = "application/json; encoding=utf-8"
UPLOAD_TYPES = ("image", "voice", "video", "thumb")
# How long a category template's value may be, by field type (thing1, phrase2…); WeChat answers
# 47003 beyond it.
TEMPLATE_VALUE_LIMITS = {"thing": 20, "phrase": 5, "name": 10, "character_string": 32}
# A template message's client_msg_id: one message per openid and id for this long (WeChat: 10 minutes).
CLIENT_MSG_ID_SECONDS = 600.0
# WeChat's wording for the errors this fake produces.
ERROR_MESSAGES = {
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41005: "media data missing",
    41006: "media_id missing",
    42001: "access_token expired",
    44002: "empty post data",
    44004: "empty content",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45067: "clientmsgid size out of limit",
    47001: "data format error",
    47003: "argument invalid! data.keyword1.value invalid",
}


class WeChatAPIError(Exception):
    """A request the real API would answer with an error JSON."""

    def __init__(self, errcode: int, errmsg: str | None = None):
        self.errcode = errcode
        self.errmsg = errmsg or ERROR_MESSAGES.get(errcode, "system error")
        super().__init__(f"{self.errcode}: {self.errmsg}")

    def as_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "errmsg": self.errmsg}


@dataclass(frozen=True)
class Media:
    data: bytes
    content_type: str
    filename: str
    delay: float = 0.0


@dataclass(frozen=True)
class Response:
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, payload: dict[str, Any], status: int = 200) -> "Response":
        return cls(json.dumps(payload, ensure_ascii=False).encode("utf-8"), status=status)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes


class FakeWeChatAPI(LoopbackServer):
    """The WeChat API on 127.0.0.1 (port 0 picks a free port). Thread-safe; use as a context manager."""

    def __init__(self, appid: str, secret: str, port: int = 0, token_grace_seconds: float = TOKEN_GRACE_SECONDS):
        super().__init__(port)
        self.appid = appid
        self.secret = secret
        self.token_grace_seconds = token_grace_seconds  # tests may change it (0: retired at once)
        self._lock = threading.Lock()
        self._messages_changed = threading.Condition(self._lock)
        self._tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._retired: dict[str, float] = {}  # superseded token -> when it stops working (40001)
        self._media: dict[str, Media] = {}
        self._uploaded: dict[str, bytes] = {}
        self._sent: list[dict[str, Any]] = []
        self._templates: dict[str, tuple[str, ...]] = {}
        self._templates_sent: list[dict[str, Any]] = []
        self._client_msg_ids: dict[tuple[str, str], tuple[int, float]] = {}  # (openid, id) -> (msgid, when)
        self._accepted: list[tuple[str, float]] = []  # (touser, epoch seconds) of each message sent
        self._requests: list[tuple[str, str]] = []
        self._token_fetches = 0
        self._failing_sends = 0
        self._failing_errcode = 45015
        # Since 2023 WeChat accepts only a few customer-service messages per message the user sends
        # (45047 after that); None: no limit (the default, as for older accounts).
        self._per_window_limit: int | None = None
        self._window_counts: dict[str, int] = {}  # openid -> messages accepted since the user last wrote
        self._oauth_openid: str | None = None  # who is using WeChat's in-app browser
        self._oauth_codes: dict[str, str] = {}  # unused OAuth code -> openid
        self._path_delays: dict[str, float] = {}  # path -> seconds every request to it is held
        self._held_answers: dict[str, threading.Event] = {}  # path -> set when its answers may leave
        self._routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/cgi-bin/token"): self._handle_token,
            ("GET", "/cgi-bin/media/get"): self._handle_media_get,
            ("POST", "/cgi-bin/media/upload"): self._handle_media_upload,
            ("POST", "/cgi-bin/message/custom/send"): self._handle_custom_send,
            ("POST", "/cgi-bin/message/template/send"): self._handle_template_send,
            ("GET", "/connect/oauth2/authorize"): self._handle_oauth_authorize,
            ("GET", "/sns/oauth2/access_token"): self._handle_oauth_access_token,
            # Not WeChat's: how a second `flask chat` shares this fake (standins/chat.py RunningFake).
            ("POST", FAKE_MEDIA_PATH): self._handle_fake_media,
            ("GET", FAKE_SENT_PATH): self._handle_fake_sent,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    def _closing(self) -> None:
        self.release_answers()  # a held answer would keep its handler thread waiting forever

    @property
    def base_url(self) -> str:
        return f"http://{self.address()}/cgi-bin/"

    @property
    def oauth_base_url(self) -> str:
        """Web-page authorisation, as https://open.weixin.qq.com/connect/ ([wechat] oauth_base_url)."""
        return f"http://{self.address()}/connect/"

    @property
    def sns_api_base_url(self) -> str:
        """The API that turns an OAuth code into an openid, as https://api.weixin.qq.com/ ([wechat] sns_api_base_url)."""
        return f"http://{self.address()}/"

    # --- test controls -----------------------------------------------------------------------

    def add_media(
        self,
        data: bytes,
        content_type: str = "image/jpeg",
        filename: str = "photo.jpg",
        delay: float = 0.0,
    ) -> str:
        """Store a file as a user's upload would be; returns its media_id. `delay` slows its download."""
        media_id = _new_media_id()
        with self._lock:
            self._media[media_id] = Media(data, content_type, filename, delay)
        return media_id

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (the API then answers 42001)."""
        now = time.time()
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = now

    def set_oauth_user(self, openid: str | None) -> None:
        """The WeChat user whose phone opens web pages from now on (None: nobody)."""
        with self._lock:
            self._oauth_openid = openid

    def delay_path(self, path: str, seconds: float) -> None:
        """Hold every request to `path` (e.g. "/cgi-bin/media/upload") this long before answering it;
        0 answers at once again."""
        with self._lock:
            self._path_delays[path] = seconds

    def hold_answers(self, path: str) -> None:
        """Handle requests to `path` (WeChat has sent the message) but hold their answers until
        `release_answers`: a sender killed meanwhile never learns that it went."""
        with self._lock:
            self._held_answers.setdefault(path, threading.Event())

    def release_answers(self) -> None:
        """Lets every held answer go (stopping the fake does too)."""
        with self._lock:
            held, self._held_answers = self._held_answers, {}
        for gate in held.values():
            gate.set()

    def fail_next_sends(self, count: int, errcode: int = 45015) -> None:
        """Answer the next `count` customer-service sends with `errcode` (45015: 48-hour window closed)."""
        with self._lock:
            self._failing_sends = count
            self._failing_errcode = errcode

    def limit_per_window(self, count: int | None) -> None:
        """Accept at most `count` customer-service messages to a user after each message they send
        (the next is answered 45047); None lifts the limit."""
        with self._lock:
            self._per_window_limit = count

    def user_wrote(self, openid: str) -> None:
        """The user sent the account a message: a new window, its count starts again."""
        with self._lock:
            self._window_counts.pop(openid, None)

    # --- observations ------------------------------------------------------------------------

    @property
    def sent_messages(self) -> list[dict[str, Any]]:
        """Customer-service messages accepted so far, as the JSON bodies sent (a snapshot)."""
        with self._lock:
            return list(self._sent)

    def messages_to(self, openid: str) -> list[dict[str, Any]]:
        return [message for message in self.sent_messages if message["touser"] == openid]

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least `count` messages were sent; all of them. TimeoutError if they do not come."""
        with self._messages_changed:
            if not self._messages_changed.wait_for(lambda: len(self._sent) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} customer-service message(s) within {timeout}s, got {len(self._sent)}"
                )
            return list(self._sent)

    def new_messages(self, since: int, timeout: float) -> list[dict[str, Any]]:
        """Messages number `since` onwards, waiting up to `timeout` for one to arrive ([] if none)."""
        with self._messages_changed:
            self._messages_changed.wait_for(lambda: len(self._sent) > since, timeout)
            return self._sent[since:]

    @property
    def accepted(self) -> list[tuple[str, float]]:
        """(openid, epoch seconds) of every message WeChat accepted, customer-service and template."""
        with self._lock:
            return list(self._accepted)

    @property
    def uploaded_media(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._uploaded)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request received, in order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def token_fetches(self) -> int:
        with self._lock:
            return self._token_fetches

    # --- request handling (called from server threads) -------------------------------------

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests.append((request.method, request.path))
            delay = self._path_delays.get(request.path, 0.0)
            held = self._held_answers.get(request.path)
        if delay:
            time.sleep(delay)
        route = self._routes.get((request.method, request.path))
        if route is None:
            return Response(b"Not Found", content_type="text/plain", status=404)
        try:
            response = route(request)
        except WeChatAPIError as error:
            response = Response.json(error.as_json())
        if held is not None:
            held.wait()
        return response

    def _handle_token(self, request: Request) -> Response:
        if request.query.get("grant_type") != "client_credential":
            raise WeChatAPIError(40002)
        if request.query.get("appid") != self.appid:
            raise WeChatAPIError(40013)
        if request.query.get("secret") != self.secret:
            raise WeChatAPIError(40125)
        token = secrets.token_urlsafe(48)
        with self._lock:
            now = time.time()
            for old in self._tokens.keys() - self._retired.keys():
                self._retired[old] = now + self.token_grace_seconds
            self._tokens[token] = now + TOKEN_LIFETIME_SECONDS
            self._token_fetches += 1
        return Response.json({"access_token": token, "expires_in": TOKEN_LIFETIME_SECONDS})

    def _check_access_token(self, request: Request) -> None:
        token = request.query.get("access_token")
        if not token:
            raise WeChatAPIError(41001)
        with self._lock:
            expires_at = self._tokens.get(token)
            retired_at = self._retired.get(token)
        now = time.time()
        if expires_at is None or (retired_at is not None and retired_at <= now):
            raise WeChatAPIError(40001)
        if expires_at <= now:
            raise WeChatAPIError(42001)

    def _handle_media_get(self, request: Request) -> Response:
        self._check_access_token(request)
        media_id = request.query.get("media_id")
        if not media_id:
            raise WeChatAPIError(41006)
        with self._lock:
            media = self._media.get(media_id)
        if media is None:
            raise WeChatAPIError(40007)
        if media.delay:
            time.sleep(media.delay)
        disposition = f'attachment; filename="{media.filename}"'
        return Response(
            media.data,
            content_type=media.content_type,
            headers=(
                ("Content-disposition", disposition),
                ("Cache-Control", "no-cache, must-revalidate"),
            ),
        )

    def _handle_fake_media(self, request: Request) -> Response:
        filename = request.query.get("filename") or "photo.jpg"
        content_type = request.headers.get("Content-Type") or "application/octet-stream"
        return Response.json({"media_id": self.add_media(request.body, content_type, filename)})

    def _handle_fake_sent(self, request: Request) -> Response:
        since = max(0, int(request.query.get("since") or 0))
        with self._lock:
            return Response.json({"messages": self._sent[since:], "total": len(self._sent)})

    def _handle_media_upload(self, request: Request) -> Response:
        self._check_access_token(request)
        media_type = request.query.get("type")
        if media_type not in UPLOAD_TYPES:
            raise WeChatAPIError(40004)
        part = _multipart_file(request, "media")
        media_id = _new_media_id()
        with self._lock:
            self._uploaded[media_id] = part.data
            self._media[media_id] = part
        return Response.json({"type": media_type, "media_id": media_id, "created_at": int(time.time())})

    def _handle_custom_send(self, request: Request) -> Response:
        self._check_access_token(request)
        message = self._parse_custom_message(request.body)
        with self._messages_changed:
            if self._failing_sends > 0:
                self._failing_sends -= 1
                raise WeChatAPIError(self._failing_errcode)
            touser = message.get("touser", "")
            if self._per_window_limit is not None:
                if self._window_counts.get(touser, 0) >= self._per_window_limit:
                    raise WeChatAPIError(45047)
                self._window_counts[touser] = self._window_counts.get(touser, 0) + 1
            self._sent.append(message)
            self._accepted.append((touser, time.time()))
            self._messages_changed.notify_all()
        return Response.json({"errcode": 0, "errmsg": "ok"})

    def _handle_oauth_authorize(self, request: Request) -> Response:
        """snsapi_base authorises silently: straight back to redirect_uri with a one-time code."""
        query = request.query
        redirect_uri = query.get("redirect_uri", "")
        if query.get("appid") != self.appid or query.get("response_type") != "code" \
                or query.get("scope") not in ("snsapi_base", "snsapi_userinfo") or not redirect_uri:
            return Response("参数错误".encode("utf-8"), content_type="text/plain; charset=utf-8", status=400)
        with self._lock:
            openid = self._oauth_openid
            if openid is None:
                return Response("请在微信客户端打开链接".encode("utf-8"), content_type="text/plain; charset=utf-8",
                                status=403)
            code = secrets.token_urlsafe(24)
            self._oauth_codes[code] = openid
        separator = "&" if "?" in redirect_uri else "?"
        location = f"{redirect_uri}{separator}{urlencode({'code': code, 'state': query.get('state', '')})}"
        return Response(b"", content_type="text/plain", status=302, headers=(("Location", location),))

    def _handle_oauth_access_token(self, request: Request) -> Response:
        query = request.query
        if query.get("grant_type") != "authorization_code":
            raise WeChatAPIError(40002)
        if query.get("appid") != self.appid:
            raise WeChatAPIError(40013)
        if query.get("secret") != self.secret:
            raise WeChatAPIError(40125)
        with self._lock:
            openid = self._oauth_codes.pop(query.get("code", ""), None)  # a code works once
        if openid is None:
            raise WeChatAPIError(40029)
        return Response.json({"access_token": secrets.token_urlsafe(48), "expires_in": TOKEN_LIFETIME_SECONDS,
                              "refresh_token": secrets.token_urlsafe(48), "openid": openid, "scope": "snsapi_base"})

    def add_template(self, template_id: str, fields: tuple[str, ...]) -> None:
        """A template the official account has chosen in its console, with its data fields."""
        with self._lock:
            self._templates[template_id] = tuple(fields)

    @property
    def templates_sent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._templates_sent)

    def _handle_template_send(self, request: Request) -> Response:
        self._check_access_token(request)
        try:
            message = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeChatAPIError(47001) from exc
        if not isinstance(message, dict) or not message.get("touser"):
            raise WeChatAPIError(40003)
        with self._lock:
            fields = self._templates.get(message.get("template_id"))
        if fields is None:
            raise WeChatAPIError(40037)
        data = message.get("data")
        if not isinstance(data, dict) or set(data) != set(fields) or not all(
                isinstance(item, dict) and isinstance(item.get("value"), str) for item in data.values()):
            raise WeChatAPIError(47003)
        if any(len(item["value"]) > TEMPLATE_VALUE_LIMITS.get(key.rstrip("0123456789"), 200)
               for key, item in data.items()):
            raise WeChatAPIError(47003)
        client_msg_id = message.get("client_msg_id")
        if client_msg_id is not None and (not isinstance(client_msg_id, str) or len(client_msg_id) > 64):
            raise WeChatAPIError(45067)
        with self._messages_changed:
            now = time.time()
            earlier = self._client_msg_ids.get((message["touser"], client_msg_id)) if client_msg_id else None
            if earlier is not None and now - earlier[1] < CLIENT_MSG_ID_SECONDS:
                return Response.json({"errcode": 0, "errmsg": "ok", "msgid": earlier[0]})  # sent once only
            msgid = secrets.randbelow(10**12)
            if client_msg_id:
                self._client_msg_ids[(message["touser"], client_msg_id)] = (msgid, now)
            self._templates_sent.append(message)
            self._accepted.append((message["touser"], now))
            self._messages_changed.notify_all()
        return Response.json({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    def _parse_custom_message(self, body: bytes) -> dict[str, Any]:
        if not body:
            raise WeChatAPIError(44002)
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeChatAPIError(47001) from exc
        if not isinstance(message, dict):
            raise WeChatAPIError(47001)
        if not isinstance(message.get("touser"), str) or not message["touser"]:
            raise WeChatAPIError(40003)
        msg_type = message.get("msgtype")
        if msg_type == "text":
            self._check_text(message)
        elif msg_type == "image":
            self._check_image(message)
        else:
            raise WeChatAPIError(40008)
        return message

    @staticmethod
    def _check_text(message: dict[str, Any]) -> None:
        text = message.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("content"), str):
            raise WeChatAPIError(47001)
        if not text["content"]:
            raise WeChatAPIError(44004)

    def _check_image(self, message: dict[str, Any]) -> None:
        image = message.get("image")
        if not isinstance(image, dict) or not image.get("media_id"):
            raise WeChatAPIError(47001)
        with self._lock:
            known = image["media_id"] in self._media
        if not known:
            raise WeChatAPIError(40007)


def _new_media_id() -> str:
    return secrets.token_urlsafe(48)


def _multipart_file(request: Request, field: str) -> Media:
    """The file in multipart form field `field` (41005 if there is none)."""
    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        raise WeChatAPIError(41005)
    envelope = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + request.body
    message = BytesParser(policy=policy.HTTP).parsebytes(envelope)
    if not message.is_multipart():
        raise WeChatAPIError(41005)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            data = part.get_payload(decode=True) or b""
            if not data:
                raise WeChatAPIError(41005)
            return Media(data, part.get_content_type(), part.get_filename() or "media")
    raise WeChatAPIError(41005)


def _make_handler(api: FakeWeChatAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(LoopbackHandler):
        server_version = "FakeWeChatAPI"

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            response = api.handle(Request(method, url.path, query, self.headers, self.read_body()))
            try:
                self.send(response.status, response.body,
                          [("Content-Type", response.content_type), *response.headers])
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (e.g. its timeout fired during a delayed download).
                logger.info("client went away before the %s %s response was sent", method, url.path)
                self.close_connection = True

    return Handler
