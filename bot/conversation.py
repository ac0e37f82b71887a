"""The conversation engine: loads the candidate, routes the message through the state table,
stores the transcript, and finishes deferred work. Knows nothing of HTTP or XML."""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import bindparam, insert, select, update

import messages
from bot import states
from handlers import handback, held, texts, window
from handlers.base import (ClaimLost, Context, Incoming, NO_REPLY, Outcome, PASSIVE, Reply, ReplyRoute, Services,
                           State)
from notify import notices
from notify.outbox import Outbox
from settings import Settings
from store import driver, queries
from store.db import Database, connection_of
from store.models import Candidate, Message, utcnow

log = logging.getLogger(__name__)

UNFINISHED_HORIZON = timedelta(minutes=2)  # WeChat's retries come within about 15 s


class Conversation:
    def __init__(self, db: Database, settings: Settings, services: Services, outbox: Outbox):
        self.db = db
        self.settings = settings
        self.services = services
        self.outbox = outbox

    def handle(self, incoming: Incoming, arrived: float | None = None, route: ReplyRoute = PASSIVE) -> Reply:
        """The step in a transaction of its own (the webhook runs `step` in the retry claim's)."""
        started = time.monotonic() if arrived is None else arrived
        try:
            with self.db.session() as session:
                return self.step(incoming, started, session, route)
        except ClaimLost:
            raise
        except Exception:
            log.exception("message %s from %s failed", incoming.msg_id, incoming.openid)
            with self.db.session() as session:
                return self.record_failure(incoming, session, route)

    def read_ahead(self, incoming: Incoming, started: float) -> ReadAhead | None:
        """SQLite: the answer to a command that only reads (states.reads_only), worked out in a snapshot of
        the last committed state before the message's write transaction begins, so that the one writer
        lock is held only for the claim, the transcript and the settled reply, not while the answer is
        made. None for any other message, for a candidate not yet stored, and where reads do not run
        beside the writer (PostgreSQL takes no lock for them anyway: one transaction is cheaper there)."""
        if not self.db.reads_beside_writer:
            return None
        command = states.command_for(incoming.kind, incoming.text)
        if command not in states.READ_ONLY_COMMANDS:
            return None
        try:
            with self.db.snapshot() as (connection, session):
                candidate = queries.snapshot_candidate(connection, incoming.openid)
                if candidate is None or not states.reads_only(command, candidate):
                    return None
                ctx = self._context_with(session, candidate, started, locked=False)
                return ReadAhead(candidate, ctx.now, self._route(ctx, incoming, command))
        except Exception:  # the step, in its transaction, answers it or records the failure
            log.exception("reading ahead for message %s from %s failed", incoming.msg_id, incoming.openid)
            return None

    def read_with_claim(self, incoming: Incoming):
        """The step's read of the candidate's row, for the retry guard to queue with the message's claim
        (RetryGuard.claim's `along`): on PostgreSQL both go out in one round trip."""
        lock = states.command_for(incoming.kind, incoming.text) not in states.READ_ONLY_COMMANDS
        return partial(queries.queue_candidate, openid=incoming.openid, lock=lock)

    def step(self, incoming: Incoming, started: float, session, route: ReplyRoute = PASSIVE,
             ahead: ReadAhead | None = None, read: queries.CandidateRead | None = None) -> Reply:
        """The reply to send back now; empty when it went out as a customer-service message instead
        (route.settle decides). The candidate's row lock (not for a command that only reads:
        states.reads_only), the transcript in and out, the new state and the settled reply go in
        `session`'s one transaction; the inbound row is written once, at the end
        with what came of it, or when the step commits early (Context.release) so that nothing the
        candidate sent is lost. `started`: time.monotonic() of the request. Deferred work is followed
        once the transaction has committed. `ahead`: the answer read_ahead made, which only needs storing.
        `read`: the candidate's row, read with the claim (read_with_claim)."""
        if ahead is not None and not route.taken_over:
            return self._store_read_ahead(incoming, started, session, route, ahead)
        command = states.command_for(incoming.kind, incoming.text)
        ctx = self._context(session, incoming.openid, started, lock=command not in states.READ_ONLY_COMMANDS,
                            read=read)
        if not ctx.locked and not states.reads_only(command, ctx.candidate):
            ctx.reload()
        existing = self._unfinished_inbound(session, incoming) if route.taken_over else None
        inbound = _Inbound(session, _inbound_values(incoming, ctx.candidate.state), existing, restate=True)
        ctx.before_release.append(inbound.write)
        outcome = handback.tell_once(ctx, self._route(ctx, incoming, command))
        if not ctx.locked and session.is_modified(ctx.candidate):
            raise RuntimeError(f"a read-only command changed candidate {ctx.candidate.id} without its row lock")
        channel = self._settle(ctx, outcome, inbound, channel="passive", route=route)
        if not ctx.locked and channel == "passive" and not ctx.deferred and not route.taken_over:
            # A read-only command answered passively: the transaction keeps only the record of that answer (the
            # transcript pair, the settled claim; on first contact the candidate's bare row). A database crash
            # that lost it would lose nothing else, and WeChat's retry, if one came, gets the same answer. So
            # its COMMIT does not wait for the disk. The replay guard's nonce, if any, rides along: see
            # docs/deploy.md ("PostgreSQL") for why a crash that lost it is acceptable.
            driver.commit_relaxed(session)
        for job, kind in ctx.deferred:
            Database.after_commit(session, partial(job.add_done_callback,
                                                   self._finisher(incoming.openid, inbound.id, kind)))
        return outcome.reply if channel == "passive" else NO_REPLY

    def _store_read_ahead(self, incoming: Incoming, started: float, session, route: ReplyRoute,
                          ahead: ReadAhead) -> Reply:
        """The transcript and the settled reply of an answer read_ahead made, in `session`'s transaction."""
        ctx = self._context_with(session, ahead.candidate, started, locked=False, now=ahead.now)
        inbound = _Inbound(session, _inbound_values(incoming, ahead.candidate.state))
        channel = self._settle(ctx, ahead.outcome, inbound, channel="passive", route=route)
        return ahead.outcome.reply if channel == "passive" else NO_REPLY

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, ctx: Context, msg: Incoming, command) -> Outcome:
        state = ctx.candidate.state
        if ctx.candidate.agent is not None:  # a support agent holds the conversation: stored, not answered
            return held.keep(ctx, msg)
        if msg.kind == "event":
            return self._event(ctx, msg)
        if command is not None and (command in states.OPEN_OUTSIDE_WINDOW_COMMANDS or window.is_open(ctx)):
            return window.first(ctx, command(ctx, msg))
        if window.applies(ctx):
            return window.closed_reply(ctx)
        step = states.STEPS[state]
        handler = states.STEP_BY_KIND.get((state, msg.kind), step.handler)
        if msg.kind not in step.accepts:
            return self._wrong_kind(ctx, msg, step)
        return handler(ctx, msg)

    def _event(self, ctx: Context, msg: Incoming) -> Outcome:
        state = ctx.candidate.state
        event = (msg.event or "").lower()
        if event == "unsubscribe":
            return Outcome(NO_REPLY, state)
        if window.applies(ctx):  # the window's state, not the steps that cannot be taken now
            return window.closed_reply(ctx)
        if state == State.WELCOME:
            return states.STEPS[State.WELCOME].handler(ctx, msg)
        return Outcome(Reply(texts.step_help(self.settings, state)), state)

    def _wrong_kind(self, ctx: Context, msg: Incoming, step: states.Step) -> Outcome:
        state = ctx.candidate.state
        help_text = step.wrong_kind or texts.step_help(self.settings, state)
        if msg.kind == "other":
            help_text = texts.join(messages.UNSUPPORTED_MESSAGE, help_text)
        elif msg.kind == "image":  # say the photo was not kept, not only what the step wants
            help_text = texts.join(messages.PHOTO_TOO_EARLY, help_text)
        return Outcome(Reply(help_text), state)

    # -- transcript and state --------------------------------------------------------------------

    def _context(self, session, openid: str, started: float, lock: bool = True,
                 read: queries.CandidateRead | None = None) -> Context:
        """With lock, the candidate's row is locked until the step's transaction ends (see
        queries.candidate_for); without it the candidate is only read, for a command that reads only."""
        return self._context_with(session, queries.candidate_for(session, openid, lock=lock, read=read), started,
                                  locked=lock)

    def _context_with(self, session, candidate, started: float, locked: bool, now: datetime | None = None) -> Context:
        return Context(session=session, settings=self.settings, services=self.services, candidate=candidate,
                       now=self.now() if now is None else now, started=started, locked=locked)

    def now(self) -> datetime:
        return datetime.now(self.settings.window.tz)

    @staticmethod
    def _unfinished_inbound(session, incoming: Incoming) -> int | None:
        """The inbound row an earlier attempt at this message committed and never finished (its process
        died, or its step failed after committing early): kept, not written twice."""
        return session.scalars(
            select(Message.id).where(Message.openid == incoming.openid, Message.direction == "in",
                                     Message.wechat_msg_id == incoming.msg_id if incoming.msg_id
                                     else Message.wechat_msg_id.is_(None),
                                     Message.content == _inbound_content(incoming), Message.state_after.is_(None),
                                     Message.created_at > utcnow() - UNFINISHED_HORIZON)
            .order_by(Message.id.desc()).limit(1)).first()

    def _settle(self, ctx: Context, outcome: Outcome, inbound: "_Inbound", channel: str,
                route: ReplyRoute = PASSIVE) -> str:
        """Stores the step's effects and its reply; returns how the reply goes out: passive, or custom
        (a deferred verdict), or late (a step that outlasted every attempt WeChat made)."""
        before = ctx.candidate.state
        if outcome.state != before:  # an unchanged row is not flushed
            ctx.candidate.state = outcome.state
        after = {}
        if channel == "passive":
            after = {"state_after": outcome.state, "checks": outcome.checks,
                     "pending": ctx.deferred[0][1] if ctx.deferred else None}
            if not route.settle(ctx.session, outcome.reply):
                channel = "late"
        if outcome.media_path:
            after["media_path"] = outcome.media_path
        if channel == "passive" and not outcome.reply.empty and not ctx.deferred and inbound.id is None:
            # The common case, an answer in the same breath: both transcript rows in one statement.
            inbound.finish_with_reply(after, _outbound_values(ctx.candidate.openid, channel, outcome.reply, before,
                                                              outcome.state, outcome.checks))
            return channel
        inbound_id = inbound.finish(after)
        if outcome.reply.empty:
            return channel
        if channel in ("custom", "late"):
            key = f"reply:{inbound_id}" if channel == "custom" else f"late:{inbound_id}"
            notice = notices.reply(ctx.candidate.openid, key, outcome.reply.text, outcome.reply.image_media_id)
            self.outbox.add(ctx.session, notice, state_before=before, state_after=outcome.state, checks=outcome.checks)
            return channel
        _write_outbound(ctx.session, ctx.candidate.openid, channel, outcome.reply, before, outcome.state,
                        outcome.checks)
        return channel

    def record_failure(self, incoming: Incoming, session, route: ReplyRoute) -> Reply:
        """After a step failed and its transaction rolled back: the inbound row (the one the step
        committed early, if it did) and the system-error reply, settled with `route`."""
        reply = Reply(messages.SYSTEM_ERROR)
        state = queries.candidate_for(session, incoming.openid).state
        inbound = _Inbound(session, _inbound_values(incoming, state), self._unfinished_inbound(session, incoming))
        passive = route.settle(session, reply)
        inbound_id = inbound.finish({"state_after": state, "checks": {"error": "handler failed"}})
        if not passive:
            self.outbox.add(session, notices.reply(incoming.openid, f"late:{inbound_id}", reply.text))
            return NO_REPLY
        _write_outbound(session, incoming.openid, "passive", reply, state, state, None)
        return reply

    # -- deferred work ---------------------------------------------------------------------------

    def _finisher(self, openid: str, inbound_id: int, kind: str):
        _, on_done = states.DEFERRABLE[kind]

        def finish(job: Future) -> None:
            try:
                with self.db.session() as session:
                    ctx = self._context(session, openid, time.monotonic())
                    if not self._claim_deferred(session, inbound_id):
                        log.info("deferred work for message %s was already applied", inbound_id)
                        return
                    outcome = on_done(ctx, job)
                    self._settle(ctx, outcome, _Inbound(session, {}, inbound_id), channel="custom")
            except Exception:
                log.exception("deferred work for %s failed", openid)
                with self.db.session() as session:
                    self._claim_deferred(session, inbound_id)  # told to send again; not redone in a loop
                    self.outbox.add(session, notices.reply(openid, f"reply:{inbound_id}:error", messages.SYSTEM_ERROR))
        return finish

    @staticmethod
    def _claim_deferred(session, inbound_id: int) -> bool:
        """Deferred work is applied once: by the thread that did it, or by the job that redid it
        after that thread's process died, whichever gets here first."""
        return session.execute(
            update(Message).where(Message.id == inbound_id, Message.pending.is_not(None)).values(pending=None)
            .execution_options(synchronize_session=False)
        ).rowcount == 1

    def resume_lost_work(self, older_than: timedelta) -> dict[str, int]:
        """Redoes deferred work still unapplied long after its message (its process died)."""
        cutoff = utcnow() - older_than
        with self.db.session() as session:
            lost = session.execute(select(Message.id, Message.openid, Message.pending, Message.checks)
                                   .where(Message.pending.is_not(None), Message.created_at < cutoff)
                                   .order_by(Message.id)).all()
        for inbound_id, openid, kind, checks in lost:
            redo, _ = states.DEFERRABLE[kind]
            log.warning("redoing %s work for message %s from %s: its process never finished it", kind, inbound_id,
                        openid)
            self._finisher(openid, inbound_id, kind)(redo(self.services, self.settings, checks or {}))
        return {"resumed": len(lost)}


