"""Step 1: greet a new candidate and ask for the institution's name."""
from __future__ import annotations

from handlers import institution, texts
from handlers.base import Context, Incoming, Outcome, Reply, State


def handle(ctx: Context, msg: Incoming) -> Outcome:
    greeting = texts.welcome(ctx.settings)
    if msg.kind == "text" and institution.names_institution(ctx, msg.text):
        # Someone who already typed the institution's name skips a round trip.
        found = institution.handle(ctx, msg)
        return Outcome(Reply(texts.join(greeting, found.reply.text)), found.state)
    return Outcome(Reply(texts.join(greeting, texts.ask_institution(ctx.settings))), State.INSTITUTION)
