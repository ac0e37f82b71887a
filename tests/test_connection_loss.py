"""The app's PostgreSQL connections cut under it (pg_terminate_backend, a database restart): the next
message is still answered as if nothing happened, once. The message's claim transaction takes its
connection without a ping (that would cost a round trip per message), so the loss shows at its first
statement and the message runs again on a new connection; every other checkout is pinged first.

A step that commits early (the photo step, before it waits on the download and the checks) and then loses
its connection has its claim and inbound row kept: it runs again at once, as a retry taking it over would.

Runs on PostgreSQL only (TEST_DATABASE_URL), skipped with that reason on SQLite."""
from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from loadtest.cluster import admin_connection, terminate_connections
from messages import SYSTEM_ERROR
from store import driver
from store.db import connection_of
from store.models import Candidate, Message, Photo
from tests.journey import GRADUATES


@pytest.fixture
def postgres_app(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): SQLite has no connections to cut")
    return app


def inbound_rows(app, openid: str, content: str) -> int:
    with app.extensions["collector"].db.read() as session:
        return session.scalar(select(func.count()).select_from(Message).where(
            Message.openid == openid, Message.direction == "in", Message.content == content))


def test_a_message_on_a_connection_cut_while_busy_runs_again(postgres_app, database_url, wechat, caplog):
    wechat.event("o_cut_busy", "subscribe")
    wechat.text("o_cut_busy", "帮助")  # the pool's connection, used a moment ago
    assert terminate_connections(database_url) >= 1
    caplog.set_level(logging.WARNING, logger="bot.retries")
    reply = wechat.text("o_cut_busy", "北京市高等教育自学考试")
    assert "专科" in reply.content and SYSTEM_ERROR not in reply.content
    assert "running the message again on a new connection" in caplog.text
    assert inbound_rows(postgres_app, "o_cut_busy", "北京市高等教育自学考试") == 1
    with postgres_app.extensions["collector"].db.read() as session:
        assert session.scalar(select(Candidate.state).where(Candidate.openid == "o_cut_busy")) == "level"


def test_every_other_checkout_is_pinged_first(postgres_app, database_url, wechat):
    wechat.event("o_cut_other", "subscribe")
    assert terminate_connections(database_url) >= 1
    with postgres_app.extensions["collector"].db.read() as session:  # a page, a job: no message to run again
        assert session.scalar(select(Candidate.state).where(Candidate.openid == "o_cut_other")) == "institution"


def test_a_photo_step_cut_off_after_its_early_commit_runs_again(postgres_app, database_url, chat, photo, caplog):
    """As in the cohort load test: the connection terminated while the photo step stores its verdict."""
    chat.walk_to_photo(GRADUATES[0])
    engine = postgres_app.extensions["collector"].db.engine
    cut = []

    def cut_at_the_photo_row(connection, cursor, statement, *_):
        if not cut and statement.startswith("INSERT INTO photos"):  # after the step's early commit
            cut.append(connection.connection.driver_connection.info.backend_pid)
            assert terminate_connections(database_url, pid=cut[0]) == 1

    event.listen(engine, "before_cursor_execute", cut_at_the_photo_row)
    caplog.set_level(logging.WARNING, logger="bot.retries")
    try:
        reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    finally:
        event.remove(engine, "before_cursor_execute", cut_at_the_photo_row)
    assert cut, "the photo step never inserted its photo row"
    assert "检查通过" in reply and SYSTEM_ERROR not in reply, reply
    assert "running it again" in caplog.text
    assert chat.state() == "payment"
    with postgres_app.extensions["collector"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(Photo)) == 1
        inbound = session.scalars(select(Message.state_after).where(
            Message.openid == chat.openid, Message.direction == "in", Message.msg_type == "image")).all()
        assert inbound == ["payment"]  # one row for the photo, finished by the run that answered


def test_a_connection_cut_while_the_reply_is_committed_runs_the_message_again(postgres_app, database_url, wechat,
                                                                              caplog):
    """The settled reply and the transcript go out with the COMMIT in one pipeline (store/driver.py). The
    connection terminated while the server works through that pipeline is found lost (psycopg then fails to
    leave pipeline mode, which hid the termination), not handed back to the pool half in pipeline mode."""
    wechat.event("o_cut_commit", "subscribe")
    cut = []

    def cut_during_the_commit(session):
        if not cut and session.info.get(driver._HELD):
            cut.append(connection_of(session).connection.driver_connection.info.backend_pid)
            driver.execute_at_commit(session, SERVER_BUSY, {})  # the server is busy in the pipeline when cut
            threading.Timer(0.2, terminate_connections, (database_url,), {"pid": cut[0]}).start()

    event.listen(Session, "before_commit", cut_during_the_commit, insert=True)  # before the driver's own
    caplog.set_level(logging.WARNING)
    try:
        reply = wechat.text("o_cut_commit", "北京市高等教育自学考试")
    finally:
        event.remove(Session, "before_commit", cut_during_the_commit)
    assert cut, "no commit held statements"
    assert "专科" in reply.content and SYSTEM_ERROR not in reply.content
    assert "Exception during reset" not in caplog.text and "pipeline mode" not in caplog.text, caplog.text
    assert inbound_rows(postgres_app, "o_cut_commit", "北京市高等教育自学考试") == 1
    with postgres_app.extensions["collector"].db.read() as session:
        assert session.scalar(select(Candidate.state).where(Candidate.openid == "o_cut_commit")) == "level"


SERVER_BUSY = driver.DriverStatement(select(func.pg_sleep(1)))


def _allow_connections(database_url: str, allowed: bool) -> None:
    """ALTER DATABASE … ALLOW_CONNECTIONS, from the server's maintenance database; refusing, every open
    connection to it is terminated too."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    with admin_connection(database_url, database="postgres") as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'))
        if not allowed:
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                               {"name": name})


def test_a_push_while_the_database_refuses_connections_is_a_500_and_its_retry_is_answered_once(
        postgres_app, database_url, wechat, caplog):
    """No reply can be kept, so none is given: the 500 makes WeChat send the message again, and the
    retry after the database is back runs it, once."""
    wechat.event("o_db_down", "subscribe")
    msg_id = wechat.next_msg_id()
    _allow_connections(database_url, False)
    try:
        refused = wechat.text("o_db_down", "北京市高等教育自学考试", msg_id=msg_id)
    finally:
        _allow_connections(database_url, True)
    assert refused.status == 500 and refused.body == b"Internal Server Error"
    assert "the webhook failed on a message" in caplog.text
    retried = wechat.text("o_db_down", "北京市高等教育自学考试", msg_id=msg_id)
    assert retried.status == 200 and "专科" in retried.content
    assert inbound_rows(postgres_app, "o_db_down", "北京市高等教育自学考试") == 1
