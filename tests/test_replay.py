"""Issue 8.4: one captured query string must not let anyone speak for another candidate.

A plain request's `signature` covers token, timestamp and nonce, not the body. Safe mode (the default
with an AES key) accepts only encrypted requests; compatible and plain mode remember each
(timestamp, nonce) and refuse it with any other message, while WeChat's own retry still gets its reply.
"""
from __future__ import annotations

import socket
import time
import uuid
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from bot.replay import DatabaseNonceStore, RedisNonceStore
from health import Outage
from settings import ConfigError, settings_from_mapping
from standins.simulator import WeChatSimulator, flask_transport, message_xml
from store.models import Candidate, Message, ReplayNonce, RosterEntry, utcnow
from tests.conftest import AES_KEY, APPID, TOKEN
from tests.journey import GRADUATES, Chat, seed_roster

REDIS_URL = "redis://127.0.0.1:6379/0"
VICTIM = "o_victim_000000000000000001"
GRADUATE = GRADUATES[0]


class Recorder:
    """WeChat's wire, tapped: every request that went through, as (path with query, body)."""

    def __init__(self, app):
        self.send = flask_transport(app.test_client())
        self.requests: list[tuple[str, bytes]] = []

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        self.requests.append((path, body))
        return self.send(method, path, body)


def simulator(app, recorder: Recorder, aes: bool) -> WeChatSimulator:
    return WeChatSimulator(TOKEN, APPID, AES_KEY, recorder, aes=aes)


def post(app, path: str, body: bytes):
    return app.test_client().post(path, data=body, content_type="text/xml")


def forged_restart(openid: str) -> bytes:
    return message_xml("gh_0123456789ab", openid, int(time.time()), "text", {"Content": "重新开始"},
                       msg_id=424242424242)


def victim_state(app) -> tuple[str, str | None]:
    with app.extensions["collector"].db.session() as session:
        state = session.scalar(select(Candidate.state).where(Candidate.openid == VICTIM))
        bound = session.scalar(select(RosterEntry.bound_openid).where(RosterEntry.id_number == GRADUATE["id_number"]))
    return state, bound


def messages_in(app) -> int:
    with app.extensions["collector"].db.session() as session:
        return len(session.scalars(select(Message.id).where(Message.direction == "in")).all())


def walk_victim(app, fake_wechat, aes: bool) -> Recorder:
    recorder = Recorder(app)
    seed_roster(app)
    Chat(app, simulator(app, recorder, aes), fake_wechat, VICTIM).walk_to_photo(GRADUATE)
    assert victim_state(app) == ("photo", VICTIM)
    return recorder


# --- safe mode -------------------------------------------------------------------------------------

def test_safe_is_the_default_with_an_aes_key_and_plain_without():
    assert settings_from_mapping({}).wechat.message_mode == "safe"
    assert settings_from_mapping({"wechat": {"encoding_aes_key": ""}}).wechat.message_mode == "plain"
    assert settings_from_mapping({"wechat": {"mode": "compatible"}}).wechat.message_mode == "compatible"


@pytest.mark.parametrize("wechat, error", [
    ({"mode": "secure"}, 'wechat.mode must be "safe", "compatible" or "plain"'),
    ({"mode": "safe", "encoding_aes_key": ""}, "needs a 43-character encoding_aes_key"),
])
def test_a_mode_that_cannot_work_is_a_config_error(wechat, error):
    with pytest.raises(ConfigError, match=error):
        settings_from_mapping({"wechat": wechat})


def test_safe_mode_refuses_a_forged_plain_restart_and_changes_nothing(make_app, fake_wechat):
    app = make_app(wechat={"mode": ""})  # the default: an AES key is set
    recorder = walk_victim(app, fake_wechat, aes=True)
    captured_query, _ = recorder.requests[-1]  # an AES request's query carries `signature` too
    before = messages_in(app)

    forged = post(app, captured_query.replace("encrypt_type=aes", "encrypt_type=raw"), forged_restart(VICTIM))
    fresh = WeChatSimulator(TOKEN, APPID, AES_KEY, flask_transport(app.test_client())).text(VICTIM, "重新开始")

    assert forged.status_code == 403 and fresh.status == 403
    assert victim_state(app) == ("photo", VICTIM)
    assert messages_in(app) == before
    result = app.test_cli_runner().invoke(args=["transcript", VICTIM])
    assert "重新开始" not in result.output


def test_safe_mode_serves_encrypted_requests(make_app, fake_wechat):
    app = make_app(wechat={"mode": "safe"})
    walk_victim(app, fake_wechat, aes=True)  # asserts the walk reached the photo step


# --- compatible and plain mode: the nonce is remembered ------------------------------------------------

def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return client


def on_postgresql(app) -> bool:
    return app.extensions["collector"].db.engine.dialect.name == "postgresql"


def nonces_in_database(app) -> int:
    with app.extensions["collector"].db.session() as session:
        return len(session.scalars(select(ReplayNonce.key)).all())


