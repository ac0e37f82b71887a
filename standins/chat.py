"""`flask chat` (`flask --app standins.demo chat`): talk to the running webhook from a terminal, as a
candidate would from WeChat.

Each typed line goes to the server as a signed WeChat text message and the passive reply is printed.
A local fake WeChat API (on the host/port of `wechat.api_base_url`, when that is a loopback address)
serves the photos sent with `/image` and prints the customer-service messages the server sends. A second
`flask chat` finds the first one's fake on that port and shares it (RunningFake). Messages pushed while
the prompt waits are printed above it, and the prompt with what was typed so far is drawn again.
"""
from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import mimetypes
import secrets
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO
from urllib.parse import urlsplit

import click
import requests
from flask import current_app
from flask.cli import with_appcontext
from wechatpy.exceptions import InvalidSignatureException

from standins.simulator import ReplyError, SimReply, WeChatSimulator, http_transport
from standins.wechat_api import FAKE_MEDIA_PATH, FAKE_SENT_PATH, FakeWeChatAPI

BANNER = """\
照片采集 · 微信对话模拟  /  photo-collector WeChat chat simulator
  直接输入文字发送消息      type a line to send it as a text message
  /image 路径 PATH          发送照片                send a photo
  /subscribe                关注公众号              send the subscribe event
  /help                     显示帮助                show this help
  /quit                     退出                    quit
"""
PROMPT = "你 / you> "
WATCH_INTERVAL_SECONDS = 0.2


class ChatSession:
    """One user's conversation: turns typed lines into WeChat pushes and prints what comes back."""

    def __init__(self, simulator: WeChatSimulator, openid: str, output: TextIO, fake: FakeWeChatAPI | None = None):
        self.simulator = simulator
        self.openid = openid
        self.output = output
        self.fake = fake
        self._output_lock = threading.Lock()
        self._prompt: str | None = None  # the prompt on screen while a line is being typed, else None
        self._typed: Callable[[], str] = lambda: ""

    def say(self, text: str) -> None:
        with self._output_lock:
            self.output.write(text + "\n")
            self.output.flush()

    def push(self, text: str) -> None:
        """A message that arrived on its own (a customer-service message): above the prompt, if one is
        waiting, which is then drawn again with what the user has typed so far."""
        with self._output_lock:
            if self._prompt is None:
                self.output.write(text + "\n")
            else:
                self.output.write("\r\x1b[K" + text + "\n" + self._prompt + self._typed())
            self.output.flush()

    def waiting(self, prompt: str | None, typed: Callable[[], str] | None = None) -> None:
        """The terminal shows `prompt` and waits for a line (None: it no longer does)."""
        with self._output_lock:
            self._prompt = prompt
            if typed is not None:
                self._typed = typed

    def handle(self, line: str) -> bool:
        """Act on one typed line; False when the user asked to quit."""
        command, _, argument = line.strip().partition(" ")
        if not command:
            return True
        if command == "/quit":
            return False
        if command == "/help":
            self.say(BANNER)
        elif command == "/subscribe":
            self._send(lambda: self.simulator.event(self.openid, "subscribe"))
        elif command == "/image":
            self._send_image(argument.strip().strip("'\""))  # terminals quote dropped-in paths
        elif command.startswith("/"):
            self.say(f"未知命令 / unknown command: {command}  (/help)")
        else:
            self._send(lambda: self.simulator.text(self.openid, line.strip()))
        return True

    def _send_image(self, path_text: str) -> None:
        if self.fake is None:
            self.say("没有本地微信接口，无法发送照片 / no local WeChat API is running, so photos cannot be sent")
            return
        if not path_text:
            self.say("用法 / usage: /image PATH")
            return
        path = Path(path_text).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.say(f"无法读取文件 / cannot read {path}: {exc.strerror or exc}")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        media_id = self.fake.add_media(data, content_type=content_type, filename=path.name)
        self._send(lambda: self.simulator.image(self.openid, media_id))

    def _send(self, push) -> None:
        try:
            reply = push()
        except requests.RequestException as exc:
            self.say(f"无法连接服务器 / cannot reach the server: {exc}")
            return
        except (ReplyError, InvalidSignatureException) as exc:
            self.say(f"服务器的回复无效 / invalid reply from the server: {exc!r}")
            return
        self.say(describe_reply(reply))

    def describe_customer_service(self, message: dict) -> str:
        if message.get("msgtype") == "text":
            return f"客服消息 / customer service: {message['text']['content']}"
        if message.get("msgtype") == "image":
            media_id = message["image"]["media_id"]
            data = self.fake.uploaded_media.get(media_id) if self.fake else None
            size = f" ({len(data)} bytes)" if data is not None else ""
            return f"客服消息 / customer service: [图片 / image] media_id={media_id}{size}"
        return f"客服消息 / customer service: {message}"


