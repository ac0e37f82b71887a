"""Step 4: name and ID number, in one message or one after the other."""
from __future__ import annotations

import messages
from handlers import texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from rules.identity import id_number_problem, mask_id_number, name_problem, split_identity


def handle(ctx: Context, msg: Incoming) -> Outcome:
    given = split_identity(msg.text)
    candidate = ctx.candidate
    problems: list[str] = []
    if given.name is not None:
        problem = name_problem(given.name)
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
        return Outcome(Reply(messages.ASK_PHONE), State.PHONE)
    if candidate.name:
        return Outcome(Reply(messages.ASK_ID_NUMBER.format(name=candidate.name)), State.IDENTITY)
    return Outcome(Reply(messages.ASK_NAME.format(id_number=mask_id_number(candidate.id_number))), State.IDENTITY)


def start_over(ctx: Context) -> str:
    """Back to this step with nothing entered (used by 修改 on the confirmation card)."""
    ctx.candidate.name = None
    ctx.candidate.id_number = None
    return texts.ask_identity(ctx.candidate.level or "")
