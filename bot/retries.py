"""WeChat gives a webhook 5 s, then drops the connection and sends the same message again, up to three
retries about 5 s apart. Each message is run once, and its reply reaches the candidate once:

- The first attempt claims the message (a row in inbound_keys) and runs it. The claim is a lease its
  process renews every third of `claim_lease_seconds` while the step runs (one UPDATE a second for all
  its messages), so it runs out only when the process died; a retry that finds it run out runs the
  message itself.
- A retry of a message still running waits for its reply until its own budget is spent, and records in
  the row (`waiting_until`) how long it will wait.
- The claim, the step and its stored reply are one transaction (the step runs in the claim's session):
  a text message costs one commit. While that transaction is open a retry cannot see the claim and waits
  on it in the database (PostgreSQL: the key's unique index; SQLite: the one writer lock); a step that
  waits on the network commits first (Context.release), so its claim is visible and leased from then on.
- The step stores its reply in the same transaction as its work (settle). If its own connection or a
  waiting retry can still take the reply, it is the passive answer; if every attempt had to be answered
  without it, it goes out as a customer-service message (through the outbox) and later retries get an
  empty answer. A retry gives up only with a locked check that the step is not done yet, so the
  reply is either taken by a waiting attempt or sent, never both and never neither.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bot.protocol import EMPTY_REPLY
from handlers.base import ClaimLost, Reply
from store import driver, queries
from store.db import Database, connection_lost, unpinged_checkout
from store.models import InboundKey, utcnow

log = logging.getLogger(__name__)

KEEP_KEYS_FOR = timedelta(days=1)  # far beyond WeChat's retry horizon (about 15 s)
PURGE_EVERY = 500
# An attempt stops waiting, and a reply counts as answered in time, this long before WeChat drops the
# connection: enough to commit the reply and send it.
HANDOVER_SECONDS = 0.5
POLL_SECONDS = 0.1  # how often a waiting retry looks at a message run by another process
EMPTY = EMPTY_REPLY.decode()


@dataclass(frozen=True)
class Answered:
    """The message was answered: the stored reply (EMPTY when it went out as a customer-service message
    or when this retry had to give up waiting)."""
    reply_xml: str


@dataclass
class Ticket:
    """This attempt holds the message: it runs the step, and settles the reply in the step's transaction."""
    key: str
    owner: str
    answer_by: datetime  # after this the attempt's own connection is as good as gone
    guard: "RetryGuard"
    render: Callable[[Reply], str] = field(default=lambda reply: EMPTY)
    taken_over: bool = False  # from an attempt whose process died
    # What on_claim returned, in the claim's transaction (the step's reply).
    result: Any = None
    # The transaction that inserted the claim, while nothing else can have seen or changed the row.
    fresh: Any = None
    rendered: tuple[Reply, str] | None = None  # the settled reply and its XML
    along: Any = None  # what claim()'s `along` queued with the claim, for the step (its candidate's row)

    def settle(self, session: Session, reply: Reply) -> bool:
        """Marks the message done with its reply. True: the reply is the passive answer (this attempt's
        connection or a waiting retry takes it); False: nobody can, send it another way."""
        if self.fresh is not None and session.get_transaction() is self.fresh:
            return self._settle_fresh(session, reply)
        row = _locked(session, self.key)
        if row is None or row.done or row.owner != self.owner:
            raise ClaimLost(self.key)
        now = utcnow()
        passive = now < self.answer_by or (row.waiting_until is not None and now < row.waiting_until)
        row.done, row.lease_until = True, None
        row.reply_xml = self._render(reply) if passive else EMPTY
        session.flush()
        Database.after_commit(session, self.guard.wake_waiters)
        return passive

    def _settle_fresh(self, session: Session, reply: Reply) -> bool:
        """The claim was inserted in this very transaction: the row is this attempt's, its waiting_until
        is this attempt's answer_by, and nobody waits on it through the lease (a retry waits on the
        uncommitted row in the database and reads the reply once this commits): one UPDATE, sent with the
        COMMIT."""
        passive = utcnow() < self.answer_by
        driver.execute_at_commit(session, _SETTLE,
                                 {"claim_key": self.key, "xml": self._render(reply) if passive else EMPTY})
        return passive

    def _render(self, reply: Reply) -> str:
        xml = self.render(reply)
        self.rendered = (reply, xml)
        return xml

    def reply_xml(self, reply: Reply) -> str:
        """The XML settle stored for this reply, rendered again only if the step answered otherwise."""
        if self.rendered is not None and self.rendered[0] is reply:
            return self.rendered[1]
        return self.render(reply)