def describe_reply(reply: SimReply) -> str:
    if reply.status != 200:
        return f"HTTP {reply.status}: {reply.body[:300].decode('utf-8', 'replace')}"
    if reply.empty:
        return "（公众号没有回复 / no reply）"
    if reply.msg_type == "text":
        return f"公众号 / account: {reply.content}"
    if reply.msg_type == "image":
        return f"公众号 / account: [图片 / image] media_id={reply.media_id}"
    return f"公众号 / account: [{reply.msg_type}] {reply.xml}"


class CustomerServiceWatcher:
    """Prints customer-service messages the fake receives for one openid, from a background thread."""

    def __init__(self, session: ChatSession, fake: FakeWeChatAPI):
        self.session = session
        self.fake = fake
        self._seen = len(fake.sent_messages)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chat-cs-watcher", daemon=True)

    def start(self) -> "CustomerServiceWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, after printing whatever has arrived."""
        self._stopping.set()
        self._thread.join()
        self._print_new(timeout=0)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._print_new(timeout=WATCH_INTERVAL_SECONDS)

    def _print_new(self, timeout: float) -> None:
        messages = self.fake.new_messages(self._seen, timeout)
        self._seen += len(messages)
        for message in messages:
            if message["touser"] == self.session.openid:
                self.session.push(self.session.describe_customer_service(message))


def run_chat(session: ChatSession, lines: Iterable[str]) -> None:
    """The chat loop: print the banner, then handle lines until they run out or the user quits."""
    session.say(BANNER)
    watcher = CustomerServiceWatcher(session, session.fake).start() if session.fake else None
    try:
        for line in lines:
            if not session.handle(line):
                break
    finally:
        if watcher:
            watcher.stop()


class RunningFake:
    """The fake WeChat API another `flask chat` started on the port the server calls: photos are added
    to it and the customer-service messages it received are read from it, over HTTP."""

    def __init__(self, base_url: str):
        self.base_url = base_url  # …/cgi-bin/
        self._root = base_url.split("/cgi-bin/")[0]
        self._http = requests.Session()

    @classmethod
    def find(cls, base_url: str) -> "RunningFake | None":
        fake = cls(base_url)
        try:
            fake._sent_since(0)
        except (requests.RequestException, ValueError, KeyError):
            return None
        return fake

    def add_media(self, data: bytes, content_type: str = "image/jpeg", filename: str = "photo.jpg") -> str:
        response = self._http.post(self._root + FAKE_MEDIA_PATH, params={"filename": filename}, data=data,
                                   headers={"Content-Type": content_type}, timeout=10)
        response.raise_for_status()
        return response.json()["media_id"]

    @property
    def sent_messages(self) -> list[dict]:
        return self._sent_since(0)

    @property
    def uploaded_media(self) -> dict[str, bytes]:
        return {}  # held by the other process

    def new_messages(self, since: int, timeout: float) -> list[dict]:
        try:
            messages = self._sent_since(since)
        except (requests.RequestException, ValueError, KeyError):
            messages = []  # the other chat quit: nothing more arrives here
        if not messages:
            threading.Event().wait(timeout)
        return messages

    def stop(self) -> None:
        self._http.close()

    def _sent_since(self, since: int) -> list[dict]:
        response = self._http.get(self._root + FAKE_SENT_PATH, params={"since": since}, timeout=2)
        response.raise_for_status()
        return response.json()["messages"]


