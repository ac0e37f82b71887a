"""Step 4: name and ID number, in one message or one after the other; the roster match on name, ID number
and level as soon as both are there (the phone number is asked for only after a match)."""
from __future__ import annotations

from datetime import timedelta

import messages
from handlers import level as level_step
from handlers import roster_limit, texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from rules.identity import id_number_problem, mask_id_number, split_identity, typed_name_problem
from rules.phone import parse_mobile
from rules.text import compact
from store import queries

# After a busy roster (the global limit) name and ID number are kept; one of these runs the match again.
_RETRY = {"核对", "重试", "再试", "再试一次", "重新核对"}
_SWITCH_PREFIXES = ("改为", "改成", "换成", "切换到", "切换为", "改")


def handle(ctx: Context, msg: Incoming) -> Outcome:
    candidate = ctx.candidate
    if candidate.name and candidate.id_number:  # kept after a busy roster or a match on the other level
        switched = _chosen_level(ctx, msg.text)
        if switched is not None and switched != candidate.level:
            candidate.level = switched
            return match(ctx)
        if compact(msg.text) in _RETRY:
            return match(ctx)
    if parse_mobile(msg.text) is not None:  # meant for the next step: not an ID number of 11 digits
        return Outcome(Reply(messages.PHONE_TOO_EARLY), State.IDENTITY, checks={"identity": "phone_too_early"})
    given = split_identity(msg.text)
    problems: list[str] = []
    if given.name is not None:
        problem = typed_name_problem(given.name)
        if problem:
            problems.append(messages.IDENTITY_PROBLEMS[problem])
        else:
            candidate.name = given.name
    if given.id_number is not None:
        problem = id_number_problem(given.id_number, ctx.now.date())
        if problem:
            problems.append(messages.IDENTITY_PROBLEMS[problem].format(length=len(given.id_number)))
        else:
            candidate.id_number = given.id_number
    if given.name is None and given.id_number is None:
        problems.append(messages.IDENTITY_PROBLEMS["name.missing"])
    if problems:
        return Outcome(Reply("\n".join(problems)), State.IDENTITY, checks={"identity": problems})
    if candidate.name and candidate.id_number:
        return match(ctx)
    if candidate.name:
        return Outcome(Reply(messages.ASK_ID_NUMBER.format(name=candidate.name)), State.IDENTITY)
    return Outcome(Reply(messages.ASK_NAME.format(id_number=mask_id_number(candidate.id_number))), State.IDENTITY)


def _chosen_level(ctx: Context, text: str) -> str | None:
    answer = compact(text)
    for prefix in _SWITCH_PREFIXES:
        if answer.startswith(prefix) and len(answer) > len(prefix):
            answer = answer[len(prefix):]
            break
    return level_step.choose(ctx, answer)


def match(ctx: Context) -> Outcome:
    """Name, ID number and level against the roster: the per-account lockout first, then the global
    limit, then the look-up itself."""
    candidate = ctx.candidate
    office = texts.office_fields(ctx.settings)
    since = queries.hour_ago(ctx.now)
    limit = ctx.settings.collection.max_failed_matches_per_hour
    if queries.failed_matches_since(ctx.session, candidate.openid, since) >= limit:
        oldest = queries.oldest_failed_match_since(ctx.session, candidate.openid, since)
        minutes = max(1, int((oldest + timedelta(hours=1) - ctx.now).total_seconds() // 60) + 1)
        _forget(ctx)
        return Outcome(Reply(messages.TOO_MANY_ATTEMPTS.format(minutes=minutes, **office)), State.IDENTITY,
                       checks={"roster": "rate_limited"})
    wait = roster_limit.minutes_to_wait(ctx)
    if wait is not None:  # the candidate keeps what they typed; 核对 retries
        return Outcome(Reply(messages.ROSTER_BUSY.format(minutes=wait, **office)), State.IDENTITY,
                       checks={"roster": "busy"})
    entry = queries.roster_by_id_number(ctx.session, candidate.id_number)
    if entry is not None and entry.name == candidate.name and entry.level != candidate.level:
        # The person is on the roster: not a failed match, only the wrong choice of level.
        queries.record_match_attempt(ctx.session, candidate.openid, matched=True, at=ctx.now)
        text = messages.OTHER_LEVEL.format(found=entry.level, chosen=candidate.level)
        return Outcome(Reply(text), State.IDENTITY, checks={"roster": "other_level", "level": entry.level})
    matched = entry is not None and entry.name == candidate.name
    queries.record_match_attempt(ctx.session, candidate.openid, matched=matched, at=ctx.now)
    if not matched:
        text = messages.NO_MATCH.format(name=candidate.name, id_number=mask_id_number(candidate.id_number),
                                        level=candidate.level, **office)
        _forget(ctx)
        return Outcome(Reply(text), State.IDENTITY, checks={"roster": "no_match"})
    if entry.bound_openid not in (None, candidate.openid):
        _forget(ctx)
        return Outcome(Reply(messages.ID_BOUND_ELSEWHERE.format(**office)), State.IDENTITY,
                       checks={"roster": "bound_elsewhere"})
    candidate.roster_entry_id = entry.id
    return Outcome(Reply(messages.ASK_PHONE), State.PHONE, checks={"roster": "matched"})


def _forget(ctx: Context) -> None:
    ctx.candidate.name = None
    ctx.candidate.id_number = None


def start_over(ctx: Context) -> str:
    """Back to this step with nothing entered (used by 修改 on the confirmation card)."""
    ctx.candidate.roster_entry_id = None
    _forget(ctx)
    return texts.ask_identity(ctx.candidate.level or "")
