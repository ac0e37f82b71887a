"""Step 7: the candidate confirms the roster record (学号 shown as the 准考证号) or goes back."""
from __future__ import annotations

import messages
from handlers import identity
from handlers.base import Context, Incoming, Outcome, Reply, State
from handlers.texts import office_fields
from rules.text import compact
from store import queries

_YES = {"1", "确认", "确定", "正确", "无误", "是", "对", "好", "ok", "OK", "yes"}
_NO = {"2", "修改", "有误", "错误", "不对", "否", "no"}


def handle(ctx: Context, msg: Incoming) -> Outcome:
    answer = compact(msg.text)
    if answer in _NO:
        ctx.candidate.roster_entry_id = None
        return Outcome(Reply(identity.start_over(ctx)), State.IDENTITY)
    if answer not in _YES:
        return Outcome(Reply(messages.CONFIRM_CHOICES), State.CONFIRM)
    entry = ctx.candidate.roster_entry
    if entry is None or not queries.bind(ctx.session, entry, ctx.candidate.openid):
        ctx.candidate.roster_entry_id = None
        return Outcome(Reply(messages.ID_BOUND_ELSEWHERE.format(**office_fields(ctx.settings))), State.IDENTITY,
                       checks={"roster": "bound_elsewhere"})
    return Outcome(Reply(messages.NOTICE), State.NOTICE)