@dataclass(frozen=True)
class ReadAhead:
    """A read-only command's answer, made from the candidate's last committed state (Conversation.read_ahead);
    the candidate as read then, detached (it belongs to no session)."""
    candidate: Candidate
    now: datetime
    outcome: Outcome


class _Inbound:
    """The transcript's row for an incoming message: one INSERT with everything once the step is done,
    or written early (write) and completed by an UPDATE, or an existing row (`row_id`) completed."""

    def __init__(self, session, values: dict, row_id: int | None = None, restate: bool = False):
        self.session = session
        self.values = values
        self.id = row_id
        self._stale = restate  # an existing row still carries its first attempt's state_before

    def write(self) -> int:
        if self.id is None:
            self.id = self._insert(self.values)
        elif self._stale:
            self._update({"state_before": self.values["state_before"]})
        return self.id

    def finish(self, after: dict) -> int:
        if self.id is None:
            self.id = self._insert({**self.values, **after})
            return self.id
        if self._stale:
            after = {"state_before": self.values["state_before"], **after}
        if after:
            self._update(after)
        return self.id

    def finish_with_reply(self, after: dict, outbound: dict) -> None:
        """finish() for a row not yet written, with the reply's row in the same statement (its id unread):
        SQLite runs the two in one call when the step commits, psycopg in the COMMIT's round trip."""
        driver.executemany_at_commit(self.session, _INSERT_MESSAGE,
                                     [_pair_row({**self.values, **after}), _pair_row(outbound)])

    def _insert(self, row: dict) -> int:
        return driver.execute(self.session, _INSERT_MESSAGE_ID, _pair_row(row))[0][0]

    def _update(self, values: dict) -> None:
        connection_of(self.session).execute(_UPDATE_MESSAGE, {"message_id": self.id, **values})
        self._stale = False


