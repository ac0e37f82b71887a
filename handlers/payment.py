"""Step 10: the fee. One pending order per graduate; a graduate who has paid never pays again."""
from __future__ import annotations

import messages
from handlers import texts
from handlers.base import Context, Incoming, Outcome, Reply, State
from payments.orders import open_order
from store import queries


def after_photo_passed(ctx: Context) -> Outcome:
    settings = ctx.settings
    entry = ctx.candidate.roster_entry
    if entry is None or entry.bound_openid != ctx.candidate.openid:
        # The collection ended while the photo was checked (重新开始 or an unbind): nothing to pay for.
        return Outcome(Reply(texts.step_help(settings, ctx.candidate.state)), ctx.candidate.state,
                       checks={"payment": "collection_ended"})
    entry_id = entry.id
    if queries.paid_order(ctx.session, entry_id) is not None:
        text = messages.PHOTO_PASSED_ALREADY_PAID.format(review_hours=settings.collection.review_hours)
        return Outcome(Reply(text), State.UNDER_REVIEW)
    text = messages.PHOTO_PASSED_PAY.format(
        fee=texts.fee_yuan(settings), pay_url=pay_url(ctx), review_hours=settings.collection.review_hours)
    if ctx.candidate.state == State.PAYMENT:  # say what became of the photo that passed before
        text = texts.join(messages.PHOTO_REPLACED, text)
    return Outcome(Reply(text), State.PAYMENT)


def earlier_photo_still_payable(ctx: Context, refused: Outcome) -> Outcome:
    """A new photo failed while the one that passed awaits payment: that one can still be paid for."""
    entry_id = ctx.candidate.roster_entry_id
    if ctx.candidate.state != State.PAYMENT or refused.reply.text is None or entry_id is None:
        return refused
    if queries.latest_roster_photo(ctx.session, entry_id, ("submitted",)) is None:
        return refused
    still = messages.PHOTO_FAILED_EARLIER_PAYABLE.format(fee=texts.fee_yuan(ctx.settings), pay_url=pay_url(ctx))
    refused.reply = Reply(texts.join(refused.reply.text, still))
    return refused


def handle(ctx: Context, msg: Incoming) -> Outcome:
    return Outcome(Reply(pending_text(ctx)), State.PAYMENT)


def pending_text(ctx: Context) -> str:
    return messages.PAYMENT_PENDING.format(fee=texts.fee_yuan(ctx.settings), pay_url=pay_url(ctx))


def pay_url(ctx: Context) -> str:
    order = open_order(ctx.session, ctx.candidate, ctx.settings.collection.fee_fen, ctx.services.payments.name)
    return ctx.services.payments.checkout_url(order.out_trade_no)
