"""A text message costs one transaction: the replay guard's nonce, the retry claim, the candidate's row
lock and state, the inbound and outbound transcript rows and the stored reply commit together. The
commands that only read (帮助, 进度) take no row lock: they answer while the candidate's row is locked. On
SQLite, which has one writer lock and no row locks, they work out their answer before taking it, and hold it
only to store the claim, the transcript and the reply."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import create_engine, event, func, select, text, update

from sqlalchemy.exc import OperationalError

from store import queries
from store.models import Candidate, InboundKey, Message, Order, utcnow
from tests.conftest import simulator_for
from tests.journey import GRADUATES


def count_transactions(app) -> dict[str, int]:
    """Transactions begun and committed by this thread (the test client runs the request in it), not by
    the claims' heartbeat, on the writer and the reader engine."""
    db = app.extensions["collector"].db
    counts, me = {"writer": 0, "reader": 0, "commit": 0}, threading.get_ident()

    def counter(name):
        def count(_connection) -> None:
            if threading.get_ident() == me:
                counts[name] += 1
        return count

    event.listen(db.engine, "begin", counter("writer"))
    event.listen(db.engine, "commit", counter("commit"))
    if db._read_engine is not db.engine:
        event.listen(db._read_engine, "begin", counter("reader"))
        event.listen(db._read_engine, "commit", counter("commit"))
    return counts


def transcript(app, openid: str) -> list[tuple[str, str, str]]:
    with app.extensions["collector"].db.read() as session:
        return session.execute(select(Message.direction, Message.state_before, Message.state_after)
                               .where(Message.openid == openid).order_by(Message.id)).all()


@pytest.mark.parametrize("aes", [False, True])
def test_help_takes_one_transaction(app, aes):
    wechat = simulator_for(app, aes=aes)
    wechat.event("o_hot_help", "subscribe")
    counts = count_transactions(app)
    reply = wechat.text("o_hot_help", "帮助")
    assert "院校名称" in reply.content
    # On SQLite the answer is worked out in a snapshot before the write transaction takes the writer lock.
    snapshots = 1 if app.extensions["collector"].db.reads_beside_writer else 0
    assert counts == {"writer": 1, "reader": snapshots, "commit": 1}
    assert transcript(app, "o_hot_help")[-2:] == [("in", "institution", "institution"),
                                                  ("out", "institution", "institution")]


def test_a_step_that_moves_the_conversation_on_takes_one_transaction(app, wechat):
    wechat.event("o_hot_step", "subscribe")
    counts = count_transactions(app)
    reply = wechat.text("o_hot_step", "北京市高等教育自学考试")
    assert "专科" in reply.content
    assert counts == {"writer": 1, "reader": 0, "commit": 1}
    assert transcript(app, "o_hot_step")[-2:] == [("in", "institution", "level"), ("out", "institution", "level")]
    with app.extensions["collector"].db.read() as session:
        assert session.scalar(select(Candidate.state).where(Candidate.openid == "o_hot_step")) == "level"
        claims = session.scalars(select(InboundKey).where(InboundKey.key.like("msg:%"))).all()
    assert [(claim.done, claim.lease_until) for claim in claims] == [(True, None)]
    assert "专科" in claims[0].reply_xml  # a retry is answered from it


def test_a_retry_of_an_answered_message_is_answered_from_its_claim(app, wechat):
    wechat.event("o_hot_retry", "subscribe")
    msg_id = wechat.next_msg_id()
    first = wechat.text("o_hot_retry", "帮助", msg_id=msg_id)
    counts = count_transactions(app)
    again = wechat.text("o_hot_retry", "帮助", msg_id=msg_id)
    assert again.content == first.content
    assert counts["commit"] == 1 and counts["writer"] == 1
    assert [row[0] for row in transcript(app, "o_hot_retry")].count("in") == 2  # subscribe, help once


# -- read-only commands take no row lock (PostgreSQL: SQLite has one writer at a time, no row locks) --------


