"""Money that must go back: a second payment for a graduate who has already paid (two pay pages
open at once, an old order paid after a new one). The order is still paid (the money arrived); the
refund is recorded in the same transaction and requested from the gateway once it commits
(payments/reconcile.request_refund, retried by the periodic `orders` job)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

import messages
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
    refund = Refund(out_refund_no=out_refund_no(order), order_id=order.id, amount_fen=order.amount_fen,
                    reason=messages.REFUND_REASON_DUPLICATE, status="pending", created_at=utcnow())
    session.add(refund)
    session.flush()
    return refund


def out_refund_no(order: Order) -> str:
    """One refund per order, so its number follows from the order's."""
    return f"RF{order.out_trade_no}"
