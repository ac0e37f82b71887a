"""Redis down or hanging (issue 8.3): photos are still checked and answered, payments still answer, the
outbox sweep delivers what could not be queued, /healthz says which dependency is down, and the log
says so once per interval rather than once per attempt.

"Refused" is a closed port on 127.0.0.1; "hanging" is a local TCP server that accepts connections
and never answers. Runs on SQLite, and on PostgreSQL with TEST_DATABASE_URL; the Redis-up case uses
Redis at 127.0.0.1:6379 (skipped with the reason when it is not reachable)."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

import messages
from store.models import Notification
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat, seed_roster
from tests.staff_fixtures import ROWS, put_under_review, write_csv

PROJECT = Path(__file__).resolve().parents[1]
REDIS_UP = "redis://127.0.0.1:6379/0"
GOOD_PHOTO = "webmorph_004_03_blue_ok.jpg"
# A request still unanswered after this is stuck: the configured Redis timeouts are 0.5 s.
STUCK_SECONDS = 30


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class BlackHole:
    """Accepts TCP connections on a free port and never answers (a hung Redis)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


def redis_app(make_app, url: str, immediate: bool = True):
    app = make_app(redis_url=url, jobs={"immediate": immediate, "queue_name": f"test-h2-{uuid.uuid4().hex}"})
    seed_roster(app)
    return app


def candidate(app, fake_wechat, openid: str = "o_outage_1") -> Chat:
    return Chat(app, simulator_for(app), fake_wechat, openid=openid)


def answered_in_time(call):
    """call() run in a thread; its result, or None when it is still stuck after STUCK_SECONDS."""
    results = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    thread.join(STUCK_SECONDS)
    return results[0] if results else None


def test_a_photo_is_checked_and_answered_while_redis_refuses_connections(make_app, fake_wechat, photo):
    app = redis_app(make_app, f"redis://127.0.0.1:{closed_port()}/0")
    chat = candidate(app, fake_wechat)
    chat.walk_to_photo(GRADUATES[0])
    reply = chat.send_photo(photo(GOOD_PHOTO))
    assert "照片检查通过" in reply and "/pay/sandbox/" in reply
    assert chat.state() == "payment"
    # The token fetched meanwhile is shared through the database, for the other processes.
    store = app.extensions["collector"].services.wechat.client.token_store
    assert fake_wechat.token_fetches == 1 and store.fallback.get() is not None


def test_a_photo_gets_its_verdict_not_a_promise_while_redis_hangs(make_app, fake_wechat, photo, black_hole):
    app = redis_app(make_app, f"redis://127.0.0.1:{black_hole.port}/0")
    chat = candidate(app, fake_wechat)
    data = photo(GOOD_PHOTO)  # out here: without ../shared the skip must not be swallowed by answered_in_time
    chat.walk_to_photo(GRADUATES[0])
    reply = answered_in_time(lambda: chat.send_photo(data))
    assert reply is not None, "the photo message was never answered"
    assert reply != messages.PHOTO_CHECKING and "照片检查通过" in reply
    assert chat.customer_service_texts() == []  # the verdict came in the reply itself


def test_payment_answers_while_redis_hangs_and_the_sweep_delivers_the_notice(make_app, fake_wechat, photo,
                                                                             black_hole):
    app = redis_app(make_app, f"redis://127.0.0.1:{black_hole.port}/0", immediate=False)
    chat = candidate(app, fake_wechat)
    data = photo(GOOD_PHOTO)  # out here: without ../shared the skip must not be swallowed by answered_in_time
    chat.walk_to_photo(GRADUATES[0])
    link = chat.pay_link(answered_in_time(lambda: chat.send_photo(data)) or "")
    page = answered_in_time(lambda: chat.pay(link))
    assert page is not None, "the pay POST never answered"
    assert page.status_code == 200 and "已支付" in page.get_data(as_text=True)
    assert chat.state() == "under_review"
    assert chat.customer_service_texts() == []  # not queued: Redis is down
    # The outbox sweep (run here as `flask jobs run outbox`; it needs no queue) delivers it.
    result = app.test_cli_runner().invoke(args=["jobs", "run", "outbox"])
    assert result.exit_code == 0, result.output
    assert any("支付成功" in text for text in chat.customer_service_texts())


def test_healthz_is_503_naming_redis_while_it_hangs(make_app, black_hole):
    app = make_app(redis_url=f"redis://127.0.0.1:{black_hole.port}/0",
                   jobs={"immediate": False, "queue_name": f"test-h2-{uuid.uuid4().hex}"})
    response = answered_in_time(lambda: app.test_client().get("/healthz"))
    assert response is not None and response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down" and "redis" in body["down"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"] == "TimeoutError"
    assert body["checks"]["database"]["ok"] is True


