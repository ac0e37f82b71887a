"""WeChat's side: signed, AES-encrypted pushes through a load balancer, WeChat's 5 s timeout and three
retries of the same MsgId, and the customer-service messages the fake WeChat API receives."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import requests
from wechatpy.exceptions import InvalidSignatureException

from standins.simulator import ReplyError, WeChatSimulator, message_xml
from standins.wechat_api import FakeWeChatAPI

WECHAT_TIMEOUT_SECONDS = 5.0  # WeChat gives up on a webhook after 5 s ...
WECHAT_RETRIES = 3  # ... and tries the same message three more times
PAGE_TIMEOUT_SECONDS = 10.0
PAGE_RETRY_SECONDS = 3.0
XML_HEADERS = {"Content-Type": "text/xml"}


class FakeWeChat(FakeWeChatAPI):
    """The fake WeChat API, counting (instead of printing) connections a killed server left half-done."""

    def __init__(self, appid: str, secret: str):
        super().__init__(appid, secret)
        self.broken_connections = 0

    def start(self):
        super().start()
        self._server.handle_error = self._count_broken  # socketserver would print a traceback each
        return self

    def _count_broken(self, request, client_address) -> None:
        self.broken_connections += 1


class AllRefused(Exception):
    """No server process accepted the connection."""


class Backends:
    """The server processes behind a load balancer. A request goes to the process its caller picks;
    a refused connection moves on to the next one, as nginx's proxy_next_upstream does."""

    def __init__(self, urls: list[str]):
        self.urls = urls
        self._in_flight = [0] * len(urls)
        self._lock = threading.Lock()

    def in_flight(self, index: int) -> int:
        with self._lock:
            return self._in_flight[index]

    @contextmanager
    def _tracking(self, index: int):
        with self._lock:
            self._in_flight[index] += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[index] -= 1

    def request(self, sessions: dict[int, requests.Session], first: int, method: str, path: str,
                timeout: float, **kwargs) -> requests.Response:
        for offset in range(len(self.urls)):
            index = (first + offset) % len(self.urls)
            session = sessions.setdefault(index, requests.Session())
            try:
                with self._tracking(index):
                    return session.request(method, self.urls[index] + path, timeout=timeout, **kwargs)
            except requests.ConnectionError as exc:
                if not _refused(exc):
                    raise
        raise AllRefused(f"every server refused {method} {path.split('?')[0]}")


def _refused(exc: requests.ConnectionError) -> bool:
    return "refused" in str(exc).lower() or "NewConnectionError" in repr(exc)


@dataclass
class CustomMessage:
    at: float  # time.monotonic() when the fake received it
    text: str