@pytest.fixture
def hold_row_lock(app, database_url):
    """hold_row_lock(openid): another transaction locks the candidate's row, as a step in flight or a staff
    action does, until the returned release() is called."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): SQLite has no row locks, one writer at a time")
    engine = create_engine(database_url)
    held = []

    def hold(openid: str):
        connection = engine.connect()
        connection.execute(text("SELECT id FROM candidates WHERE openid = :openid FOR UPDATE"), {"openid": openid})
        held.append(connection)
        return connection.rollback

    yield hold
    for connection in held:
        connection.close()
    engine.dispose()


def in_background(send) -> tuple[threading.Thread, list]:
    replies: list = []
    thread = threading.Thread(target=lambda: replies.append(send()), daemon=True)
    thread.start()
    return thread, replies


@pytest.mark.parametrize("command, answer", [("帮助", "院校名称"), ("进度", "当前进度")])
def test_help_and_progress_answer_while_the_candidates_row_is_locked(app, wechat, hold_row_lock, command, answer):
    wechat.event("o_hot_unlocked", "subscribe")
    release = hold_row_lock("o_hot_unlocked")
    thread, replies = in_background(lambda: wechat.text("o_hot_unlocked", command))
    thread.join(timeout=10)
    release()
    assert not thread.is_alive(), f"{command} waited for the candidate's row lock"
    assert answer in replies[0].content
    assert transcript(app, "o_hot_unlocked")[-2:] == [("in", "institution", "institution"),
                                                      ("out", "institution", "institution")]


def test_a_step_that_changes_the_candidate_waits_for_their_row_lock(app, wechat, hold_row_lock):
    wechat.event("o_hot_locked", "subscribe")
    release = hold_row_lock("o_hot_locked")
    thread, replies = in_background(lambda: wechat.text("o_hot_locked", "北京市高等教育自学考试"))
    thread.join(timeout=1.0)
    waited = thread.is_alive()
    release()
    thread.join(timeout=10)
    assert waited, "the step ran without the candidate's row lock"
    assert "专科" in replies[0].content


def test_progress_at_the_payment_step_takes_the_row_lock_as_it_may_open_the_order(app, chat, hold_row_lock):
    chat.walk_to_photo(GRADUATES[0])
    with app.extensions["collector"].db.session() as session:  # as a photo that passed leaves it
        session.execute(update(Candidate).where(Candidate.openid == chat.openid).values(state="payment"))
    release = hold_row_lock(chat.openid)
    thread, replies = in_background(lambda: chat.say("进度"))
    thread.join(timeout=1.0)
    waited = thread.is_alive()
    release()
    thread.join(timeout=10)
    assert waited, "progress at the payment step ran without the candidate's row lock"
    assert chat.pay_link(replies[0])
    with app.extensions["collector"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order).where(Order.openid == chat.openid)) == 1


# -- SQLite: read-only commands make their answer outside the one writer lock -----------------------------------


@pytest.fixture
def hold_writer_lock(app):
    """hold_writer_lock(): another thread holds SQLite's writer lock in an open write transaction, as a step
    in flight or a staff action does, until the returned release() is called."""
    db = app.extensions["collector"].db
    if not db.reads_beside_writer:
        pytest.skip("SQLite only: PostgreSQL has no writer lock (row locks: the tests above)")
    release = threading.Event()
    threads = []

    def writer(held: threading.Event) -> None:
        with db.session() as session:
            session.execute(text("UPDATE inbound_keys SET done = done WHERE 0"))  # the transaction is open
            held.set()
            release.wait(timeout=30)

    def hold():
        held = threading.Event()
        thread = threading.Thread(target=writer, args=(held,), daemon=True)
        thread.start()
        threads.append(thread)
        assert held.wait(timeout=10)
        return release.set

    yield hold
    release.set()
    for thread in threads:
        thread.join(timeout=10)


def on_each_read_connection(app, configure) -> None:
    """configure(sqlite3 connection) on every checkout from the read-only pool (snapshots, read())."""
    event.listen(app.extensions["collector"].db._read_engine, "checkout",
                 lambda dbapi_connection, _record, _proxy: configure(dbapi_connection))


def candidate_reads(app) -> threading.Event:
    """Set once a read-only connection has read a candidate's row (SQLite's own statement trace)."""
    seen = threading.Event()

    def trace(statement: str) -> None:
        if "FROM candidates" in statement:
            seen.set()

    on_each_read_connection(app, lambda connection: connection.set_trace_callback(trace))
    return seen


@pytest.mark.parametrize("command, answer", [("帮助", "院校名称"), ("进度", "当前进度")])
def test_help_and_progress_are_worked_out_while_another_write_holds_the_sqlite_writer_lock(
        app, wechat, hold_writer_lock, command, answer):
    wechat.event("o_hot_snapshot", "subscribe")
    read = candidate_reads(app)
    release = hold_writer_lock()
    thread, replies = in_background(lambda: wechat.text("o_hot_snapshot", command))
    worked_out = read.wait(timeout=10)
    stored_meanwhile = bool(replies)
    release()
    thread.join(timeout=10)
    assert worked_out, f"{command} waited for the writer lock before reading the candidate"
    assert not stored_meanwhile, "the reply went out before its transcript could be written"
    assert answer in replies[0].content
    assert transcript(app, "o_hot_snapshot")[-2:] == [("in", "institution", "institution"),
                                                      ("out", "institution", "institution")]


def test_a_step_that_changes_the_candidate_reads_them_under_the_sqlite_writer_lock(app, wechat, hold_writer_lock):
    wechat.event("o_hot_queued", "subscribe")
    read = candidate_reads(app)
    release = hold_writer_lock()
    thread, replies = in_background(lambda: wechat.text("o_hot_queued", "北京市高等教育自学考试"))
    read_early = read.wait(timeout=1.0)
    release()
    thread.join(timeout=10)
    assert not read_early, "a step that changes the candidate read them outside its write transaction"
    assert "专科" in replies[0].content


def test_a_snapshot_that_fails_leaves_the_command_to_its_write_transaction(app, wechat, caplog):
    db = app.extensions["collector"].db
    if not db.reads_beside_writer:
        pytest.skip("SQLite only: elsewhere the answer is made in the write transaction")
    wechat.event("o_hot_fallback", "subscribe")

    def deny_candidates(action, table, *_):  # the read-only connection failing on the candidate's row
        return sqlite3.SQLITE_DENY if table == "candidates" else sqlite3.SQLITE_OK

    on_each_read_connection(app, lambda connection: connection.set_authorizer(deny_candidates))
    reply = wechat.text("o_hot_fallback", "帮助")
    assert "院校名称" in reply.content
    assert "reading ahead for message" in caplog.text and "access to candidates.id is prohibited" in caplog.text
    assert transcript(app, "o_hot_fallback")[-2:] == [("in", "institution", "institution"),
                                                      ("out", "institution", "institution")]


# -- round trips to PostgreSQL (SQLite has none) ------------------------------------------------------------


@pytest.fixture
def round_trips(app, tmp_path):
    """round_trips() → the client's waits on PostgreSQL so far in this thread, each as the protocol messages it
    sent before waiting (libpq's own trace of every connection this thread checked out)."""
    db = app.extensions["collector"].db
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (TEST_DATABASE_URL): SQLite has no round trips")
    trace, me, traced = tmp_path / "libpq.trace", threading.get_ident(), []
    out = trace.open("w")

    def checked_out(dbapi_connection, _record, _proxy) -> None:
        if threading.get_ident() == me:
            dbapi_connection.pgconn.trace(out.fileno())
            traced.append(dbapi_connection.pgconn)

    event.listen(db.engine, "checkout", checked_out)

    def waits() -> list[list[str]]:
        out.flush()
        groups: list[tuple[str, list[str]]] = []
        for line in trace.read_text().splitlines():
            if "\t" not in line:  # a message's text running over lines
                continue
            side, kind = line.split("\t")[1:4:2]
            if not groups or groups[-1][0] != side:
                groups.append((side, []))
            groups[-1][1].append(kind)
        return [sent for side, sent in groups if side == "F"]

    yield waits
    event.remove(db.engine, "checkout", checked_out)
    for pgconn in traced:
        pgconn.untrace()
    out.close()


def test_on_postgresql_help_makes_two_round_trips(app, wechat, round_trips):
    """The nonce, the claim and the candidate's row go out with the transaction's BEGIN; the settled reply
    and the transcript with its COMMIT."""
    wechat.event("o_hot_trips", "subscribe")
    before = len(round_trips())
    reply = wechat.text("o_hot_trips", "帮助")
    assert "院校名称" in reply.content
    waits = round_trips()[before:]
    assert len(waits) == 2, waits
    assert [wait.count("Sync") for wait in waits] == [1, 1]
    # BEGIN, the nonce, the claim, the candidate; the reply, the message in and out, the SET that lets a
    # read-only answer's COMMIT not wait for the disk (store/driver.commit_relaxed), COMMIT
    assert [wait.count("Execute") for wait in waits] == [4, 5]
    assert transcript(app, "o_hot_trips")[-2:] == [("in", "institution", "institution"),
                                                   ("out", "institution", "institution")]


def test_on_postgresql_a_step_that_moves_on_makes_two_round_trips_too(app, wechat, round_trips):
    """The candidate's new state goes out with the COMMIT, not in a flush of its own (driver.update_at_commit):
    the same two waits as help, with the UPDATE where help has its relaxing SET (this COMMIT waits for the disk)."""
    wechat.event("o_hot_trips_step", "subscribe")
    db = app.extensions["collector"].db
    with db.read() as session:
        subscribed_at = session.scalar(select(Candidate.updated_at).where(Candidate.openid == "o_hot_trips_step"))
    before = len(round_trips())
    reply = wechat.text("o_hot_trips_step", "北京市高等教育自学考试")
    assert "专科" in reply.content
    waits = round_trips()[before:]
    assert len(waits) == 2, waits
    # BEGIN, the nonce, the claim, the candidate; its UPDATE, the reply, the message in and out, COMMIT
    assert [wait.count("Execute") for wait in waits] == [4, 5]
    with db.read() as session:
        state, updated_at = session.execute(select(Candidate.state, Candidate.updated_at)
                                            .where(Candidate.openid == "o_hot_trips_step")).one()
    assert state == "level"
    assert updated_at > subscribed_at  # the column's onupdate, as the flush would set it


def test_on_postgresql_the_row_read_with_a_claim_is_locked_only_under_this_attempts_claim(app, wechat, database_url):
    """The candidate's row goes out with the claim, before the claim's result is known: under a claim another
    attempt holds (a retry's, or a dead process's being taken over) it must not be locked, or two attempts
    could each hold what the other waits for."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): SQLite has no row locks, one writer at a time")
    wechat.event("o_hot_guard", "subscribe")
    db = app.extensions["collector"].db
    with db.session() as session:
        session.add(InboundKey(key="msg:guard", done=False, created_at=utcnow(), owner="another attempt"))
    engine = create_engine(database_url)
    try:
        # The claim is another attempt's: this attempt's read finds and locks nothing, its owner's both.
        for reader, locked in (("this attempt", False), ("another attempt", True)):
            with db.session() as session:
                read = queries.queue_candidate(session, "msg:guard", reader, "o_hot_guard", lock=True)
                assert len(read.queued.rows()) == int(locked)
                with engine.connect() as other:
                    other.execute(text("SET lock_timeout = '200ms'"))
                    lock = text("SELECT id FROM candidates WHERE openid = 'o_hot_guard' FOR UPDATE")
                    if locked:
                        with pytest.raises(OperationalError, match="lock"):
                            other.execute(lock)
                    else:
                        assert len(other.execute(lock).all()) == 1
    finally:
        engine.dispose()