def test_healthz_is_200_with_every_dependency_up(make_app):
    try:
        redis.Redis.from_url(REDIS_UP, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_UP}: {exc}")
    queue = f"test-h2-{uuid.uuid4().hex}"
    app = make_app(redis_url=REDIS_UP, jobs={"immediate": False, "queue_name": queue})
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok" and body["down"] == []
    assert body["checks"]["redis"]["ok"] and body["checks"]["queue"] == {"ok": True, "depth": 0,
                                                                         "ms": body["checks"]["queue"]["ms"]}
    assert body["checks"]["database"]["pending_notifications"] == 0
    assert body["checks"]["database"]["oldest_pending_notification_seconds"] is None


def test_healthz_reports_the_outbox_without_personal_data(make_app, tmp_path):
    app = make_app(jobs={"immediate": False})  # queued in huey's SQLite file, no consumer running
    result = app.test_cli_runner().invoke(args=["roster", "import", str(write_csv(tmp_path / "r.csv", ROWS))])
    assert result.exit_code == 0, result.output
    put_under_review(app, ROWS[0], "o_health_1")
    result = app.test_cli_runner().invoke(args=["review", "approve", ROWS[0][1], "--by", "李老师"])
    assert result.exit_code == 0, result.output
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    database = response.get_json()["checks"]["database"]
    assert database["pending_notifications"] == 2 and database["oldest_pending_notification_seconds"] >= 0
    assert response.get_json()["checks"]["queue"]["depth"] == 2
    assert "redis" not in response.get_json()["checks"]  # not configured
    assert ROWS[0][0] not in text and ROWS[0][1] not in text and "o_health_1" not in text


def test_a_dead_redis_is_logged_once_per_interval_not_per_attempt(make_app, tmp_path, caplog):
    app = make_app(redis_url=f"redis://127.0.0.1:{closed_port()}/0",
                   jobs={"immediate": False, "queue_name": f"test-h2-{uuid.uuid4().hex}"})
    result = app.test_cli_runner().invoke(args=["roster", "import", str(write_csv(tmp_path / "r.csv", ROWS))])
    assert result.exit_code == 0, result.output
    caplog.clear()
    for index, row in enumerate(ROWS):  # each approval queues a WeChat and an SMS notification
        put_under_review(app, row, f"o_logged_{index}")
        result = app.test_cli_runner().invoke(args=["review", "approve", row[1], "--by", "李老师"])
        assert result.exit_code == 0, result.output
    for _ in range(3):
        assert app.test_client().get("/healthz").status_code == 503
    complaints = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(complaints) == 1, [r.getMessage() for r in complaints]
    assert "Redis is unreachable" in complaints[0].getMessage()
    with app.extensions["collector"].db.session() as session:
        assert {row.status for row in session.scalars(select(Notification))} == {"pending"}


def test_the_consumer_delivers_through_the_sweep_and_says_once_that_redis_is_dead(make_app, fake_wechat, tmp_path):
    app = make_app(redis_url=f"redis://127.0.0.1:{closed_port()}/0",
                   jobs={"immediate": False, "queue_name": f"test-h2-{uuid.uuid4().hex}"})
    result = app.test_cli_runner().invoke(args=["roster", "import", str(write_csv(tmp_path / "r.csv", ROWS))])
    assert result.exit_code == 0, result.output
    put_under_review(app, ROWS[0], "o_consumer_1")
    result = app.test_cli_runner().invoke(args=["review", "approve", ROWS[0][1], "--by", "李老师"])
    assert result.exit_code == 0, result.output  # approved; its notifications could not be queued
    config = str(app.extensions["collector"].settings.data_dir.parent / "config.toml")
    env = dict(os.environ, COLLECTOR_CONFIG=config, PYTHONUNBUFFERED="1")
    consumer = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "jobs", "work", "--workers", "2"],
                                cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in consumer.stdout:
            lines.append(line)
            if "consumer started" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(60), "".join(lines)
        deadline = time.monotonic() + 60
        while len(fake_wechat.messages_to("o_consumer_1")) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(4)  # huey's own loop logs dozens of tracebacks in this time
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
        reader.join(10)
    output = "".join(lines)
    assert len(fake_wechat.messages_to("o_consumer_1")) == 1, output  # the sweep ran in the consumer
    with app.extensions["collector"].db.read() as session:
        assert {row.status for row in session.scalars(select(Notification))} == {"sent"}
    assert "huey consumer on Redis" in output
    assert output.count("Redis is unreachable") == 1, output
    assert "Traceback" not in output, output


def test_photo_checks_run_at_most_the_configured_number_at_once(make_app):
    from pacing import at_most

    app = make_app(server={"photo_checks_at_once": 3})
    assert app.extensions["collector"].services.check_photo.at_once == 3
    running, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def slow_check():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1

    bounded = at_most(2, slow_check)
    threads = [threading.Thread(target=bounded) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert running[0] == 2
    release.set()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 2 and running[0] == 0