class Inbox:
    """Every customer-service message the fake WeChat API accepted, by openid, as it arrives."""

    def __init__(self, fake: FakeWeChatAPI):
        self.fake = fake
        self._by_openid: dict[str, list[CustomMessage]] = defaultdict(list)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="inbox", daemon=True)

    def __enter__(self) -> "Inbox":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        seen = 0
        while not self._stop.is_set():
            new = self.fake.new_messages(seen, timeout=0.2)
            if not new:
                continue
            seen += len(new)
            now = time.monotonic()
            with self._changed:
                for message in new:
                    self._by_openid[message["touser"]].append(CustomMessage(now, _describe(message)))
                self._changed.notify_all()

    def count(self, openid: str) -> int:
        with self._changed:
            return len(self._by_openid[openid])

    def messages(self, openid: str) -> list[CustomMessage]:
        with self._changed:
            return list(self._by_openid[openid])

    def wait(self, openid: str, since: int, timeout: float,
             wanted: Callable[[CustomMessage], bool] = lambda message: True) -> list[CustomMessage]:
        """Messages number `since` onwards once one is `wanted`, or when `timeout` runs out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                new = self._by_openid[openid][since:]
                left = deadline - time.monotonic()
                if any(wanted(message) for message in new) or left <= 0:
                    return list(new)
                self._changed.wait(min(left, 0.5))


def _describe(message: dict) -> str:
    if message.get("msgtype") == "text":
        return message["text"]["content"]
    return f"[{message.get('msgtype')}]"


@dataclass
class Delivery:
    """One inbound message and what became of it."""
    step: str
    msg_id: int | None
    started: float
    attempts: int = 0
    timeouts: int = 0
    empty_answers: int = 0
    errors: list[str] = field(default_factory=list)
    passive: str | None = None  # the passive reply the candidate saw
    custom: list[CustomMessage] = field(default_factory=list)  # customer-service messages that followed
    custom_before: int = 0  # how many customer-service messages the candidate had before this one
    finished: float = 0.0

    @property
    def answered(self) -> bool:
        return self.passive is not None or bool(self.custom)

    @property
    def texts(self) -> list[str]:
        return ([self.passive] if self.passive is not None else []) + [m.text for m in self.custom]

    @property
    def latency(self) -> float:
        return self.finished - self.started


class Phone:
    """One candidate's WeChat: pushes their messages to the webhook as the platform does."""

    def __init__(self, openid: str, home: int, backends: Backends, inbox: Inbox, token: str, appid: str,
                 aes_key: str, custom_wait: float):
        self.openid = openid
        self.home = home
        self.backends = backends
        self.inbox = inbox
        self.custom_wait = custom_wait
        self._sessions: dict[int, requests.Session] = {}
        self._attempt = 0
        self.simulator = WeChatSimulator(token, appid, aes_key, self._transport, aes=True)

    def close(self) -> None:
        """Hang up: keep-alive connections left open would use up the servers' connection limit."""
        for session in self._sessions.values():
            session.close()

    def _transport(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        # Each try may land on another process, as behind a load balancer.
        response = self.backends.request(self._sessions, self.home + self._attempt, method, path,
                                         WECHAT_TIMEOUT_SECONDS, data=body or None, headers=XML_HEADERS)
        return response.status_code, response.content

    def send(self, step: str, msg_type: str, fields: dict, wanted=None) -> Delivery:
        """Push one message (the same MsgId and CreateTime on every try). When no passive reply came,
        wait for customer-service messages (until one is `wanted`, when given)."""
        msg_id = self.simulator.next_msg_id() if msg_type != "event" else None
        xml = message_xml(self.simulator.account_id, self.openid, int(time.time()), msg_type, fields, msg_id)
        delivery = Delivery(step, msg_id, time.monotonic(), custom_before=self.inbox.count(self.openid))
        for attempt in range(1 + WECHAT_RETRIES):
            self._attempt = attempt
            delivery.attempts += 1
            tried = time.monotonic()
            try:
                reply = self.simulator.post_xml(xml, openid=self.openid)
            except requests.Timeout:
                delivery.timeouts += 1
                continue
            except (requests.RequestException, AllRefused) as exc:  # refused, reset, cut off mid-reply
                delivery.errors.append(type(exc).__name__)
                _sleep_out_the_try(tried)
                continue
            except (ReplyError, InvalidSignatureException, ValueError) as exc:  # garbled, or not ours
                delivery.errors.append(f"bad reply: {exc}"[:200])
                break  # it answered: WeChat does not retry, the candidate sees nothing
            if reply.status != 200:
                delivery.errors.append(f"HTTP {reply.status}")
                _sleep_out_the_try(tried)
                continue
            if reply.empty:
                delivery.empty_answers += 1
                break  # "success" or empty: WeChat stops retrying, the candidate sees nothing
            delivery.passive = reply.content if reply.msg_type == "text" else f"[{reply.msg_type}]"
            break
        if delivery.passive is None:
            delivery.custom = self.replies_since(delivery.custom_before, wanted)
        delivery.finished = time.monotonic()
        return delivery

    def replies_since(self, since: int, wanted=None, until=None, timeout: float | None = None) -> list[CustomMessage]:
        """The `wanted` customer-service messages from number `since` on, waiting (bounded) for one, or
        for one that satisfies `until`."""
        wanted = wanted or (lambda message: True)
        new = self.inbox.wait(self.openid, since, self.custom_wait if timeout is None else timeout,
                              until or wanted)
        return [message for message in new if wanted(message)]

    def text(self, step: str, content: str, **kwargs) -> Delivery:
        return self.send(step, "text", {"Content": content}, **kwargs)

    def image(self, step: str, media_id: str, **kwargs) -> Delivery:
        fields = {"PicUrl": f"http://mmbiz.qpic.cn/mmbiz_jpg/{media_id}/0", "MediaId": media_id}
        return self.send(step, "image", fields, **kwargs)

    def subscribe(self, step: str = "subscribe", **kwargs) -> Delivery:
        return self.send(step, "event", {"Event": "subscribe"}, **kwargs)

    def open_page(self, method: str, path: str, tries: int = 5) -> tuple[requests.Response | None, list[str]]:
        """The candidate's browser: a page through the load balancer, pressed again a few seconds after
        a failure (long enough to outlast a server's restart)."""
        errors = []
        for attempt in range(tries):
            try:
                response = self.backends.request(self._sessions, self.home + attempt, method, path,
                                                 PAGE_TIMEOUT_SECONDS)
            except (requests.RequestException, AllRefused) as exc:
                errors.append(type(exc).__name__)
                time.sleep(PAGE_RETRY_SECONDS)
                continue
            if response.status_code == 200:
                return response, errors
            errors.append(f"HTTP {response.status_code}")
            time.sleep(PAGE_RETRY_SECONDS)
        return None, errors


def _sleep_out_the_try(tried: float) -> None:
    """WeChat's next try of a message comes when the 5 s of the last one are over."""
    time.sleep(max(0.0, WECHAT_TIMEOUT_SECONDS - (time.monotonic() - tried)))
