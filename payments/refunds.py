"""Money that must go back: a second payment for a graduate who has already paid (two pay pages
open at once, an old order paid after a new one), and money for an order whose collection ended
(重新开始 or an unbind closed it while its page was still open at WeChat Pay). The money is recorded
on the order; the refund is recorded in the same transaction and requested from the gateway once it
commits (payments/reconcile.request_refund, retried by the periodic `orders` job)."""
from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.orm import Session

import messages
from handlers.texts import yuan
from notify import notices
from settings import Settings
from store.models import Order, Refund, RosterEntry, utcnow


def refund_if_duplicate(session: Session, order: Order) -> Refund | None:
    """Called right after `order` was marked paid: its Refund row when the graduate already had
    another paid order, else None. Payments of one graduate are checked one at a time (the roster
    row is locked), so two payments confirmed at the same moment cannot both count as the first."""
    session.execute(select(RosterEntry.id).where(RosterEntry.id == order.roster_entry_id).with_for_update())
    earlier = session.scalar(select(Order.id).where(Order.roster_entry_id == order.roster_entry_id,
                                                    Order.status == "paid", Order.id != order.id).limit(1))
    if earlier is None:
        return None
    return _record(session, order, messages.REFUND_REASON_DUPLICATE)


def refund_ended(session: Session, order: Order) -> Refund:
    """The whole amount of an order whose collection had ended goes back."""
    return _record(session, order, messages.REFUND_REASON_ENDED)


def ended_notice(settings: Settings, order: Order, refund: Refund) -> notices.Notice:
    """Tells the payer at once why the money goes back. It shares the refund notice's key, so the
    refund's success later adds nothing: the candidate is told once."""
    notice = notices.refunded(settings, order.openid, refund.out_refund_no, refund.amount_fen)
    return dataclasses.replace(notice, text=messages.ENDED_ORDER_REFUNDING.format(fee=yuan(refund.amount_fen)))


def _record(session: Session, order: Order, reason: str) -> Refund:
    refund = Refund(out_refund_no=out_refund_no(order), order_id=order.id, amount_fen=order.amount_fen,
                    reason=reason, status="pending", created_at=utcnow())
    session.add(refund)
    session.flush()
    return refund


def out_refund_no(order: Order) -> str:
    """One refund per order, so its number follows from the order's."""
    return f"RF{order.out_trade_no}"
