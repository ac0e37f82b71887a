"""Step 5: the mobile number (the roster already matched), then the confirmation card that shows it."""
from __future__ import annotations

import messages
from handlers import phone_code, texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from rules.identity import id_number_problem, mask_id_number, split_identity
from rules.phone import parse_mobile


def handle(ctx: Context, msg: Incoming) -> Outcome:
    verify = ctx.settings.sms.verify_phone
    if verify:
        answered = phone_code.answer(ctx, msg.text)
        if isinstance(answered, str):  # the code was right: this number is the candidate's
            ctx.candidate.phone = answered
            return show_card(ctx)
        if answered is not None:
            return answered
    # "我的手机号是13800138000" too: the digits alone, when they are a mobile number.
    phone = parse_mobile(msg.text) or parse_mobile(split_identity(msg.text).id_number or "")
    if phone is None:
        return not_a_phone(ctx, msg.text)
    if verify:
        return phone_code.send(ctx, phone)
    ctx.candidate.phone = phone
    return show_card(ctx)


def not_a_phone(ctx: Context, text: str) -> Outcome:
    if looks_like_identity(text, ctx):
        candidate = ctx.candidate
        reply = messages.IDENTITY_ALREADY_RECORDED.format(name=candidate.name,
                                                          id_number=mask_id_number(candidate.id_number))
        return Outcome(Reply(reply), State.PHONE, checks={"phone": "identity_again"})
    return Outcome(Reply(messages.WRONG_PHONE.format(text=texts.echo(text))), State.PHONE)


def looks_like_identity(text: str, ctx: Context) -> bool:
    """An ID number (whole or in part: 14 digits or more) or the name typed again: meant for the step before."""
    given = split_identity(text)
    digits = given.id_number or ""
    if len(digits) >= 14 or (digits and id_number_problem(digits, ctx.now.date()) is None):
        return True
    return given.name is not None and given.name == ctx.candidate.name


def show_card(ctx: Context) -> Outcome:
    entry = ctx.candidate.roster_entry
    if entry is None:  # unbound by staff meanwhile: start the identity step again
        return Outcome(Reply(texts.ask_identity(ctx.candidate.level or "")), State.IDENTITY)
    return Outcome(Reply(confirm_card(entry, ctx.candidate.phone)), State.CONFIRM, checks={"roster": "matched"})


def confirm_card(entry, phone: str | None) -> str:
    return messages.CONFIRM_CARD.format(
        name=entry.name, id_number=mask_id_number(entry.id_number), exam_number=entry.exam_number,
        level=entry.level, major=entry.major, phone=shown_phone(phone),
    )


def shown_phone(e164: str | None) -> str:
    """The whole number, so that a typo can be seen (the candidate's own chat; transcripts and logs mask it)."""
    return (e164 or "").removeprefix("+86")
