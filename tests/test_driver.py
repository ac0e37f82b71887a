"""The webhook's hot statements run on the database driver (store/driver.py), past SQLAlchemy's execution
layer: what that layer did for them must still happen. Sealed columns are sealed with the key ring of the
app that writes them, a driver error comes out as SQLAlchemy's, and a statement that would need a default
or an onupdate filled in is refused when it is built. Connection loss under them: tests/test_connection_loss.py."""
from __future__ import annotations

import base64
import secrets

import pytest
from sqlalchemy import Text, bindparam, delete, event, insert, inspect, select, type_coerce, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError, ProgrammingError
from sqlalchemy.orm import Session

from bot.retries import _CLAIMS
from store import driver, queries, wire
from store.models import Candidate, InboundKey, Message, RosterEntry, utcnow
from store.sealed import OPEN
from tests.conftest import simulator_for
from tests.staff_fixtures import db

TYPED = "身份证 11010519491231002X 收到了吗"


def random_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def fresh_privacy() -> dict:
    return {"keys": {"1": random_key()}, "active_key": "1", "lookup_key": random_key()}


def test_each_app_seals_the_transcript_with_its_own_keys(make_app):
    """Two apps in one process, each with its own keys (as two tenants' or a test's would be): the
    compiled statement is shared, the key ring is each app's."""
    first, second = make_app(privacy=fresh_privacy()), make_app(privacy=fresh_privacy())
    for app, openid in ((first, "o_keys_first"), (second, "o_keys_second")):
        simulator_for(app).text(openid, TYPED)
    for app, openid in ((first, "o_keys_first"), (second, "o_keys_second")):
        with db(app).read() as session:
            assert session.scalar(select(Message.content).where(Message.openid == openid,
                                                                 Message.direction == "in")) == TYPED
            stored = session.scalar(select(type_coerce(Message.content, Text)).where(
                Message.openid == openid, Message.direction == "in"))
        assert "1949" not in stored and OPEN in stored


CLAIM_ROW_INSERT = driver.DriverStatement(insert(_CLAIMS), ["key", "done", "created_at", "owner", "lease_until",
                                                             "waiting_until"])
CLAIM_ROW = {"key": "msg:twice", "done": False, "created_at": utcnow(), "owner": "test", "lease_until": None,
             "waiting_until": None}


def test_a_driver_error_comes_out_as_sqlalchemys_and_the_session_rolls_back(app):
    duplicate, row = CLAIM_ROW_INSERT, CLAIM_ROW
    with db(app).session() as session:
        driver.execute(session, duplicate, row)
    with pytest.raises(IntegrityError):
        with db(app).session() as session:
            driver.execute(session, duplicate, row)
    with db(app).read() as session:
        assert session.scalars(select(InboundKey.owner).where(InboundKey.key == "msg:twice")).all() == ["test"]


def test_the_candidate_read_on_the_driver_is_the_sessions_own_object(app, wechat):
    """Loaded without the ORM's query, it behaves as if loaded by it: changes are flushed (with the hash of
    a sealed column and the onupdate time), and one the session holds already is returned as it is."""
    wechat.event("o_driver_candidate", "subscribe")
    with db(app).session() as session:
        candidate = queries.candidate_for(session, "o_driver_candidate", lock=True)
        assert not session.dirty and candidate in session
        before = candidate.updated_at
        candidate.phone = "13800138000"
        assert queries.candidate_for(session, "o_driver_candidate") is candidate
    with db(app).read() as session:
        stored = session.scalar(select(Candidate).where(Candidate.phone == "13800138000"))
        assert stored is not None and stored.openid == "o_driver_candidate" and stored.updated_at > before


def test_a_statement_that_would_need_a_default_or_an_onupdate_is_refused():
    columns = ["openid", "direction", "channel", "msg_type", "content"]  # no created_at: its default is utcnow
    with pytest.raises(TypeError, match="created_at"):
        driver.DriverStatement(insert(Message.__table__), columns)
    with pytest.raises(TypeError, match="names the columns"):
        driver.DriverStatement(insert(Message.__table__))
    with pytest.raises(TypeError, match="updated_at"):  # its onupdate stamps every change
        driver.DriverStatement(update(Candidate.__table__).values(state="photo"))


