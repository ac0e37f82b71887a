"""The app's PostgreSQL connections cut under it (pg_terminate_backend, a database restart): the next
message is still answered as if nothing happened, once. The message's claim transaction takes its
connection without a ping (that would cost a round trip per message), so the loss shows at its first
statement and the message runs again on a new connection; every other checkout is pinged first.

Runs on PostgreSQL only (TEST_DATABASE_URL), skipped with that reason on SQLite."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from loadtest.cluster import terminate_connections
from messages import SYSTEM_ERROR
from store.models import Candidate, Message


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
