"""Read-only sessions: pages that only read never queue behind a writer, and cannot write by mistake.

Runs on SQLite, and on PostgreSQL with TEST_DATABASE_URL."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from store.models import AuditEvent, Candidate
from tests.journey import GRADUATES

HOLD_SECONDS = 20  # how long the writer would hold its lock if the reader never finished


def hold_a_write(db, release: threading.Event, held: threading.Event) -> threading.Thread:
    """Another thread opens a writing session, writes, and keeps it open until released (or for
    HOLD_SECONDS, so that a reader stuck behind it on the old code finishes, late)."""
    def writer():
        with db.session() as session:
            session.add(AuditEvent(actor="test", action="hold", target="writer-lock"))
            session.flush()
            held.set()
            release.wait(HOLD_SECONDS)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert held.wait(10), "the writer never started"
    return thread


def test_a_read_session_completes_while_a_writer_holds_the_lock(app):
    db = app.extensions["collector"].db
    release, held = threading.Event(), threading.Event()
    writer = hold_a_write(db, release, held)
    seen: list[int] = []

    def reader():
        with db.read() as session:
            seen.append(session.scalar(select(func.count()).select_from(AuditEvent)
                                       .where(AuditEvent.action == "hold")))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(HOLD_SECONDS + 5)
    writer_still_open = writer.is_alive()
    release.set()
    writer.join(10)
    assert seen == [0], "the read waited for the writer instead of reading the last commit"
    assert writer_still_open  # the read finished before the writer let go
    with db.read() as session:  # and once the writer commits, a read sees it
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "hold")) == 1


def test_a_write_in_a_read_session_fails_loudly_and_changes_nothing(app):
    db = app.extensions["collector"].db
    with pytest.raises(DBAPIError, match="readonly|read-only|read only"):
        with db.read() as session:
            session.add(AuditEvent(actor="test", action="sneaky", target="x"))
            session.flush()
    with pytest.raises(DBAPIError, match="readonly|read-only|read only"):
        with db.read() as session:
            session.execute(text("DELETE FROM audit_events"))
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "sneaky")) == 0


def test_the_pay_page_opens_while_a_writer_holds_the_lock(app, chat, photo):
    chat.walk_to_photo(GRADUATES[0])
    link = chat.pay_link(chat.send_photo(photo("webmorph_004_03_blue_ok.jpg")))
    db = app.extensions["collector"].db
    release, held = threading.Event(), threading.Event()
    writer = hold_a_write(db, release, held)
    pages = []

    thread = threading.Thread(target=lambda: pages.append(app.test_client().get(link)), daemon=True)
    thread.start()
    thread.join(HOLD_SECONDS + 5)
    writer_still_open = writer.is_alive()
    release.set()
    writer.join(10)
    assert pages and pages[0].status_code == 200
    assert "¥30.00" in pages[0].get_data(as_text=True)
    assert writer_still_open, "the pay page waited for the writer"
    with db.read() as session:
        assert session.scalar(select(Candidate.state).where(Candidate.openid == chat.openid)) == "payment"