def test_a_parameter_left_out_is_refused_before_anything_runs(app):
    """The statement's own values (done=True) go in without the caller; one the caller must give and
    did not is an error that names it, as SQLAlchemy's would be, not a NULL written in its place."""
    settle = driver.DriverStatement(update(_CLAIMS).where(_CLAIMS.c.key == bindparam("claim_key"))
                                    .values(done=True, reply_xml=bindparam("xml")))
    with db(app).session() as session:
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:left-out"})
    with pytest.raises(InvalidRequestError, match="'xml'"):
        with db(app).session() as session:
            driver.execute(session, settle, {"claim_key": "msg:left-out"})
    with db(app).session() as session:
        driver.execute(session, settle, {"claim_key": "msg:left-out", "xml": "<xml/>"})
    with db(app).read() as session:
        row = session.get(InboundKey, "msg:left-out")
        assert (row.done, row.reply_xml) == (True, "<xml/>")


HELD_ROW = {**CLAIM_ROW, "key": "msg:held"}
TRANSCRIPT_ROW = {"openid": "o_held", "direction": "in", "channel": "webhook", "msg_type": "text", "content": "帮助",
                  "created_at": utcnow()}
TRANSCRIPT_INSERT = driver.DriverStatement(insert(Message.__table__), list(TRANSCRIPT_ROW))


def claim_owners(app, key: str) -> list[str]:
    with db(app).read() as session:
        return session.scalars(select(InboundKey.owner).where(InboundKey.key == key)).all()


def test_a_statement_held_for_the_commit_is_written_by_the_commit_and_only_then(app):
    with db(app).session() as session:
        driver.execute_at_commit(session, CLAIM_ROW_INSERT, HELD_ROW)
        assert claim_owners(app, "msg:held") == []  # not sent yet (another session would wait on it otherwise)
    assert claim_owners(app, "msg:held") == ["test"]


def test_a_held_statement_goes_with_a_rollback_and_not_into_the_sessions_next_transaction(app):
    session_factory = db(app)
    with pytest.raises(RuntimeError):
        with session_factory.session() as session:
            driver.execute_at_commit(session, CLAIM_ROW_INSERT, HELD_ROW)
            raise RuntimeError("the step failed")
    assert claim_owners(app, "msg:held") == []
    with session_factory.session() as session:
        driver.execute_at_commit(session, CLAIM_ROW_INSERT, HELD_ROW)
        session.rollback()  # the same session goes on in a new transaction
        driver.execute(session, CLAIM_ROW_INSERT, {**HELD_ROW, "key": "msg:after"})
    assert claim_owners(app, "msg:held") == [] and claim_owners(app, "msg:after") == ["test"]


def test_held_statements_wait_for_the_outer_commit_not_a_savepoints(app):
    """The outbox adds its row in a savepoint (begin_nested), which may come after a held statement."""
    with db(app).session() as session:
        driver.execute_at_commit(session, CLAIM_ROW_INSERT, HELD_ROW)
        with session.begin_nested():
            session.add(InboundKey(**{**HELD_ROW, "key": "msg:in-savepoint"}))  # through the ORM, as the outbox
        assert claim_owners(app, "msg:held") == []  # still the transaction's, and still to come
    assert claim_owners(app, "msg:held") == ["test"] and claim_owners(app, "msg:in-savepoint") == ["test"]


def test_a_driver_statement_after_held_ones_sees_what_they_write(app):
    """Held statements keep their order: a later driver statement in the transaction runs them first."""
    settle = driver.DriverStatement(update(_CLAIMS).where(_CLAIMS.c.key == bindparam("claim_key"))
                                    .values(owner=bindparam("new_owner")))
    with db(app).session() as session:
        driver.execute_at_commit(session, CLAIM_ROW_INSERT, HELD_ROW)
        driver.executemany_at_commit(session, settle, [{"claim_key": "msg:held", "new_owner": "second"}])
        owners = driver.execute(session, driver.DriverStatement(
            select(_CLAIMS.c.owner).where(_CLAIMS.c.key == bindparam("claim_key"))), {"claim_key": "msg:held"})
        assert owners == [("second",)]
    assert claim_owners(app, "msg:held") == ["second"]


def test_a_held_statement_that_fails_fails_the_commit_and_keeps_nothing_of_the_transaction(app):
    with db(app).session() as session:
        driver.execute(session, CLAIM_ROW_INSERT, HELD_ROW)
    with pytest.raises(IntegrityError):
        with db(app).session() as session:
            driver.execute(session, CLAIM_ROW_INSERT, {**HELD_ROW, "key": "msg:before"})
            driver.execute_at_commit(session, CLAIM_ROW_INSERT, HELD_ROW)  # taken: the commit fails
    assert claim_owners(app, "msg:before") == []
    with db(app).session() as session:  # and the connection it failed on works again
        driver.execute(session, CLAIM_ROW_INSERT, {**HELD_ROW, "key": "msg:next"})
    assert claim_owners(app, "msg:next") == ["test"]