def start_fake_api(settings, say) -> FakeWeChatAPI | RunningFake | None:
    """A fake WeChat API where the server expects the real one, if that is a local http address; the
    one another `flask chat` runs there, if there is one."""
    url = urlsplit(settings.wechat.api_base_url)
    if url.scheme != "http" or not _is_loopback(url.hostname):
        say(
            f"wechat.api_base_url = {settings.wechat.api_base_url} 不是本地地址 / is not a local http address: "
            "photos and customer-service messages are not simulated"
        )
        return None
    if url.path != "/cgi-bin/":
        say(f"注意 / note: the fake WeChat API serves /cgi-bin/, but api_base_url's path is {url.path}")
    fake = FakeWeChatAPI(settings.wechat.appid, settings.wechat.secret, port=url.port or 80)
    try:
        return fake.start()
    except OSError as exc:
        running = RunningFake.find(settings.wechat.api_base_url)
        if running is not None:
            say("共用另一个 flask chat 的本地微信接口 / sharing the fake WeChat API of another `flask chat`")
            return running
        fake = FakeWeChatAPI(settings.wechat.appid, settings.wechat.secret, port=0).start()
        say(
            f"端口被占用 / 127.0.0.1:{url.port or 80} is taken ({exc}) by something that is not a fake WeChat API: "
            f"the fake runs on {fake.base_url} instead; set [wechat] api_base_url to it for the server to use it"
        )
        return fake


def _is_loopback(hostname: str | None) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname or "").is_loopback
    except ValueError:
        return False


def _terminal_lines(session: ChatSession) -> Iterator[str]:
    readline = None
    if importlib.util.find_spec("readline"):
        readline = importlib.import_module("readline")  # line editing (and CJK-aware backspace) for input()
    interactive = sys.stdin.isatty()
    prompt = PROMPT if interactive else ""
    typed = readline.get_line_buffer if readline is not None else (lambda: "")
    while True:
        session.waiting(prompt if interactive else None, typed)
        try:
            line = input(prompt)
        except EOFError:
            return
        finally:
            session.waiting(None)
        yield line


def _default_openid() -> str:
    # Real openids are 28 characters.
    return "o_demo_" + secrets.token_hex(11)[:21]


@click.command("chat")
@click.option("--url", help="The webhook URL (default: http://{server.host}:{server.port}/wechat).")
@click.option("--openid", default=None, help="The user to chat as (default: a random o_demo_… id).")
@click.option("--aes", is_flag=True, help="Use safe mode (AES-encrypted messages); the default when the "
                                           "server's [wechat] mode is safe.")
@with_appcontext
def chat_command(url: str | None, openid: str | None, aes: bool) -> None:
    """Chat with the running webhook as a WeChat user would."""
    settings = current_app.config["SETTINGS"]
    url = url or f"http://{settings.server.host}:{settings.server.port}/wechat"
    openid = openid or _default_openid()
    aes = aes or settings.wechat.message_mode == "safe"  # a safe-mode server refuses plain requests
    target = urlsplit(url)
    simulator = WeChatSimulator(
        settings.wechat.token,
        settings.wechat.appid,
        settings.wechat.encoding_aes_key,
        http_transport(f"{target.scheme}://{target.netloc}"),
        aes=aes,
        path=target.path or "/",
    )
    say = click.echo
    say(f"webhook: {url}  openid: {openid}  mode: {'aes' if aes else 'plain'}")
    fake = start_fake_api(settings, say)
    if fake:
        say(f"fake WeChat API: {fake.base_url}")
    session = ChatSession(simulator, openid, sys.stdout, fake)
    try:
        run_chat(session, _terminal_lines(session))
    finally:
        if fake:
            fake.stop()
