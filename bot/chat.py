"""`flask chat`: talk to the running webhook from a terminal, as a candidate would from WeChat.

Each typed line goes to the server as a signed WeChat text message and the passive reply is printed.
A local fake WeChat API (on the host/port of `wechat.api_base_url`, when that is a loopback address)
serves the photos sent with `/image` and prints the customer-service messages the server sends.
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
from typing import Iterable, Iterator, TextIO
from urllib.parse import urlsplit

import click
import requests
from flask import current_app
from flask.cli import with_appcontext
from wechatpy.exceptions import InvalidSignatureException

from bot.fake_wechat import FakeWeChatAPI
from bot.simulator import ReplyError, SimReply, WeChatSimulator, http_transport

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

    def say(self, text: str) -> None:
        with self._output_lock:
            self.output.write(text + "\n")
            self.output.flush()

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
            size = len(self.fake.uploaded_media.get(media_id, b"")) if self.fake else 0
            return f"客服消息 / customer service: [图片 / image] media_id={media_id} ({size} bytes)"
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
                self.session.say(self.session.describe_customer_service(message))


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


def start_fake_api(settings, say) -> FakeWeChatAPI | None:
    """A fake WeChat API where the server expects the real one, if that is a local http address."""
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
        say(
            f"无法启动本地微信接口 / cannot start the fake WeChat API on 127.0.0.1:{fake.port} ({exc}); "
            "is another `flask chat` running? Photos and customer-service messages are not simulated"
        )
        return None


def _is_loopback(hostname: str | None) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname or "").is_loopback
    except ValueError:
        return False


def _terminal_lines() -> Iterator[str]:
    if importlib.util.find_spec("readline"):
        importlib.import_module("readline")  # line editing (and CJK-aware backspace) for input()
    prompt = PROMPT if sys.stdin.isatty() else ""
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return


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
        run_chat(session, _terminal_lines())
    finally:
        if fake:
            fake.stop()