def test_on_postgresql_the_held_statements_and_the_commit_make_one_round_trip(app, tmp_path):
    """libpq's protocol trace of the commit: everything goes out before the client waits, with one Sync."""
    session_factory = db(app)
    if session_factory.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (TEST_DATABASE_URL): SQLite has no round trips")
    trace = tmp_path / "libpq.trace"
    with session_factory.session() as session:
        driver.execute(session, CLAIM_ROW_INSERT, {**HELD_ROW, "key": "msg:first"})
        driver.execute_at_commit(session, CLAIM_ROW_INSERT, HELD_ROW)
        driver.executemany_at_commit(session, CLAIM_ROW_INSERT, [{**HELD_ROW, "key": f"msg:many{n}"} for n in range(2)])
        driver.execute_at_commit(session, TRANSCRIPT_INSERT, TRANSCRIPT_ROW)  # its id is generated
        pgconn = session.connection().connection.dbapi_connection.pgconn
        with trace.open("w") as out:
            pgconn.trace(out.fileno())
            try:
                session.commit()
            finally:
                pgconn.untrace()
    messages = [line.split("\t")[1:4:2] for line in trace.read_text().splitlines()]  # timestamp, F/B, length, type
    sent = [kind for side, kind in messages if side == "F"]
    received = [kind for side, kind in messages if side == "B"]
    sides = [side for side, _ in messages]
    assert sides == sorted(sides, key="FB".index)  # all sent before the first answer: the client waited once
    assert sent.count("Sync") == 1 and sent.count("Execute") == 5  # the four INSERTs and the COMMIT
    assert received.count("ReadyForQuery") == 1 and received[-1] == "ReadyForQuery"
    assert "DataRow" not in received  # no RETURNING added to INSERTs whose results nobody reads
    for key in ("msg:first", "msg:held", "msg:many0", "msg:many1"):
        assert claim_owners(app, key) == ["test"]


# -- queued statements (driver.queue) -------------------------------------------------------------------------


OWNER_OF = driver.DriverStatement(select(_CLAIMS.c.owner).where(_CLAIMS.c.key == bindparam("claim_key")))


