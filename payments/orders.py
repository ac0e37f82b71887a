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
from payments.refunds import ended_notice, refund_ended, refund_if_duplicate
from store import queries
from store.models import Candidate, Order, RosterEntry, utcnow


def new_trade_no(now: datetime | None = None) -> str:
    moment = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
    return f"PC{moment}{secrets.token_hex(6).upper()}"


# Reasons that end the collection an order was opened for: the candidate's identity binding is gone,
# so the order never counts as the graduate's payment and money that still arrives for it goes back.
ENDED_REASONS = ("restart", "unbind")


def open_order(session: Session, candidate: Candidate, amount_fen: int, gateway: str) -> Order:
    """The graduate's pending order, or a new one. Only ever one pending order per graduate."""
    order = queries.pending_order(session, candidate.roster_entry_id)
    if (order is not None and order.amount_fen == amount_fen and order.gateway == gateway
            and order.openid == candidate.openid):  # a pay page checks who pays: a re-bound graduate gets a new order
        return order
    if order is not None:
        # Conditional, so a payment confirmed meanwhile is never overwritten. Another account's order
        # left open means its binding ended without closing it.
        session.execute(update(Order).where(Order.id == order.id, Order.status == "pending")
                        .values(status="closed",
                                closed_reason="replaced" if order.openid == candidate.openid else "unbind")
                        .execution_options(synchronize_session=False))
    order = Order(out_trade_no=new_trade_no(), roster_entry_id=candidate.roster_entry_id, openid=candidate.openid,
                  amount_fen=amount_fen, gateway=gateway, status="pending", created_at=utcnow())
    session.add(order)
    session.flush()
    return order


def end_collection(session: Session, openid: str, entry: RosterEntry | None, reason: str) -> None:
    """The account's collection ends (reason: restart | unbind): the graduate is freed for another
    account and the account's unpaid orders stop being payable. A payment already made stays with the
    graduate; one that arrives later for a closed order is refunded."""
    if entry is not None and entry.bound_openid == openid:
        entry.unbind()
    end_orders(session, openid, reason)


def end_orders(session: Session, openid: str, reason: str) -> int:
    """The account's pending orders stop being payable because the collection they were opened for
    ended (reason: restart | unbind). A sandbox order is closed for good at once; a WeChat Pay one is
    closed there by the `orders` job (closed_at stays empty until then). A payment that still arrives
    is refunded (confirm_payment). Returns how many were closed."""
    ended = update(Order).where(Order.openid == openid, Order.status == "pending").execution_options(
        synchronize_session=False)
    closed = session.execute(ended.where(Order.gateway == "sandbox")
                             .values(status="closed", closed_reason=reason, closed_at=utcnow())).rowcount
    closed += session.execute(ended.where(Order.gateway != "sandbox")
                              .values(status="closed", closed_reason=reason, closed_at=None)).rowcount
    return closed


def mark_paid(session: Session, order: Order, transaction_id: str) -> bool:
    """Pending → paid exactly once, however many confirmations arrive at the same time. A replaced or
    expired order is paid too: the gateway confirmed money for it (its page was still open when it was
    replaced). One whose collection ended is not (see record_ended_payment)."""
    result = session.execute(
        update(Order).where(Order.id == order.id,
                            (Order.status == "pending")
                            | ((Order.status == "closed")
                               & (Order.closed_reason.is_(None) | Order.closed_reason.not_in(ENDED_REASONS))))
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
        return record_ended_payment(session, order, transaction_id, outbox, on_refund)
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


def record_ended_payment(session: Session, order: Order, transaction_id: str, outbox: Outbox,
                         on_refund: Callable[[int], None] | None = None) -> bool:
    """Money for an order whose collection ended: recorded on the order, which stays closed (so it
    never counts as the graduate's payment and moves no one), refunded in full, and the payer told
    once. True only for the confirmation that recorded it. The sandbox refuses such money instead."""
    if order.gateway == "sandbox":
        return False
    recorded = session.execute(
        update(Order).where(Order.id == order.id, Order.status == "closed",
                            Order.closed_reason.in_(ENDED_REASONS), Order.transaction_id.is_(None))
        .values(paid_at=utcnow(), transaction_id=transaction_id, closed_at=utcnow())  # final at the gateway
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    session.refresh(order)
    if not recorded:
        return False
    refund = refund_ended(session, order)
    outbox.add(session, ended_notice(outbox.settings, order, refund), checks={"refund": refund.out_refund_no})
    if on_refund is not None:
        outbox.db.after_commit(session, partial(on_refund, refund.id))
    return True
