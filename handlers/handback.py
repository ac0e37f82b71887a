"""After the support desk handed a conversation back while WeChat would take no message from us, the
bot's next answer starts by telling the candidate they are back with the bot (once)."""
from __future__ import annotations

from dataclasses import replace

import messages
from handlers import texts
from handlers.base import Context, Outcome


def tell_once(ctx: Context, outcome: Outcome) -> Outcome:
    candidate = ctx.candidate
    if candidate.handed_back_untold_at is None or candidate.agent is not None or outcome.reply.text is None:
        return outcome
    candidate.handed_back_untold_at = None
    return replace(outcome, reply=replace(outcome.reply, text=texts.join(messages.HANDED_BACK_NOTE, outcome.reply.text)))
