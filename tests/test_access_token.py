"""The WeChat access token is shared by every process: one fetch serves them all, a rejected token is
replaced once (by the token another process already fetched when there is one), and nothing loops.

Runs on the database (SQLite, or PostgreSQL with TEST_DATABASE_URL) and on Redis at 127.0.0.1:6379
(skipped with the reason when it is not reachable)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests
from wechatpy.exceptions import WeChatClientException

from bot.client import ConfigurableWeChatClient
from bot.access_token import DatabaseTokenStore, FallbackTokenStore, RedisTokenStore, Token, TokenLockTimeout
from tests.conftest import APPID, SECRET

REDIS_URL = "redis://127.0.0.1:6379/0"
SEND_PATH = "/cgi-bin/message/custom/send"
OPENID = "o_token_user_0000000000001"
ROOT = Path(__file__).resolve().parents[1]


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return client


@pytest.fixture(params=["database", "redis"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def new_app(make_app, backend):
    """new_app() → another app instance (another "process") on the same shared token store."""
    sections: dict = {}
    client = prefix = None
    if backend == "redis":
        client = _redis_or_skip()
        prefix = f"test-token-{uuid.uuid4().hex}"
        sections = {"redis_url": REDIS_URL, "jobs": {"queue_name": prefix}}
    yield lambda: make_app(**sections)
    if client is not None:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


def wechat_of(app):
    return app.extensions["collector"].services.wechat


def store_of(app):
    return wechat_of(app).client.token_store


def sends(fake) -> int:
    return sum(1 for _method, path in fake.requests if path == SEND_PATH)


def fetch_token_elsewhere(fake) -> None:
    """Another client of the same official account fetches a token (which retires ours)."""
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    assert "access_token" in requests.get(fake.base_url + "token", params=params, timeout=5).json()


def test_the_configured_store_is_used(new_app, backend):
    store = store_of(new_app())
    if backend == "redis":  # Redis first, the database while Redis is down
        assert isinstance(store, FallbackTokenStore) and isinstance(store.primary, RedisTokenStore)
    else:
        assert isinstance(store, DatabaseTokenStore)


def test_two_processes_share_one_token(new_app, fake_wechat):
    first, second = new_app(), new_app()
    for app in (first, second, first, second):
        wechat_of(app).send_text(OPENID, "你好")
    assert fake_wechat.token_fetches == 1
    assert len(fake_wechat.messages_to(OPENID)) == 4


def test_a_token_invalidated_elsewhere_is_replaced_once_and_the_send_succeeds(new_app, fake_wechat):
    first, second = new_app(), new_app()
    wechat_of(first).send_text(OPENID, "one")
    wechat_of(second).send_text(OPENID, "two")
    fake_wechat.token_grace_seconds = 0
    fetch_token_elsewhere(fake_wechat)
    assert fake_wechat.token_fetches == 2

    before = sends(fake_wechat)
    wechat_of(second).send_text(OPENID, "three")  # 40001, one fetch, one retry
    assert fake_wechat.token_fetches == 3
    assert sends(fake_wechat) == before + 2

    # The other process's copy is rejected too; the store already holds a newer token: no fetch.
    wechat_of(first).send_text(OPENID, "four")
    assert fake_wechat.token_fetches == 3
    assert [m["text"]["content"] for m in fake_wechat.messages_to(OPENID)] == ["one", "two", "three", "four"]


def test_an_upload_retried_with_a_new_token_sends_the_whole_file_again(new_app, fake_wechat):
    app = new_app()
    wechat_of(app).send_text(OPENID, "warm up")
    fake_wechat.token_grace_seconds = 0
    fetch_token_elsewhere(fake_wechat)
    media_id = wechat_of(app).upload_image(b"\xff\xd8 receipt", "receipt.jpg")
    assert fake_wechat.uploaded_media[media_id] == b"\xff\xd8 receipt"
    assert fake_wechat.token_fetches == 3


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_a_token_rejected_even_when_fresh_fails_after_exactly_one_retry(new_app, fake_wechat, errcode):
    app = new_app()
    wechat_of(app).send_text(OPENID, "warm up")
    before = sends(fake_wechat)
    fake_wechat.fail_next_sends(100, errcode=errcode)
    with pytest.raises(WeChatClientException) as raised:
        wechat_of(app).send_text(OPENID, "never arrives")
    fake_wechat.fail_next_sends(0)
    assert raised.value.errcode == errcode
    assert sends(fake_wechat) == before + 2
    assert fake_wechat.token_fetches == 2


@pytest.mark.parametrize("start", ["expired", "empty"])
def test_threads_sharing_a_store_fetch_once(new_app, fake_wechat, start):
    store = store_of(new_app())
    if start == "expired":
        store.refresh(lambda: Token("expired-token", time.time() - 1))
    threads = 8
    clients = [ConfigurableWeChatClient(APPID, SECRET, fake_wechat.base_url, timeout=5, token_store=store)
               for _ in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def send(client: ConfigurableWeChatClient) -> None:
        barrier.wait()
        try:
            client.message.send_text(OPENID, "同时")
        except BaseException as exc:  # reported below, with the fetch count
            errors.append(exc)

    workers = [threading.Thread(target=send, args=(client,)) for client in clients]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert errors == []
    assert fake_wechat.token_fetches == 1
    assert len(fake_wechat.messages_to(OPENID)) == threads
    assert store.get().value != "expired-token"


PROCESS_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from app import create_app

    config, go, openid = sys.argv[1:4]
    wechat = create_app(config).extensions["collector"].services.wechat
    while not Path(go).exists():
        time.sleep(0.01)
    wechat.send_text(openid, "from a process")
""")


def test_separate_processes_fetch_once(new_app, fake_wechat, tmp_path):
    app = new_app()
    config = str(app.extensions["collector"].settings.data_dir.parent / "config.toml")
    go = tmp_path / "go"
    processes = [subprocess.Popen([sys.executable, "-c", PROCESS_SCRIPT, config, str(go), OPENID], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(4)]
    time.sleep(0.5)  # most are ready by now; the rest arrive late, which is fine too
    go.touch()
    for process in processes:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    assert fake_wechat.token_fetches == 1
    assert len(fake_wechat.messages_to(OPENID)) == 4


def test_a_dead_holders_redis_lock_lapses(fake_wechat):
    client = _redis_or_skip()
    name = f"test-token-{uuid.uuid4().hex}"
    store = RedisTokenStore(client, name, lock_timeout=5, wait_timeout=3)
    try:
        client.set(f"{name}:lock", "a process that died", px=300)
        started = time.monotonic()
        token = store.refresh(lambda: Token("new", time.time() + 7200))
        assert token.value == "new" and store.get() == token
        assert 0.2 < time.monotonic() - started < 3
    finally:
        client.delete(name, f"{name}:lock")


def test_a_redis_lock_held_too_long_is_not_waited_for_forever(fake_wechat):
    client = _redis_or_skip()
    name = f"test-token-{uuid.uuid4().hex}"
    store = RedisTokenStore(client, name, lock_timeout=5, wait_timeout=0.3)
    try:
        client.set(f"{name}:lock", "a slow process", px=10_000)
        with pytest.raises(TokenLockTimeout):
            store.refresh(lambda: Token("never", time.time() + 7200))
    finally:
        client.delete(name, f"{name}:lock")
