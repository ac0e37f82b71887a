"""A text message costs one transaction: the replay guard's nonce, the retry claim, the candidate's row
lock and state, the inbound and outbound transcript rows and the stored reply commit together."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select

from store.models import Candidate, InboundKey, Message
from tests.conftest import simulator_for


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
    assert counts == {"writer": 1, "reader": 0, "commit": 1}
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