# The transcript's statements: the two INSERTs of every message on the driver (store/driver.py), with
# every column of a transcript row but its id, so each compiles once; the rarer UPDATE through Core.
_MESSAGES = Message.__table__
_PAIR_COLUMNS = ("openid", "direction", "channel", "msg_type", "content", "wechat_msg_id", "state_before",
                 "state_after", "checks", "pending", "media_path", "created_at")
_PAIR_COLUMN_SET = frozenset(_PAIR_COLUMNS)
_INSERT_MESSAGE_ID = driver.DriverStatement(insert(_MESSAGES).returning(_MESSAGES.c.id), _PAIR_COLUMNS)
_INSERT_MESSAGE = driver.DriverStatement(insert(_MESSAGES), _PAIR_COLUMNS)
_UPDATE_MESSAGE = update(_MESSAGES).where(_MESSAGES.c.id == bindparam("message_id"))


def _pair_row(values: dict) -> dict:
    unknown = values.keys() - _PAIR_COLUMN_SET
    if unknown:
        raise ValueError(f"not a column the transcript's INSERT writes: {', '.join(sorted(unknown))}")
    return {column: values.get(column) for column in _PAIR_COLUMNS}


def _inbound_values(incoming: Incoming, state_before: str | None) -> dict:
    return {"openid": incoming.openid, "direction": "in", "channel": "webhook", "msg_type": incoming.raw_type,
            "content": _inbound_content(incoming), "wechat_msg_id": incoming.msg_id, "state_before": state_before,
            "created_at": utcnow()}


def _write_outbound(session, openid: str, channel: str, reply: Reply, before: str, after: str, checks) -> None:
    driver.execute(session, _INSERT_MESSAGE, _pair_row(_outbound_values(openid, channel, reply, before, after, checks)))


def _outbound_values(openid: str, channel: str, reply: Reply, before: str, after: str, checks) -> dict:
    return {"openid": openid, "direction": "out", "channel": channel,
            "msg_type": "image" if reply.image_media_id else "text", "content": reply.describe(),
            "state_before": before, "state_after": after, "checks": checks, "created_at": utcnow()}


def _inbound_content(incoming: Incoming) -> str:
    if incoming.kind == "text":
        return incoming.text
    if incoming.kind == "image":
        return f"[image media_id={incoming.media_id}]"
    if incoming.kind == "event":
        return f"[event {incoming.event}]"
    return f"[{incoming.raw_type}]"
