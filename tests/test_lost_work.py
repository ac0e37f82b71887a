"""A slow photo check outlives its reply. If the server dies before the verdict is sent, the "deferred"
job redoes the check and the candidate gets the verdict, once. Driven through a real server process
that is killed mid-check."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import select

from standins.simulator import WeChatSimulator, http_transport
from store.models import Message
from tests.conftest import AES_KEY, APPID, TOKEN
from tests.journey import Chat, seed_roster

PROJECT = Path(__file__).resolve().parents[1]
PHOTO = "webmorph_004_03_blue_ok.jpg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(config: Path) -> subprocess.Popen:
    env = dict(os.environ, COLLECTOR_CONFIG=str(config))
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "serve"], cwd=PROJECT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_up(url: str, server: subprocess.Popen) -> None:
    """Until the server answers /healthz (503 counts: it answers, with Redis not set up)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if requests.get(url + "/healthz", timeout=2).status_code in (200, 503):
                return
        except requests.RequestException:  # refused, or accepted but not answered yet (a busy machine)
            time.sleep(0.1)
    raise TimeoutError("server did not start")


def pending_messages(app) -> list[Message]:
    with app.extensions["collector"].db.session() as session:
        return list(session.scalars(select(Message).where(Message.pending.is_not(None))))


def test_a_check_whose_server_died_is_redone_once_by_the_job(make_app, fake_wechat, photo, tmp_path):
    image = photo(PHOTO)
    port = free_port()
    app = make_app(wechat={"reply_budget_seconds": 0.3}, server={"port": port},
                   jobs={"lost_work_after_minutes": 0})
    graduate = seed_roster(app)[0]
    server = serve(tmp_path / "config.toml")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server)
        chat = Chat(app, WeChatSimulator(TOKEN, APPID, AES_KEY, http_transport(url)), fake_wechat, openid="o_lost")
        chat.walk_to_photo(graduate)
        assert "正在检查" in chat.send_photo(image, delay=2.0)
    finally:
        server.send_signal(signal.SIGKILL)  # mid-download: the verdict was never applied
        server.wait(timeout=10)
    [lost] = pending_messages(app)
    assert (lost.pending, lost.checks["photo"]) == ("photo", "deferred")
    assert chat.customer_service_texts() == []

    result = app.test_cli_runner().invoke(args=["jobs", "run", "deferred"])
    assert result.exit_code == 0 and "resumed=1" in result.output, result.output
    [verdict] = chat.customer_service_texts()
    assert "检查通过" in verdict and "/pay/sandbox/" in verdict
    assert chat.state() == "payment" and pending_messages(app) == []

    again = app.test_cli_runner().invoke(args=["jobs", "run", "deferred"])
    assert "resumed=0" in again.output
    assert len(chat.customer_service_texts()) == 1


def test_a_deferred_check_that_finishes_leaves_nothing_to_redo(make_app, fake_wechat, photo):
    app = make_app(wechat={"reply_budget_seconds": 0.3}, jobs={"lost_work_after_minutes": 0})
    from tests.conftest import simulator_for
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_slow_ok")
    chat.walk_to_photo(seed_roster(app)[0])
    assert "正在检查" in chat.send_photo(photo(PHOTO), delay=1.0)
    fake_wechat.wait_for_messages(1, timeout=15)
    deadline = time.monotonic() + 5
    while pending_messages(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pending_messages(app) == []
    result = app.test_cli_runner().invoke(args=["jobs", "run", "deferred"])
    assert "resumed=0" in result.output
    assert len(chat.customer_service_texts()) == 1

