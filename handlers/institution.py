"""Step 2: the institution is the self-study examination itself, never the candidate's school."""
from __future__ import annotations

import messages
from handlers import texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from rules.institution import is_institution, looks_like_school_name


def names_institution(ctx: Context, text: str) -> bool:
    return is_institution(text, ctx.settings.collection.institution)


def handle(ctx: Context, msg: Incoming) -> Outcome:
    institution = ctx.settings.collection.institution
    if names_institution(ctx, msg.text):
        return Outcome(Reply(texts.ask_level(ctx.settings)), State.LEVEL)
    if looks_like_school_name(msg.text):
        return Outcome(Reply(messages.WRONG_INSTITUTION.format(institution=institution)), State.INSTITUTION)
    shown = texts.echo(msg.text)
    return Outcome(Reply(messages.INSTITUTION_NOT_FOUND.format(text=shown, institution=institution)),
                   State.INSTITUTION)
