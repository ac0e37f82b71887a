"""Step 3: the education level, by its number or its name."""
from __future__ import annotations

import messages
from handlers import texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from rules.identity import split_identity
from rules.text import compact

_ALIASES = {"大专": "专科", "专升本": "本科"}


def choose(ctx: Context, text: str) -> str | None:
    answer = compact(text)
    answer = _ALIASES.get(answer, answer)
    for level in ctx.settings.collection.levels:
        if answer in (level.number, level.name, f"{level.number}{level.name}"):
            return level.name
    return None


def handle(ctx: Context, msg: Incoming) -> Outcome:
    level = choose(ctx, msg.text)
    if level is None:
        levels = texts.levels_text(ctx.settings)
        if len(split_identity(msg.text).id_number or "") >= 14:  # name and ID number, one step early
            return Outcome(Reply(messages.LEVEL_FIRST.format(levels=levels)), State.LEVEL)
        return Outcome(Reply(messages.WRONG_LEVEL.format(levels=levels)), State.LEVEL)
    ctx.candidate.level = level
    return Outcome(Reply(texts.ask_identity(level)), State.IDENTITY)
