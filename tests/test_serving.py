"""`flask serve --prod`: gunicorn with the worker count and class from `[server]`, answering WeChat."""
from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from standins.simulator import WeChatSimulator, http_transport

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "serve-token"
APPID = "wx_serve_appid"
AES_KEY = "cGhvdG8tY29sbGVjdG9yIHdlYmhvb2sgYmVuY2ghISE"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(tmp_path: Path, port: int, extra_server: str = "") -> Path:
    config = tmp_path / "serve.toml"
    config.write_text(f"""
database_url = "sqlite:///{tmp_path / 'serve.db'}"
data_dir = "{tmp_path / 'data'}"
secret_key = "{secrets.token_hex(16)}"
[wechat]
token = "{TOKEN}"
appid = "{APPID}"
encoding_aes_key = "{AES_KEY}"
api_base_url = "http://127.0.0.1:9"
[privacy]
keys = {{ 1 = "{base64.b64encode(secrets.token_bytes(32)).decode()}" }}
active_key = "1"
lookup_key = "{base64.b64encode(secrets.token_bytes(32)).decode()}"
[server]
port = {port}
workers = 3
{extra_server}
""", encoding="utf-8")
    return config


def flask(config: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "COLLECTOR_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env, **kwargs)


def wait_for(simulator: WeChatSimulator, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if simulator.verify_url("ready").content == "ready":
                return
        except requests.RequestException:  # refused, or accepted but not answered yet (a busy machine)
            time.sleep(0.2)
    pytest.fail("the server never answered")


@pytest.mark.parametrize("how", [["serve", "--prod"], ["serve"]], ids=["--prod", "engine=gunicorn"])
def test_gunicorn_serves_the_webhook_with_the_configured_workers(tmp_path, how):
    port = free_port()
    config = write_config(tmp_path, port, 'engine = "gunicorn"' if how == ["serve"] else "")
    upgrade = flask(config, "db", "upgrade")
    assert upgrade.wait(timeout=120) == 0
    log = (tmp_path / "serve.log").open("wb")
    server = flask(config, *how, stdout=log, stderr=subprocess.STDOUT)
    try:
        simulator = WeChatSimulator(TOKEN, APPID, AES_KEY, http_transport(f"http://127.0.0.1:{port}"), aes=True)
        wait_for(simulator, server)
        openid = "o_serve_" + secrets.token_hex(6)
        assert not simulator.event(openid, "subscribe").empty
        replies = [simulator.text(openid, "帮助") for _ in range(6)]  # spread over the workers
        assert all(reply.status == 200 and reply.content for reply in replies)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        log.close()
    output = (tmp_path / "serve.log").read_text(encoding="utf-8", errors="replace")
    assert "gunicorn, 3 sync workers" in output
    assert len(set(re.findall(r"Booting worker with pid: (\d+)", output))) == 3
    assert code == 0, output[-2000:]
    # Each worker's first message may be a help (read ahead outside the writer lock on SQLite): none failed.
    assert "Traceback" not in output and " ERROR " not in output, output[-3000:]


def _failed_sign_in_addresses(app, **headers) -> list[str | None]:
    from sqlalchemy import select

    from store.models import AuditEvent
    from tests.test_console_cookie import sign_in

    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": "127.0.0.1", **headers})
    sign_in(client, "无此人", "wrong-password")
    with app.extensions["collector"].db.session() as session:
        return list(session.scalars(select(AuditEvent.ip).where(AuditEvent.action == "login.failure")))


def test_behind_a_trusted_proxy_the_audit_log_has_the_clients_address(make_app):
    app = make_app(server={"trusted_proxies": 1})
    assert _failed_sign_in_addresses(app, HTTP_X_FORWARDED_FOR="203.0.113.7") == ["203.0.113.7"]


def test_without_a_trusted_proxy_a_forwarded_for_header_is_ignored(make_app):
    app = make_app()
    assert _failed_sign_in_addresses(app, HTTP_X_FORWARDED_FOR="203.0.113.7") == ["127.0.0.1"]
