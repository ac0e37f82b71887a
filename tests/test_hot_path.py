"""A text message costs few transactions: the retry claim with the inbound transcript row, then the step
with its reply (plus the replay guard's nonce for plain requests without Redis)."""
from __future__ import annotations

import threading

from sqlalchemy import event


def count_commits(app) -> list[int]:
    """Commits made by this thread (the test client runs the request in it), not by the claims' heartbeat."""
    db = app.extensions["collector"].db
    commits, me = [0], threading.get_ident()

    def counted(_connection) -> None:
        if threading.get_ident() == me:
            commits[0] += 1

    for engine in {db.engine, db._read_engine}:
        event.listen(engine, "commit", counted)
    return commits


def test_a_text_message_takes_three_transactions_in_plain_mode(app, wechat):
    wechat.event("o_hot_path", "subscribe")
    commits = count_commits(app)
    reply = wechat.text("o_hot_path", "帮助")
    assert reply.content
    assert commits[0] == 3  # nonce, claim + inbound row, step + settled reply + outbound row
