"""Orders for the collection fee, and what happens when one is paid."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from functools import partial
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from notify import notices
from notify.outbox import Outbox
from payments.refunds import refund_if_duplicate
from store import queries
from store.models import Candidate, Order, RosterEntry, utcnow


def new_trade_no(now: datetime | None = None) -> str:
    moment = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
    return f"PC{moment}{secrets.token_hex(6).upper()}"


def open_order(session: Session, candidate: Candidate, amount_fen: int, gateway: str) -> Order:
    """The graduate's pending order, or a new one. Only ever one pending order per graduate."""
    order = queries.pending_order(session, candidate.roster_entry_id)
    if (order is not None and order.amount_fen == amount_fen and order.gateway == gateway
            and order.openid == candidate.openid):  # a pay page checks who pays: a re-bound graduate gets a new order
        return order
    if order is not None:
        order.status = "closed"
    order = Order(out_trade_no=new_trade_no(), roster_entry_id=candidate.roster_entry_id, openid=candidate.openid,
                  amount_fen=amount_fen, gateway=gateway, status="pending", created_at=utcnow())
    session.add(order)
    session.flush()
    return order


def mark_paid(session: Session, order: Order, transaction_id: str) -> bool:
    """Pending → paid exactly once, however many confirmations arrive at the same time. A closed order
    is paid too: the gateway confirmed money for it (its page was still open when it was replaced)."""
    result = session.execute(
        update(Order).where(Order.id == order.id, Order.status.in_(("pending", "closed")))
        .values(status="paid", paid_at=utcnow(), transaction_id=transaction_id)
        .execution_options(synchronize_session=False)
    )
    session.refresh(order)
    return result.rowcount == 1


def confirm_payment(session: Session, order: Order, transaction_id: str, outbox: Outbox,
                    on_refund: Callable[[int], None] | None = None) -> bool:
    """Records a confirmed payment, moves the graduate's conversation on to review and tells the
    candidate, all in the caller's transaction. True only for the confirmation that actually paid.
    A second payment for a graduate who had already paid records a refund instead (no move, no
    notice); on_refund(refund_id) runs once the transaction commits."""
    candidate = session.scalar(select(Candidate).where(Candidate.roster_entry_id == order.roster_entry_id,
                                                       Candidate.openid == order.openid).with_for_update())
    if not mark_paid(session, order, transaction_id):
        return False
    refund = refund_if_duplicate(session, order)
    if refund is not None:
        if on_refund is not None:
            outbox.db.after_commit(session, partial(on_refund, refund.id))
        return True
    if candidate is not None and candidate.state == "payment":
        candidate.state = "under_review"
    name = session.get(RosterEntry, order.roster_entry_id).name
    outbox.add(session, notices.payment_done(outbox.settings, order.openid, order.out_trade_no, order.amount_fen,
                                             name), checks={"payment": order.out_trade_no})
    return True
