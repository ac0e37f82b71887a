"""The conversation engine: loads the candidate, routes the message through the state table,
stores the transcript, and finishes deferred work. Knows nothing of HTTP or XML."""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from datetime import datetime, timedelta

from sqlalchemy import select, update

import messages
from bot import states
from handlers import handback, held, texts, window
from handlers.base import (ClaimLost, Context, Incoming, NO_REPLY, Outcome, PASSIVE, Reply, ReplyRoute, Services,
                           State)
from notify import notices
from notify.outbox import Outbox
from rules.text import compact
from settings import Settings
from store import queries
from store.db import Database
from store.models import Message, utcnow

log = logging.getLogger(__name__)

UNFINISHED_HORIZON = timedelta(minutes=2)  # WeChat's retries come within about 15 s


class Conversation:
    def __init__(self, db: Database, settings: Settings, services: Services, outbox: Outbox):
        self.db = db
        self.settings = settings
        self.services = services
        self.outbox = outbox

    def handle(self, incoming: Incoming, arrived: float | None = None, route: ReplyRoute = PASSIVE) -> Reply:
        """The reply to send back now; empty when it went out as a customer-service message instead
        (route.settle decides, in the step's transaction). `arrived`: time.monotonic() of the request."""
        started = time.monotonic() if arrived is None else arrived
        # The retry guard's ticket recorded it with the claim (record_inbound); other routes did not.
        recorded = getattr(route, "inbound", None)
        inbound_id, state_before = recorded or self._record_inbound(incoming, route.taken_over)
        try:
            with self.db.session() as session:
                ctx = self._context(session, incoming.openid, started)
                outcome = handback.tell_once(ctx, self._route(ctx, incoming))
                channel = self._settle(ctx, outcome, inbound_id, channel="passive", route=route)
        except ClaimLost:
            raise
        except Exception:
            log.exception("message %s from %s failed in state %s", incoming.msg_id, incoming.openid, state_before)
            return self._record_failure(incoming.openid, inbound_id, state_before, route)
        for job, kind in ctx.deferred:
            job.add_done_callback(self._finisher(incoming.openid, inbound_id, kind))
        return outcome.reply if channel == "passive" else NO_REPLY

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, ctx: Context, msg: Incoming) -> Outcome:
        state = ctx.candidate.state
        if ctx.candidate.agent is not None:  # a support agent holds the conversation: stored, not answered
            return held.keep(ctx, msg)
        if msg.kind == "event":
            return self._event(ctx, msg)
        command = states.COMMANDS.get(compact(msg.text).lower()) if msg.kind == "text" else None
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

    def _context(self, session, openid: str, started: float) -> Context:
        return Context(session=session, settings=self.settings, services=self.services,
                       candidate=queries.candidate_for(session, openid, lock=True), now=self.now(),
                       started=started)

    def now(self) -> datetime:
        return datetime.now(self.settings.window.tz)

    def _record_inbound(self, incoming: Incoming, taken_over: bool = False) -> tuple[int, str]:
        """Committed before any step runs, so nothing the candidate sent is lost if the step fails."""
        with self.db.session() as session:
            return self._write_inbound(session, incoming, taken_over)

    def record_inbound(self, incoming: Incoming, session, route: ReplyRoute) -> tuple[int, str]:
        """The inbound row in the retry claim's transaction (committed with the claim, before the step)."""
        return self._write_inbound(session, incoming, route.taken_over)

    def _write_inbound(self, session, incoming: Incoming, taken_over: bool) -> tuple[int, str]:
        """A message taken over from a dead process keeps the row its first attempt wrote."""
        candidate = queries.candidate_for(session, incoming.openid)
        row = self._unfinished_inbound(session, incoming) if taken_over else None
        if row is None:
            row = Message(openid=incoming.openid, direction="in", channel="webhook", msg_type=incoming.raw_type,
                          content=_inbound_content(incoming), wechat_msg_id=incoming.msg_id, created_at=utcnow())
            session.add(row)
        row.state_before = candidate.state
        session.flush()
        return row.id, candidate.state

    @staticmethod
    def _unfinished_inbound(session, incoming: Incoming) -> Message | None:
        return session.scalars(
            select(Message).where(Message.openid == incoming.openid, Message.direction == "in",
                                  Message.wechat_msg_id == incoming.msg_id if incoming.msg_id
                                  else Message.wechat_msg_id.is_(None),
                                  Message.content == _inbound_content(incoming), Message.state_after.is_(None),
                                  Message.created_at > utcnow() - UNFINISHED_HORIZON)
            .order_by(Message.id.desc()).limit(1)).first()

    def _settle(self, ctx: Context, outcome: Outcome, inbound_id: int, channel: str,
                route: ReplyRoute = PASSIVE) -> str:
        """Stores the step's effects and its reply; returns how the reply goes out: passive, or custom
        (a deferred verdict), or late (a step that outlasted every attempt WeChat made)."""
        before = ctx.candidate.state
        ctx.candidate.state = outcome.state
        inbound = ctx.session.get(Message, inbound_id)
        if channel == "passive":
            inbound.state_after = outcome.state
            inbound.checks = outcome.checks
            inbound.pending = ctx.deferred[0][1] if ctx.deferred else None
            if not route.settle(ctx.session, outcome.reply):
                channel = "late"
        if outcome.media_path:
            inbound.media_path = outcome.media_path
        if outcome.reply.empty:
            return channel
        if channel in ("custom", "late"):
            key = f"reply:{inbound_id}" if channel == "custom" else f"late:{inbound_id}"
            notice = notices.reply(ctx.candidate.openid, key, outcome.reply.text, outcome.reply.image_media_id)
            self.outbox.add(ctx.session, notice, state_before=before, state_after=outcome.state, checks=outcome.checks)
            return channel
        ctx.session.add(Message(openid=ctx.candidate.openid, direction="out", channel=channel,
                                msg_type="image" if outcome.reply.image_media_id else "text",
                                content=outcome.reply.describe(), state_before=before, state_after=outcome.state,
                                checks=outcome.checks, created_at=utcnow()))
        return channel

    def _record_failure(self, openid: str, inbound_id: int, state: str, route: ReplyRoute) -> Reply:
        reply = Reply(messages.SYSTEM_ERROR)
        with self.db.session() as session:
            inbound = session.get(Message, inbound_id)
            inbound.state_after = state
            inbound.checks = {"error": "handler failed"}
            if not route.settle(session, reply):
                self.outbox.add(session, notices.reply(openid, f"late:{inbound_id}", reply.text))
                return NO_REPLY
            session.add(Message(openid=openid, direction="out", channel="passive", msg_type="text",
                                content=messages.SYSTEM_ERROR, state_before=state, state_after=state,
                                created_at=utcnow()))
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
                    self._settle(ctx, outcome, inbound_id, channel="custom")
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


def _inbound_content(incoming: Incoming) -> str:
    if incoming.kind == "text":
        return incoming.text
    if incoming.kind == "image":
        return f"[image media_id={incoming.media_id}]"
    if incoming.kind == "event":
        return f"[event {incoming.event}]"
    return f"[{incoming.raw_type}]"
