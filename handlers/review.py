"""Steps 11 and 12: under review (status and time left) and approved (view the photo)."""
from __future__ import annotations

import math
from datetime import timedelta

import messages
from handlers import texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from store import queries


def under_review(ctx: Context, msg: Incoming) -> Outcome:
    if msg.kind == "image":  # never silently ignored: say what happened to it and what can be done
        return Outcome(Reply(texts.join(messages.PHOTO_WHILE_UNDER_REVIEW, review_status(ctx))), State.UNDER_REVIEW,
                       checks={"photo": "not_used_under_review"})
    return Outcome(Reply(review_status(ctx)), State.UNDER_REVIEW)


def approved(ctx: Context, msg: Incoming) -> Outcome:
    if msg.kind == "image":
        return Outcome(Reply(messages.PHOTO_AFTER_APPROVED), State.APPROVED, checks={"photo": "not_used_approved"})
    return Outcome(Reply(messages.APPROVED_STATUS), State.APPROVED)


def review_status(ctx: Context) -> str:
    order = queries.paid_order(ctx.session, ctx.candidate.roster_entry_id)
    photo = queries.latest_photo(ctx.session, ctx.candidate.id, ("submitted",))
    moments = [t for t in (order and order.paid_at, photo and photo.created_at) if t]
    submitted = max(moments) if moments else ctx.now
    deadline = submitted + timedelta(hours=ctx.settings.collection.review_hours)
    left = (deadline - ctx.now).total_seconds() / 3600
    if left <= 0:
        return messages.UNDER_REVIEW_OVERDUE
    return messages.UNDER_REVIEW.format(deadline=texts.local_time(ctx.settings, deadline),
                                        hours_left=max(1, math.ceil(left)))
