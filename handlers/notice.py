"""Step 8: the notice (no 图像采集码 for self-study candidates; the photo rules in short)."""
from __future__ import annotations

import messages
from handlers.base import Context, Incoming, Outcome, Reply, State
from rules.text import compact

_ACKNOWLEDGED = {"我知道了", "知道了", "我已知晓", "已知晓", "好的", "明白", "收到", "1"}


def handle(ctx: Context, msg: Incoming) -> Outcome:
    if compact(msg.text) in _ACKNOWLEDGED:
        return Outcome(Reply(messages.ASK_PHOTO), State.PHOTO)
    return Outcome(Reply(messages.NOTICE_AGAIN), State.NOTICE)
