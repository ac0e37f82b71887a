"""Which commits wait for the disk. A read-only command's answer (帮助, 进度) commits without waiting for
PostgreSQL's WAL to be flushed (store/driver.commit_relaxed): all it keeps is the record of that answer, and in
compatible or plain mode the replay guard's nonce, which still refuses a replayed query string. Every other
commit waits.

Seen from PostgreSQL's side: libpq's protocol trace of the app's connections (what it sent, with each
statement's text) and, for the effect itself, the server's count of WAL flushes (pg_stat_wal)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from standins.simulator import WeChatSimulator
from store import driver
from store.models import Candidate, Message, ReplayNonce
from tests.conftest import AES_KEY, APPID, TOKEN, simulator_for
from tests.staff_fixtures import db
from tests.test_driver import CLAIM_ROW, CLAIM_ROW_INSERT, claim_owners
from tests.test_replay import VICTIM, Recorder, forged_restart, post

RELAX = "SET LOCAL synchronous_commit TO off"


def postgresql_or_skip(app) -> None:
    if db(app).engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (TEST_DATABASE_URL): SQLite's commits never wait for the disk in WAL mode")


@contextlib.contextmanager
def traced(app, path: Path):
    """libpq's trace of every connection the app checks out meanwhile, into `path`; yields a function that
    reads the statements and commands sent so far, in order."""
    engine = db(app).engine
    out = path.open("w")

    def start(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.pgconn.trace(out.fileno())

    def stop(dbapi_connection, _record) -> None:
        dbapi_connection.pgconn.untrace()

    event.listen(engine, "checkout", start)
    event.listen(engine, "checkin", stop)
    try:
        yield lambda: sent_statements(path)
    finally:
        event.remove(engine, "checkout", start)
        event.remove(engine, "checkin", stop)
        out.close()


def sent_statements(path: Path) -> list[str]:
    """The text of each Parse and Query the client sent (libpq's trace: time, F/B, length, type, fields). A
    statement prepared earlier on the connection is sent as a Bind of its name, without its text: not listed."""
    found = []
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) > 4 and fields[1] == "F" and fields[3] in ("Parse", "Query"):
            found.append(fields[4].split('"')[3] if fields[3] == "Parse" else fields[4].split('"')[1])
    return found


def commits(statements: list[str]) -> list[str]:
    """What preceded each COMMIT: the relaxing SET, or the last statement of the transaction."""
    return [statements[index - 1] for index, statement in enumerate(statements) if statement == "COMMIT"]


# -- the driver ----------------------------------------------------------------------------------------------


def test_a_relaxed_commit_sends_its_setting_in_the_commits_round_trip_and_keeps_the_rows(app, tmp_path):
    postgresql_or_skip(app)
    with traced(app, tmp_path / "trace") as statements:
        with db(app).session() as session:
            driver.execute_at_commit(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:relaxed"})
            driver.commit_relaxed(session)
        assert statements()[-2:] == [RELAX, "COMMIT"]
    assert claim_owners(app, "msg:relaxed") == ["test"]


def test_a_rolled_back_transactions_relaxing_does_not_carry_over_to_the_next(app, tmp_path):
    postgresql_or_skip(app)
    with traced(app, tmp_path / "trace") as statements, db(app).engine.connect() as connection:
        session = Session(bind=connection)
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:rolled"})
        driver.commit_relaxed(session)
        session.rollback()
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:next"})
        session.commit()
        session.close()
        assert RELAX not in statements() and len(commits(statements())) == 1
    assert claim_owners(app, "msg:rolled") == [] and claim_owners(app, "msg:next") == ["test"]


def wal_flushes(connection) -> int:
    """The server's count of WAL flushes so far, this backend's own share reported first: a backend reports
    its statistics when it goes idle outside a transaction, at most once a second unless asked."""
    connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    connection.commit()
    flushes = connection.exec_driver_sql("SELECT wal_sync FROM pg_stat_wal").scalar()
    connection.commit()
    return flushes


def test_relaxed_commits_do_not_each_flush_the_wal_and_durable_ones_do(app):
    postgresql_or_skip(app)
    commits_each = 40
    flushed = {}
    with db(app).engine.connect() as connection:
        for relaxed in (True, False):
            before = wal_flushes(connection)
            for number in range(commits_each):
                session = Session(bind=connection)
                driver.execute_at_commit(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": f"msg:{relaxed}{number}"})
                if relaxed:
                    driver.commit_relaxed(session)
                session.commit()
                session.close()
            flushed[relaxed] = wal_flushes(connection) - before
    # Durable: one flush per commit at least. Relaxed: the WAL writer's, every 200 ms, and anything else the
    # server flushed meanwhile.
    assert flushed[False] >= commits_each and flushed[True] < commits_each / 4, flushed


def test_on_sqlite_a_relaxed_commit_is_an_ordinary_commit(app):
    with db(app).session() as session:
        driver.execute_at_commit(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:sqlite"})
        driver.commit_relaxed(session)
    assert claim_owners(app, "msg:sqlite") == ["test"]


# -- the webhook ---------------------------------------------------------------------------------------------


def test_an_encrypted_help_request_in_safe_mode_commits_relaxed_and_its_transcript_is_kept(make_app, tmp_path):
    app = make_app(wechat={"mode": "safe"})  # as deployed: msg_signature covers the body, no nonce is kept
    postgresql_or_skip(app)
    simulator = simulator_for(app, aes=True)
    simulator.event("o_relaxed", "subscribe")
    with traced(app, tmp_path / "trace") as statements:
        reply = simulator.text("o_relaxed", "帮助")
        assert commits(statements()) == [RELAX]
    assert reply.status == 200 and reply.content
    assert transcript(app, "o_relaxed")[-2:] == [("in", "帮助"), ("out", reply.content)]


def test_a_plain_help_request_commits_relaxed_and_its_nonce_still_refuses_a_replay(app, tmp_path):
    postgresql_or_skip(app)  # conftest: compatible mode, plain requests pass the replay guard
    recorder = Recorder(app)
    simulator = WeChatSimulator(TOKEN, APPID, AES_KEY, recorder, aes=False)
    simulator.event(VICTIM, "subscribe")
    with traced(app, tmp_path / "trace") as statements:
        reply = simulator.text(VICTIM, "帮助")
        assert commits(statements()) == [RELAX]
    assert reply.status == 200 and transcript(app, VICTIM)[-2:] == [("in", "帮助"), ("out", reply.content)]
    with db(app).read() as session:
        assert session.scalar(select(func.count()).select_from(ReplayNonce)) == 2  # the event's and the text's
    captured_query, _ = recorder.requests[-1]
    before = state_of(app, VICTIM)

    forged = post(app, captured_query, forged_restart(VICTIM))

    assert forged.status_code == 403 and b"nonce already used" in forged.data
    assert state_of(app, VICTIM) == before and transcript(app, VICTIM)[-1] == ("out", reply.content)


def test_a_step_that_changes_the_candidate_commits_durably(make_app, tmp_path):
    app = make_app(wechat={"mode": "safe"})
    postgresql_or_skip(app)
    simulator = simulator_for(app, aes=True)
    simulator.event("o_step", "subscribe")
    before = state_of(app, "o_step")
    with traced(app, tmp_path / "trace") as statements:
        reply = simulator.text("o_step", "北京市高等教育自学考试")  # the institution: the step moves on
        assert RELAX not in statements() and commits(statements())
    assert reply.status == 200 and state_of(app, "o_step") != before


def state_of(app, openid: str) -> str:
    with db(app).read() as session:
        return session.scalar(select(Candidate.state).where(Candidate.openid == openid))


def transcript(app, openid: str) -> list[tuple[str, str]]:
    with db(app).read() as session:
        return [(row.direction, row.content) for row in session.scalars(
            select(Message).where(Message.openid == openid).order_by(Message.id))]
