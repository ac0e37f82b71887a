"""`flask chat` as a real process in a terminal (a pty): pushed messages are printed above the prompt,
which is drawn again; a second chat shares the first one's fake WeChat API (issue 13)."""
from __future__ import annotations

import codecs
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flask import Flask, abort, request
from wechatpy import create_reply, parse_message
from wechatpy.utils import check_signature

from bot.client import ConfigurableWeChatClient
from tests.journey import write_config
from tests.test_simulator import AES_KEY, APPID, SECRET, TOKEN, free_port, serve

FLASK = str(Path(sys.executable).with_name("flask"))
PROJECT = Path(__file__).resolve().parents[1]
PROMPT = "你 / you> "


def pushing_webhook(api_base_url: str) -> Flask:
    """Plain-mode webhook: echoes text; "稍后" is also answered a moment later by a customer-service
    message; a photo is downloaded from the fake API and acknowledged by one."""
    app = Flask(__name__)
    client = ConfigurableWeChatClient(APPID, SECRET, api_base_url, timeout=5)

    @app.route("/wechat", methods=["POST"])
    def wechat():
        args = request.args
        try:
            check_signature(TOKEN, args["signature"], args["timestamp"], args["nonce"])
        except Exception:
            abort(403)
        message = parse_message(request.get_data())
        if message.type == "image":
            size = len(client.media.download(message.media_id).content)
            client.message.send_text(message.source, f"got {size} bytes")
            return create_reply("photo", message).render()
        if message.type == "text" and message.content == "稍后":
            source = message.source
            threading.Timer(1.0, lambda: client.message.send_text(source, "稍后的推送")).start()
        return create_reply(f"echo: {message.content}", message).render() if message.type == "text" else "success"

    return app


class Terminal:
    """`flask chat` in a pseudo-terminal: what it wrote, and a way to type."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=PROJECT,
                                        close_fds=True)
        os.close(slave)
        self.output = ""
        # A read can end inside a multi-byte character: decode across reads, not per read.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def read_until(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.output!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.output += self._decoder.decode(os.read(self.master, 65536))
                except OSError:
                    break
        return self.output

    def type(self, text: str) -> None:
        os.write(self.master, text.encode("utf-8"))

    def close(self) -> None:
        if self.process.poll() is None:
            self.type("/quit\n")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self.master)


@pytest.fixture
def setup(tmp_path):
    api_port = free_port()
    api_base_url = f"http://127.0.0.1:{api_port}/cgi-bin/"
    server, thread = serve(pushing_webhook(api_base_url))
    config = write_config(tmp_path, database_url=f"sqlite:///{tmp_path / 'chat.db'}", api_base_url=api_base_url,
                          token=TOKEN, appid=APPID, secret=SECRET, aes_key=AES_KEY, sections={})
    env = {**os.environ, "COLLECTOR_CONFIG": str(config), "TERM": "xterm"}
    url = f"http://127.0.0.1:{server.server_port}/wechat"
    terminals = []

    def chat(openid: str, stdin_tty: bool = True):
        args = [FLASK, "--app", "standins.demo", "chat", "--url", url, "--openid", openid]
        if stdin_tty:
            terminals.append(Terminal(args, env))
            return terminals[-1]
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=PROJECT, text=True)

    yield chat, api_base_url
    for terminal in terminals:
        terminal.close()
    server.shutdown()
    thread.join()


def test_a_pushed_message_prints_above_the_prompt_which_is_drawn_again(setup):
    chat, _ = setup
    terminal = chat("o_chat_first")
    terminal.read_until(re.escape(PROMPT))
    terminal.type("稍后\n")
    terminal.read_until("echo: 稍后")
    terminal.type("半句")  # typing, not yet sent, when the push arrives
    out = terminal.read_until(r"稍后的推送[^\n]*\n.*" + re.escape(PROMPT) + "半句")
    pushed = out[out.index("echo: 稍后"):]
    # The pushed line starts at the line's beginning (the waiting prompt erased), then the prompt and
    # what was typed come back below it.
    assert re.search(r"\r\x1b\[K客服消息 / customer service: 稍后的推送\r?\n" + re.escape(PROMPT) + "半句", pushed), pushed
    assert PROMPT + "客服消息" not in pushed


def test_a_second_chat_shares_the_running_fake_and_can_send_photos(setup, tmp_path):
    chat, api_base_url = setup
    first = chat("o_chat_first")
    first.read_until(f"fake WeChat API: {re.escape(api_base_url)}")
    first.read_until(re.escape(PROMPT))
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"\xff\xd8" + b"x" * 98)
    second = chat("o_chat_second", stdin_tty=False)
    output, _ = second.communicate(f"/image {photo}\n", timeout=60)
    assert second.returncode == 0, output
    assert "sharing the fake WeChat API of another `flask chat`" in output, output
    assert "公众号 / account: photo" in output, output
    assert "客服消息 / customer service: got 100 bytes" in output, output  # pushed through the shared fake
    assert "got 100 bytes" not in first.read_until(re.escape(PROMPT))  # the first chat shows only its own


def test_a_port_held_by_something_else_gets_a_fake_on_a_free_port(setup):
    import socket
    chat, api_base_url = setup
    port = int(api_base_url.split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()  # accepts connections, never answers HTTP
        process = chat("o_chat_third", stdin_tty=False)
        output, _ = process.communicate("你好\n", timeout=60)
    assert process.returncode == 0, output
    assert f"127.0.0.1:{port} is taken" in output, output
    found = re.search(r"the fake runs on http://127\.0\.0\.1:(\d+)/cgi-bin/", output)
    assert found and int(found.group(1)) != port, output
    assert "公众号 / account: echo: 你好" in output
