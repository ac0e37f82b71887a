"""Outside the collection window: every answer says the window's state first and offers only what is
possible then (进度 and 人工; a candidate under review or approved keeps the whole conversation)."""
from __future__ import annotations

import messages
from handlers import texts
from handlers.base import Context, Outcome, Reply
from rules.window import WindowStatus

# These states still answer normally outside the window: the fee is paid, only staff act now.
OPEN_STATES = texts.OPEN_OUTSIDE_WINDOW


def status(ctx: Context) -> WindowStatus:
    return texts.window_now(ctx.settings, ctx.now)


def is_open(ctx: Context) -> bool:
    return status(ctx) is WindowStatus.OPEN


def applies(ctx: Context) -> bool:
    """Whether this candidate's answers are the window's: it is not open and they have not paid."""
    return ctx.candidate.state not in OPEN_STATES and not is_open(ctx)


def state_text(ctx: Context) -> str:
    return texts.window_state(ctx.settings, ctx.now)


def closed_reply(ctx: Context) -> Outcome:
    """Any message outside the window: its state, then what can be done now."""
    return Outcome(Reply(texts.join(state_text(ctx), messages.OUTSIDE_WINDOW_COMMANDS)), ctx.candidate.state)


def first(ctx: Context, outcome: Outcome) -> Outcome:
    """A command's answer outside the window, with the window's state in front of it."""
    if not applies(ctx) or outcome.reply.text is None:
        return outcome
    state = state_text(ctx)
    if not outcome.reply.text.startswith(state):
        outcome.reply = Reply(texts.join(state, outcome.reply.text), outcome.reply.image_media_id,
                              outcome.reply.transfer_to_kf)
    return outcome