def test_queued_statements_run_in_order_and_each_gets_its_own_rows(app):
    """Sent together on PostgreSQL, each at once on SQLite: a statement sees what the ones queued before it
    wrote, and the rows are the same either way."""
    with db(app).session() as session:
        inserted = driver.queue(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:queued"})
        owner = driver.queue(session, OWNER_OF, {"claim_key": "msg:queued"})
        missing = driver.queue(session, OWNER_OF, {"claim_key": "msg:nobody"})
        assert owner.rows() == [("test",)]
        assert inserted.rows() == [] and missing.rows() == []
    assert claim_owners(app, "msg:queued") == ["test"]


def test_a_queued_statement_left_unread_goes_out_with_the_commit(app):
    with db(app).session() as session:
        driver.queue(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:unread"})
    assert claim_owners(app, "msg:unread") == ["test"]


def test_a_queued_statement_goes_with_a_rollback(app):
    session_factory = db(app)
    with session_factory.session() as session:
        queued = driver.queue(session, OWNER_OF, {"claim_key": "msg:rolled-back"})
        session.rollback()
        if session_factory.engine.dialect.name == "postgresql":  # SQLite ran it at once
            with pytest.raises(InvalidRequestError):
                queued.rows()
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:after-rollback"})
    assert claim_owners(app, "msg:after-rollback") == ["test"]


# -- PostgreSQL's wire: statements prepared by name, per connection (store/wire.py) ------------------------


def on_one_connection(app):
    session_factory = db(app)
    if session_factory.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (TEST_DATABASE_URL): SQLite prepares nothing by name")
    return session_factory.engine.connect()


def test_on_postgresql_the_prepared_statements_outlive_rollbacks_and_orm_queries(app):
    """psycopg, left to prepare statements itself, deallocates every prepared statement after a ROLLBACK:
    the driver's would be gone from the connection under it."""
    with on_one_connection(app) as connection:
        for attempt in range(2):
            session = Session(bind=connection)
            driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": f"msg:outlive{attempt}"})
            for _ in range(6):  # more than psycopg's prepare threshold
                session.scalars(select(InboundKey).where(InboundKey.key == f"msg:outlive{attempt}")).all()
            (session.commit if attempt else session.rollback)()
            session.close()
    assert claim_owners(app, "msg:outlive0") == [] and claim_owners(app, "msg:outlive1") == ["test"]


def test_on_postgresql_a_statement_cut_off_by_an_earlier_failure_is_prepared_again(app):
    """A failed statement makes the server skip the rest of its round trip, the prepares in it too: the
    connection must not take a statement for prepared that never was."""
    fresh = driver.DriverStatement(select(_CLAIMS.c.owner, _CLAIMS.c.done).where(_CLAIMS.c.key == bindparam("k")))
    with on_one_connection(app) as connection:
        session = Session(bind=connection)
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:cut-off"})
        session.commit()
        driver.queue(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:cut-off"})  # taken: fails
        skipped = driver.queue(session, fresh, {"k": "msg:cut-off"})
        with pytest.raises(IntegrityError):
            skipped.rows()
        session.rollback()
        assert driver.execute(session, fresh, {"k": "msg:cut-off"}) == [("test", False)]
        session.close()


def test_on_postgresql_a_value_that_cannot_be_sent_fails_its_transaction_and_not_the_next(app):
    """A parameter psycopg cannot adapt stops the batch halfway, with part of it queued in libpq: the
    connection is dropped (it cannot leave pipeline mode) and the pool's next one works."""
    session_factory = db(app)
    if session_factory.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (TEST_DATABASE_URL): SQLite sends statements one at a time")
    with pytest.raises(ProgrammingError, match="cannot adapt"):
        with session_factory.session() as session:
            driver.queue(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:before-the-bad-one"})
            driver.execute(session, OWNER_OF, {"claim_key": object()})
    with session_factory.session() as session:
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:after-the-bad-one"})
    assert claim_owners(app, "msg:before-the-bad-one") == [] and claim_owners(app, "msg:after-the-bad-one") == ["test"]


def test_on_postgresql_a_batch_larger_than_the_sockets_buffer_goes_out_whole_in_one_exchange(app):
    """store/wire.py flushes and reads the batch itself: 400 rows of 5 000 characters (2 MB, far more than a
    socket's buffer) in one round trip, every row written, the last statement's rows read."""
    with on_one_connection(app) as connection:
        connection.exec_driver_sql("CREATE TABLE wire_big (body text)")
        connection.commit()
        try:
            dbapi = connection.connection.dbapi_connection
            rows = wire.send(dbapi, {}, [(b"INSERT INTO wire_big VALUES ($1)", [[str(n % 10) * 5000] for n in range(400)],
                                          True, False),
                                         (b"SELECT count(*), sum(length(body)) FROM wire_big", [], False, True)],
                             begin=True, commit=True)
            assert rows == [[], [(400, 2_000_000)]]
        finally:
            connection.exec_driver_sql("DROP TABLE wire_big")
            connection.commit()


def test_on_postgresql_a_batch_on_a_terminated_connection_raises_psycopgs_operational_error(app):
    """The server ended the connection (pg_terminate_backend, a restart): the batch fails as psycopg's own
    calls fail, which SQLAlchemy turns into a lost connection (tests/test_connection_loss.py), not a hang."""
    import psycopg

    with on_one_connection(app) as connection:
        dbapi = connection.connection.dbapi_connection
        with db(app).engine.connect() as other:
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({dbapi.info.backend_pid}, 5000)").scalar()
        with pytest.raises(psycopg.OperationalError):
            wire.send(dbapi, {}, [(b"SELECT 1", [], False, True)], begin=True, commit=True)
        connection.invalidate()


def test_statements_queued_before_the_orms_changes_go_out_before_them(app):
    with db(app).session() as session:
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:replaced"})
    delete_claim = driver.DriverStatement(delete(_CLAIMS).where(_CLAIMS.c.key == bindparam("claim_key")))
    with db(app).session() as session:
        driver.queue(session, delete_claim, {"claim_key": "msg:replaced"})
        session.add(InboundKey(**{**CLAIM_ROW, "key": "msg:replaced", "owner": "the orm"}))  # flushed at commit
    assert claim_owners(app, "msg:replaced") == ["the orm"]


def test_a_statement_queued_after_held_ones_sees_what_they_write(app):
    """As for execute(): what the transaction held for its commit goes out before a statement queued after it."""
    with db(app).session() as session:
        driver.execute_at_commit(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:held-first"})
        owner = driver.queue(session, OWNER_OF, {"claim_key": "msg:held-first"})
        assert owner.rows() == [("test",)]
    assert claim_owners(app, "msg:held-first") == ["test"]


# -- a locked row's changes, written with the commit (driver.update_at_commit) ------------------------------


def stored_candidate(app, openid: str) -> Candidate:
    with db(app).read() as session:
        return session.scalar(select(Candidate).where(Candidate.openid == openid))


def flushes_of(session: Session) -> list[list[str]]:
    """The class names of what each ORM flush of `session` wrote."""
    flushed: list[list[str]] = []

    @event.listens_for(session, "after_flush")
    def record(flushing, _context) -> None:
        flushed.append(sorted(type(instance).__name__ for instance in flushing.dirty | flushing.new))
    return flushed


def test_a_locked_candidates_changes_go_out_with_the_commit_not_in_a_flush(app, wechat):
    """What it holds when the session commits, a change after the read included; the flush writes nothing."""
    wechat.event("o_update_at_commit", "subscribe")
    before = stored_candidate(app, "o_update_at_commit")
    with db(app).session() as session:
        flushes = flushes_of(session)
        candidate = queries.candidate_for(session, "o_update_at_commit", lock=True)
        candidate.state = "level"
        candidate.name = "测试名"
        assert stored_candidate(app, "o_update_at_commit").state == before.state  # not yet
        candidate.name = "王小明"  # the last value counts
    after = stored_candidate(app, "o_update_at_commit")
    assert (after.state, after.name) == ("level", "王小明") and after.updated_at > before.updated_at
    assert flushes == []
    assert not inspect(candidate).modified  # as the flush leaves a row it wrote


def test_a_locked_candidates_changes_go_with_a_rollback(app, wechat):
    wechat.event("o_update_rolled_back", "subscribe")
    subscribed = stored_candidate(app, "o_update_rolled_back").state
    session_factory = db(app)
    with pytest.raises(RuntimeError):
        with session_factory.session() as session:
            queries.candidate_for(session, "o_update_rolled_back", lock=True).state = "level"
            raise RuntimeError("the step failed")
    with session_factory.session() as session:  # the same rows, the next transaction: nothing left over
        queries.candidate_for(session, "o_update_rolled_back", lock=True).name = "王小明"
    after = stored_candidate(app, "o_update_rolled_back")
    assert (after.state, after.name) == (subscribed, "王小明") and subscribed != "level"


def test_an_unchanged_locked_candidate_is_not_written(app, wechat):
    """Set to what it was: no UPDATE, so the onupdate time stays (as with the flush)."""
    wechat.event("o_update_unchanged", "subscribe")
    before = stored_candidate(app, "o_update_unchanged")
    with db(app).session() as session:
        candidate = queries.candidate_for(session, "o_update_unchanged", lock=True)
        candidate.state = before.state
    assert stored_candidate(app, "o_update_unchanged").updated_at == before.updated_at


def test_a_changed_relationship_leaves_the_row_to_the_flush(app, wechat, roster):
    """The roster link set through the relationship: the flush works out the column, and writes the rest."""
    wechat.event("o_update_relationship", "subscribe")
    with db(app).session() as session:
        flushes = flushes_of(session)
        entry = session.scalars(select(RosterEntry).order_by(RosterEntry.id).limit(1)).one()
        candidate = queries.candidate_for(session, "o_update_relationship", lock=True)
        candidate.roster_entry = entry
        candidate.state = "confirm"
        entry_id = entry.id
    after = stored_candidate(app, "o_update_relationship")
    assert (after.roster_entry_id, after.state) == (entry_id, "confirm")
    assert flushes == [["Candidate"]]


def test_a_change_flushed_early_is_not_written_twice_and_a_later_one_still_goes(app, wechat):
    wechat.event("o_update_autoflush", "subscribe")
    with db(app).session() as session:
        flushes = flushes_of(session)
        candidate = queries.candidate_for(session, "o_update_autoflush", lock=True)
        candidate.state = "level"
        assert session.scalar(select(Candidate.state).where(Candidate.openid == "o_update_autoflush")) == "level"
        candidate.name = "王小明"  # after the autoflush
    after = stored_candidate(app, "o_update_autoflush")
    assert (after.state, after.name) == ("level", "王小明")
    assert flushes == [["Candidate"]]  # the autoflush; the name went with the commit


def test_a_locked_candidates_changes_wait_for_the_outer_commit_not_a_savepoints(app, wechat):
    wechat.event("o_update_savepoint", "subscribe")
    with db(app).session() as session:
        candidate = queries.candidate_for(session, "o_update_savepoint", lock=True)
        with session.begin_nested():
            candidate.name = "王小明"
        candidate.state = "level"
    after = stored_candidate(app, "o_update_savepoint")
    assert (after.state, after.name) == ("level", "王小明")