OnClaim = Callable[[Session, Ticket], Any]
Before = Callable[[Session], Callable[[], None] | None]
Along = Callable[[Session, str, str], Any]  # (session, the claim's key, its owner) → what it queued


class StepFailed(Exception):
    """on_claim raised (not ClaimLost): its transaction, and with it the claim unless the step had
    committed it, was rolled back. `ticket` is the attempt's, for running the step again or recording the
    failure (recover). `connection_lost`: the database connection died under it (a restart, a failover),
    after the step had committed part of its work; nothing of the step itself went wrong."""

    def __init__(self, ticket: Ticket, connection_lost: bool = False):
        super().__init__(ticket.key)
        self.ticket = ticket
        self.connection_lost = connection_lost


class RetryGuard:
    def __init__(self, db: Database, lease_seconds: float = 3.0, answer_within_seconds: float = 5.0):
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.answer_within = answer_within_seconds - HANDOVER_SECONDS
        self.process = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._attempts = itertools.count(1)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._held: set[str] = set()  # owners (one per attempt) whose leases the heartbeat renews
        self._heartbeat: threading.Thread | None = None
        self._changed = threading.Condition()

    # -- the front door ---------------------------------------------------------------------------

    def answer_by(self, arrived: float) -> datetime:
        """Until when an attempt that arrived at `arrived` (time.monotonic()) can still be answered."""
        return utcnow() + timedelta(seconds=self.answer_within - (time.monotonic() - arrived))

    def claim(self, key: str, answer_by: datetime, on_claim: OnClaim | None = None,
              render: Callable[[Reply], str] | None = None, before: Before | None = None,
              along: Along | None = None) -> Ticket | None | Answered:
        """A Ticket when this attempt ran the message (first, or the owner died); None when another
        attempt is running it (wait()); Answered when it is done. `on_claim(session, ticket)` (the step)
        runs in the claim's own transaction when this attempt wins it, so claim and step commit together;
        what it returns is `ticket.result`. It raising ClaimLost passes through; anything else rolls the
        transaction back and raises StepFailed. `before(session)` runs first in the same transaction (the
        replay guard's nonce): what it queues goes out with the claim, and the check it may return runs once
        that has gone out, before anything else. `along(session, key, owner)` queues statements to go out
        with the claim's INSERT (store/driver.queue: one round trip on PostgreSQL); what it returns is
        `ticket.along` when this attempt inserted the claim, and is dropped otherwise (a statement queued
        there must check that the claim is that owner's before it locks anything)."""
        self._maybe_purge()
        owner = self._new_owner()
        return self._again_if_cut_off(lambda: self._in_transaction(owner, lambda session: self._claim(
            session, key, owner, answer_by, on_claim, render, before, along)), on_claim)

    def _claim(self, session: Session, key: str, owner: str, answer_by: datetime, on_claim: OnClaim | None,
               render: Callable[[Reply], str] | None, before: Before | None,
               along: Along | None) -> Ticket | None | Answered:
        check = before(session) if before is not None else None
        inserted = self._queue_insert(session, key, owner, answer_by)
        queued = along(session, key, owner) if along is not None else None
        if check is not None:
            check()
        if inserted.rows():
            ticket = Ticket(key, owner, answer_by, self, fresh=session.get_transaction(), along=queued)
            return self._won(session, _with_render(ticket, render), on_claim)
        return self._visit(session, key, owner, answer_by, giving_up=False, on_claim=on_claim, render=render)

    def _in_transaction(self, owner: str, work: Callable[[Session], Any]) -> Any:
        """work(session) in one transaction; a failed step comes out as StepFailed once rolled back. The
        attempt's lease is renewed only while it runs."""
        try:
            try:
                return self._run(work)
            except _Reconnected as cut:
                log.warning("database connection lost before anything was kept (%s); running the message "
                            "again on a new connection", cut.__cause__.__class__.__name__)
                return self._run(work)
        except _Failed as failed:
            raise StepFailed(failed.ticket, connection_lost(failed.__cause__)) from failed.__cause__
        finally:
            self._let_go(owner)

    def _run(self, work: Callable[[Session], Any]) -> Any:
        """work(session) in one transaction, on a connection taken from the pool without the round trip
        of a ping. One found dead (the database restarted, or the connection was terminated) comes out
        as _Reconnected when nothing of this attempt was committed: the pool has dropped its connections
        by then, so running it again is safe and answers the candidate instead of failing the message."""
        try:
            with unpinged_checkout(), self.db.session() as session:
                return work(session)
        except DBAPIError as error:
            if connection_lost(error):
                raise _Reconnected() from error
            raise
        except _Failed as failed:
            if connection_lost(failed.__cause__) and not failed.committed:
                raise _Reconnected() from failed.__cause__
            raise

    def _again_if_cut_off(self, attempt: Callable[[], Any], on_claim: OnClaim | None) -> Any:
        """attempt(): a claim or a visit. A step whose connection died after it had committed part of its
        work (StepFailed.connection_lost) runs again once, at once, taking that work over as a retry would;
        failing again, it comes out as StepFailed."""
        try:
            return attempt()
        except StepFailed as failed:
            if not failed.connection_lost or on_claim is None:
                raise
            log.warning("message %s: the database connection was lost after the step kept part of its work "
                        "(%s); running it again", failed.ticket.key, failed.__cause__.__class__.__name__)
            return self.recover(failed.ticket, on_claim)

    def recover(self, ticket: Ticket, on_claim: OnClaim) -> Ticket:
        """After StepFailed: holds the message again for this attempt (its claim row is back, or still
        there if the step had committed it) and runs on_claim (the step again, taking over what it had
        committed, or recording the failure) in that transaction, its lease renewed meanwhile. ClaimLost
        if another attempt holds it meanwhile; StepFailed if on_claim fails."""
        def work(session: Session) -> Ticket:
            row = _locked(session, ticket.key)
            if row is None:
                if not self._insert(session, ticket.key, ticket.owner, ticket.answer_by):
                    raise ClaimLost(ticket.key)
            elif row.done or row.owner != ticket.owner:
                raise ClaimLost(ticket.key)
            again = Ticket(ticket.key, ticket.owner, ticket.answer_by, self, render=ticket.render, taken_over=True)
            return self._won(session, again, on_claim)
        return self._in_transaction(ticket.owner, work)

    def wait(self, key: str, answer_by: datetime, on_claim: OnClaim | None = None,
             render: Callable[[Reply], str] | None = None) -> Ticket | Answered:
        """Waits for the attempt running the message until answer_by; takes the message over if that
        attempt's process dies meanwhile. Answered(EMPTY) when it had to give up."""
        while True:
            left = (answer_by - utcnow()).total_seconds()
            if left > 0:
                with self._changed:
                    self._changed.wait(min(POLL_SECONDS, left))
            row = self._peek(key)
            if row is not None and row.done:
                return Answered(row.reply_xml or EMPTY)
            if left <= 0 or row is None or _expired(row, utcnow()):
                found = self._again_if_cut_off(lambda: self._revisit(key, answer_by, giving_up=left <= 0,
                                                                     on_claim=on_claim, render=render), on_claim)
                if found is not None:
                    return found

    def release(self, ticket: Ticket) -> None:
        """The step failed before it settled: let WeChat's retry run it again."""
        self._let_go(ticket.owner)
        with self.db.session() as session:
            session.execute(delete(InboundKey).where(InboundKey.key == ticket.key, InboundKey.owner == ticket.owner,
                                                     InboundKey.done.is_(False)))

    def _let_go(self, owner: str) -> None:
        with self._lock:
            self._held.discard(owner)

    def wake_waiters(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- claiming ---------------------------------------------------------------------------------

    def _insert(self, session: Session, key: str, owner: str, answer_by: datetime) -> bool:
        return bool(self._queue_insert(session, key, owner, answer_by).rows())

    def _queue_insert(self, session: Session, key: str, owner: str, answer_by: datetime) -> driver.Queued:
        now = utcnow()
        return queries.queue_insert_unless_taken(session, _CLAIMS, dict(
            key=key, done=False, created_at=now, owner=owner, lease_until=now + self.lease, waiting_until=answer_by))

    def _visit(self, session: Session, key: str, owner: str, answer_by: datetime, giving_up: bool,
               on_claim: OnClaim | None = None, render: Callable[[Reply], str] | None = None
               ) -> Ticket | None | Answered:
        """With the row locked: done → its reply; owner gone → taken over; else this attempt's wait is
        recorded (or, giving up, withdrawn)."""
        row = _locked(session, key)
        if row is None:  # released after a failure: run it
            if self._insert(session, key, owner, answer_by):
                ticket = Ticket(key, owner, answer_by, self, fresh=session.get_transaction())
                return self._won(session, _with_render(ticket, render), on_claim)
            row = _locked(session, key)
            if row is None:  # inserted and released again meanwhile: look again
                return None
        if row.done:
            return Answered(row.reply_xml or EMPTY)
        now = utcnow()
        if _expired(row, now):
            log.warning("message %s: its claim by %s ran out; this attempt runs it", key, row.owner)
            row.owner, row.lease_until = owner, now + self.lease
            row.waiting_until = max(filter(None, (row.waiting_until, answer_by)))
            return self._won(session, _with_render(Ticket(key, owner, answer_by, self, taken_over=True), render),
                             on_claim)
        if giving_up:
            if row.waiting_until == answer_by:
                row.waiting_until = None
            return Answered(EMPTY)
        if row.waiting_until is None or row.waiting_until < answer_by:
            row.waiting_until = answer_by
        return None

    def _revisit(self, key: str, answer_by: datetime, giving_up: bool, on_claim: OnClaim | None = None,
                 render: Callable[[Reply], str] | None = None) -> Ticket | Answered | None:
        owner = self._new_owner()
        return self._in_transaction(owner, lambda session: self._visit(session, key, owner, answer_by, giving_up,
                                                                       on_claim, render))

    def _won(self, session: Session, ticket: Ticket, on_claim: OnClaim | None) -> Ticket:
        """This attempt holds the message: the heartbeat keeps its lease (once the step commits it),
        and on_claim runs. If it fails, what it had not committed rolls back (the claim too, when this
        transaction inserted it)."""
        self._hold(ticket)
        if on_claim is not None:
            try:
                ticket.result = on_claim(session, ticket)
            except ClaimLost:
                raise
            except Exception as error:
                # Still the claim's own transaction: nothing of this attempt was committed (Context.release).
                committed = ticket.fresh is None or session.get_transaction() is not ticket.fresh
                raise _Failed(ticket, committed) from error
        return ticket

    def _peek(self, key: str) -> InboundKey | None:
        with self.db.read() as session:  # no writer lock on SQLite: waiters poll often
            return session.get(InboundKey, key)

    def _new_owner(self) -> str:
        return f"{self.process}#{next(self._attempts)}"

    # -- the lease --------------------------------------------------------------------------------

    def _hold(self, ticket: Ticket) -> Ticket:
        with self._lock:
            self._held.add(ticket.owner)
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)
                self._heartbeat.start()
        return ticket

    def _beat(self) -> None:
        """Renews the leases of every message this process is running, in one UPDATE; ends when none is."""
        interval = self.lease.total_seconds() / 3
        while True:
            time.sleep(interval)
            with self._lock:
                owners = list(self._held)
                if not owners:
                    self._heartbeat = None
                    return
            try:
                with self.db.session() as session:
                    session.execute(update(InboundKey)
                                    .where(InboundKey.owner.in_(owners), InboundKey.done.is_(False))
                                    .values(lease_until=utcnow() + self.lease)
                                    .execution_options(synchronize_session=False))
            except Exception:
                log.exception("could not renew the claims of %d message(s) in flight", len(owners))

    def _maybe_purge(self) -> None:
        if next(self._counter) % PURGE_EVERY:
            return
        with self.db.session() as session:
            session.execute(delete(InboundKey).where(InboundKey.created_at < utcnow() - KEEP_KEYS_FOR))


class _Failed(Exception):
    def __init__(self, ticket: Ticket, committed: bool = True):
        super().__init__(ticket.key)
        self.ticket = ticket
        self.committed = committed  # part of the attempt's work was committed before it failed


class _Reconnected(Exception):
    """The transaction's connection was found dead before any of the attempt's work was kept."""


def _with_render(ticket: Ticket, render: Callable[[Reply], str] | None) -> Ticket:
    if render is not None:
        ticket.render = render
    return ticket


# Core statements on the model's table, compiled once (its column types apply: the sealed reply).
_CLAIMS = InboundKey.__table__
# The claim a transaction inserted and still holds, settled with its reply.
_SETTLE = driver.DriverStatement(update(_CLAIMS).where(_CLAIMS.c.key == bindparam("claim_key"))
                                 .values(done=True, lease_until=None, reply_xml=bindparam("xml")))


def _locked(session: Session, key: str) -> InboundKey | None:
    return session.scalars(select(InboundKey).where(InboundKey.key == key).with_for_update()).one_or_none()


def _expired(row: InboundKey, now: datetime) -> bool:
    return row.lease_until is None or row.lease_until < now
