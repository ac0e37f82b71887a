"""Step 5: the mobile number, then step 6: the roster match on name, ID number and level."""
from __future__ import annotations

from datetime import timedelta

import messages
from handlers import roster_limit, texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from rules.identity import mask_id_number
from rules.phone import parse_mobile
from rules.text import normalize
from store import queries


def handle(ctx: Context, msg: Incoming) -> Outcome:
    phone = parse_mobile(msg.text)
    if phone is None:
        return Outcome(Reply(messages.WRONG_PHONE.format(text=normalize(msg.text)[:20])), State.PHONE)
    ctx.candidate.phone = phone
    return match(ctx)


def match(ctx: Context) -> Outcome:
    candidate = ctx.candidate
    office = texts.office_fields(ctx.settings)
    since = queries.hour_ago(ctx.now)
    limit = ctx.settings.collection.max_failed_matches_per_hour
    if queries.failed_matches_since(ctx.session, candidate.openid, since) >= limit:
        oldest = queries.oldest_failed_match_since(ctx.session, candidate.openid, since)
        minutes = max(1, int((oldest + timedelta(hours=1) - ctx.now).total_seconds() // 60) + 1)
        return Outcome(Reply(messages.TOO_MANY_ATTEMPTS.format(minutes=minutes, **office)), State.IDENTITY,
                       checks={"roster": "rate_limited"})
    wait = roster_limit.minutes_to_wait(ctx)
    if wait is not None:  # the candidate keeps what they typed; sending the phone again retries
        return Outcome(Reply(messages.ROSTER_BUSY.format(minutes=wait, **office)), State.PHONE,
                       checks={"roster": "busy"})
    entry = queries.match_roster(ctx.session, candidate.name, candidate.id_number, candidate.level)
    queries.record_match_attempt(ctx.session, candidate.openid, matched=entry is not None, at=ctx.now)
    if entry is None:
        candidate.name = None
        candidate.id_number = None
        return Outcome(Reply(messages.NO_MATCH.format(**office)), State.IDENTITY, checks={"roster": "no_match"})
    if entry.bound_openid not in (None, candidate.openid):
        return Outcome(Reply(messages.ID_BOUND_ELSEWHERE.format(**office)), State.IDENTITY,
                       checks={"roster": "bound_elsewhere"})
    candidate.roster_entry_id = entry.id
    return Outcome(Reply(confirm_card(entry)), State.CONFIRM, checks={"roster": "matched"})


def confirm_card(entry) -> str:
    return messages.CONFIRM_CARD.format(
        name=entry.name, id_number=mask_id_number(entry.id_number), exam_number=entry.exam_number,
        level=entry.level, major=entry.major,
    )