@pytest.fixture(params=["database", "redis"])
def nonce_store(request):
    """make_app sections without and with a Redis, and a count of the nonces held where that app keeps them:
    in Redis for SQLite beside a Redis, else in the database (on PostgreSQL, in the message's transaction)."""
    if request.param == "database":
        yield {}, nonces_in_database
        return
    client = redis_or_skip()
    prefix = f"h3-test-replay-{uuid.uuid4().hex}"

    def held(app) -> int:
        in_redis = len(list(client.scan_iter(f"{prefix}:nonce:*")))
        if on_postgresql(app):
            assert in_redis == 0
            return nonces_in_database(app)
        return in_redis
    yield {"redis_url": REDIS_URL, "jobs": {"queue_name": prefix}}, held
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


@pytest.mark.parametrize("mode", ["compatible", "plain"])
def test_a_replayed_query_string_with_another_message_is_refused(make_app, fake_wechat, nonce_store, mode):
    sections, held = nonce_store
    wechat = {"mode": mode} if mode == "compatible" else {"mode": mode, "encoding_aes_key": ""}
    app = make_app(**{**sections, "wechat": {**sections.get("wechat", {}), **wechat}})
    recorder = walk_victim(app, fake_wechat, aes=False)
    captured_query, _ = recorder.requests[-1]
    before = messages_in(app)

    forged = post(app, captured_query, forged_restart(VICTIM))

    assert forged.status_code == 403
    assert b"nonce already used" in forged.data
    assert victim_state(app) == ("photo", VICTIM)
    assert messages_in(app) == before
    assert held(app) >= len(recorder.requests)  # every request's nonce went to this store


def test_an_aes_query_string_cannot_carry_a_plain_forgery_in_compatible_mode(make_app, fake_wechat, nonce_store):
    sections, _ = nonce_store
    app = make_app(**sections)  # conftest: compatible
    recorder = walk_victim(app, fake_wechat, aes=True)
    captured_query, _ = recorder.requests[-1]
    plain_query = "&".join(part for part in captured_query.split("&")
                           if not part.startswith(("encrypt_type=", "msg_signature=")))

    assert post(app, plain_query, forged_restart(VICTIM)).status_code == 403
    assert victim_state(app) == ("photo", VICTIM)


@pytest.mark.parametrize("aes", [False, True])
def test_wechats_identical_retry_still_gets_the_first_reply(make_app, fake_wechat, nonce_store, aes):
    sections, _ = nonce_store
    app = make_app(**sections)
    seed_roster(app)
    recorder = Recorder(app)
    first = simulator(app, recorder, aes).text("o_retrying_user_00000000001", "你好")
    path, body = recorder.requests[-1]

    retry = post(app, path, body)

    assert first.status == 200 and "北京市高等教育自学考试" in first.content
    assert retry.status_code == 200
    decoded = simulator(app, recorder, aes)._decode_reply(retry.status_code, retry.data, encrypted=aes)
    assert decoded.content == first.content
    assert messages_in(app) == 1


def test_a_dead_redis_falls_back_to_the_database(make_app, fake_wechat, caplog):
    app = make_app(redis_url=closed_port_redis_url(), jobs={"queue_name": f"h3-test-dead-{uuid.uuid4().hex}"})
    recorder = walk_victim(app, fake_wechat, aes=False)
    captured_query, _ = recorder.requests[-1]

    assert post(app, captured_query, forged_restart(VICTIM)).status_code == 403
    with app.extensions["collector"].db.session() as session:
        assert session.scalars(select(ReplayNonce.key)).first() is not None
    warnings = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
    # Once an interval, not once a request; on PostgreSQL the pairs never go to Redis, which is not missed.
    assert len(warnings) == (0 if on_postgresql(app) else 1)


def test_a_pair_taken_in_the_database_during_an_outage_is_refused_once_redis_is_back(make_app):
    client = redis_or_skip()
    app = make_app()
    prefix = f"h3-test-outage-{uuid.uuid4().hex}"
    store = RedisNonceStore(redis.Redis.from_url(closed_port_redis_url(), socket_connect_timeout=0.5), prefix,
                            fallback=DatabaseNonceStore(app.extensions["collector"].db),
                            outage=Outage("Redis", retry_after=0, log_every=60), remember_seconds=600)
    try:
        assert store.take("pair", "first message", 60) == "first message"  # Redis down: the database
        store.redis = client  # Redis answers again
        assert store.take("pair", "another message", 60) == "first message"
        assert store.take("new pair", "a message", 60) == "a message"
        assert client.get(f"{prefix}:nonce:new pair") == b"a message"
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def closed_port_redis_url() -> str:
    """A Redis URL nobody listens on (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_the_database_store_purges_expired_pairs_as_it_goes(make_app, monkeypatch):
    app = make_app()
    db = app.extensions["collector"].db
    with db.session() as session:
        session.add(ReplayNonce(key="old", fingerprint="m", expires_at=utcnow() - timedelta(seconds=1)))
    monkeypatch.setattr("bot.replay.PURGE_EVERY", 3)
    store = DatabaseNonceStore(db)
    for n in range(3):
        assert store.take(f"pair {n}", "m", 60) == "m"
    with db.session() as session:
        assert sorted(session.scalars(select(ReplayNonce.key))) == ["pair 0", "pair 1", "pair 2"]
