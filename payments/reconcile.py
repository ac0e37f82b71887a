"""Bringing our orders and refunds in line with WeChat Pay: from its notifications (POST /pay/notify)
and from the periodic `orders` job, which queries what no notification told us. Both confirm a
payment through payments.orders.confirm_payment, so a payment counts once however it is learnt.

`collector` is app.extensions["collector"] (settings, db, payments, outbox, jobs)."""
from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from notify import notices
from payments.orders import ENDED_REASONS, confirm_payment
from rules.credentials import scrub_credentials
from payments.wechatpay import (Notification, NotificationRejected, OrderNotFound, RefundResult, Transaction,
                                WeChatPayError)
from store import queries
from store.models import Order, Refund, utcnow

log = logging.getLogger(__name__)

ERROR_MAX_CHARS = 500
# A refund request claimed this long ago without an answer (the worker died) is made again.
REFUND_CLAIM_SECONDS = 300
UNPAID_STATES = ("NOTPAY", "USERPAYING")
FAILED_STATES = ("CLOSED", "PAYERROR", "REVOKED")
REFUND_STATES = {"SUCCESS": "success", "CLOSED": "closed", "ABNORMAL": "abnormal", "PROCESSING": "processing"}


# -- notifications -------------------------------------------------------------------------------

def apply_notification(collector, notification: Notification) -> str:
    """What a verified notification changes. Raises NotificationRejected for one we cannot accept."""
    if notification.event_type == "TRANSACTION.SUCCESS":
        return record_transaction(collector, Transaction.from_json(notification.resource))
    if notification.event_type.startswith("REFUND."):
        return record_refund(collector, RefundResult.from_json(notification.resource))
    log.info("wechatpay notification %s of type %s ignored", notification.id, notification.event_type)
    return "ignored"


def record_transaction(collector, tx: Transaction) -> str:
    """A successful payment: the order is paid (once), or refunded when it is the graduate's second or
    its collection had ended. Returns paid | refunding (money for an ended collection) | already_paid."""
    _check_transaction(collector, tx)
    with collector.db.session() as session:
        order = queries.order_by_trade_no(session, tx.out_trade_no)
        if order is None or order.gateway != "wechatpay":
            raise NotificationRejected("unknown out_trade_no")
        if tx.amount_total != order.amount_fen:
            raise NotificationRejected(f"amount {tx.amount_total} does not match the order's {order.amount_fen}")
        if order.transaction_id is not None:  # paid, or money for an ended collection already recorded
            if order.transaction_id != tx.transaction_id:
                log.error("order %s is paid by %s but WeChat Pay reports %s", order.out_trade_no,
                          order.transaction_id, tx.transaction_id)
            return "already_paid"
        recorded = confirm_payment(session, order, tx.transaction_id, collector.outbox,
                                   on_refund=lambda refund_id: queue_refund(collector, refund_id))
        if not recorded:
            return "already_paid"
        if order.status != "paid":
            log.warning("order %s closed (%s) was paid (WeChat Pay %s) by %s: refunding", order.out_trade_no,
                        order.closed_reason, tx.transaction_id, order.openid)
            return "refunding"
        log.info("order %s paid (WeChat Pay %s) by %s", order.out_trade_no, tx.transaction_id, order.openid)
        return "paid"


def _check_transaction(collector, tx: Transaction) -> None:
    gateway = collector.payments
    if tx.appid != gateway.appid:
        raise NotificationRejected("appid is not ours")
    if tx.mchid != gateway.config.mchid:
        raise NotificationRejected("mchid is not ours")
    if tx.trade_state != "SUCCESS":
        raise NotificationRejected(f"trade_state is {tx.trade_state or 'missing'}")
    if not tx.transaction_id:
        raise NotificationRejected("no transaction_id")
    if tx.currency != "CNY":
        raise NotificationRejected(f"currency is {tx.currency}")


def record_refund(collector, result: RefundResult) -> str:
    """A refund's outcome (REFUND.SUCCESS / ABNORMAL / CLOSED). Returns the refund's new status, or
    unknown for a refund we did not make (e.g. one from the merchant platform), which is only logged."""
    if result.mchid != collector.payments.config.mchid:
        raise NotificationRejected("mchid is not ours")
    status = REFUND_STATES.get(result.status)
    if status is None:
        raise NotificationRejected(f"refund_status is {result.status or 'missing'}")
    with collector.db.session() as session:
        refund = session.scalar(select(Refund).where(Refund.out_refund_no == result.out_refund_no).with_for_update())
        if refund is None:
            log.warning("refund notification for unknown out_refund_no %s (%s)", result.out_refund_no, result.status)
            return "unknown"
        newly_refunded = status == "success" and refund.status != "success"
        refund.status = status
        refund.refund_id = result.refund_id or refund.refund_id
        if status != "processing":
            refund.finished_at = refund.finished_at or utcnow()
        if newly_refunded:
            order = session.get(Order, refund.order_id)
            collector.outbox.add(session, notices.refunded(collector.settings, order.openid, refund.out_refund_no,
                                                           refund.amount_fen), checks={"refund": refund.out_refund_no})
        log.info("refund %s is %s", refund.out_refund_no, status)
        return status


# -- refunds -------------------------------------------------------------------------------------

def queue_refund(collector, refund_id: int) -> None:
    """Hands a recorded refund to the background queue; the periodic job catches it if this fails."""
    try:
        collector.jobs.enqueue("refund", refund_id)
    except Exception:
        log.exception("could not queue refund %s; the orders job will request it", refund_id)


def request_refund(collector, refund_id: int) -> None:
    """Asks WeChat Pay for a recorded refund, once: a refund already requested (or being requested by
    another worker) is left alone; one that failed stays pending with last_error for the next run."""
    claim = _claim_refund(collector, refund_id)
    if claim is None:
        return
    refund, order = claim
    try:
        result = collector.payments.refund(out_refund_no=refund.out_refund_no, out_trade_no=order.out_trade_no,
                                           transaction_id=order.transaction_id, amount_fen=refund.amount_fen,
                                           total_fen=order.amount_fen, reason=refund.reason)
    except WeChatPayError as exc:
        log.warning("refund %s not accepted yet: %s", refund.out_refund_no, exc)
        _update_refund(collector, refund_id, requested_at=None,
                       last_error=scrub_credentials(str(exc))[:ERROR_MAX_CHARS])
        return
    _update_refund(collector, refund_id, status=REFUND_STATES.get(result.status, "processing"),
                   refund_id=result.refund_id, last_error=None)
    log.info("refund %s requested for order %s: %s", refund.out_refund_no, order.out_trade_no, result.status)


def _claim_refund(collector, refund_id: int) -> tuple[Refund, Order] | None:
    now = utcnow()
    with collector.db.session() as session:
        claimed = session.execute(
            update(Refund).where(Refund.id == refund_id, Refund.status == "pending",
                                 or_(Refund.requested_at.is_(None),
                                     Refund.requested_at < now - timedelta(seconds=REFUND_CLAIM_SECONDS)))
            .values(requested_at=now).execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            return None
        refund = session.get(Refund, refund_id)
        return refund, session.get(Order, refund.order_id)


def _update_refund(collector, row_id: int, **values) -> None:
    with collector.db.session() as session:
        # A notification may already have finished it; only a pending row is moved on.
        session.execute(update(Refund).where(Refund.id == row_id, Refund.status == "pending").values(**values)
                        .execution_options(synchronize_session=False))


# -- the periodic job ----------------------------------------------------------------------------

def reconcile_orders(collector, now: datetime | None = None) -> dict[str, int]:
    """Queries WeChat Pay about orders it has not told us about: pending ones older than
    query_after_minutes, and ones closed here but maybe still open there. Paid → confirmed; unpaid
    and expired (or replaced) → closed there and here. Then requests the refunds still pending and
    asks about accepted refunds no notification has finished."""
    now = now or utcnow()
    counts: Counter[str] = Counter()
    for order_id in _orders_to_check(collector, now):
        counts[_reconcile_order(collector, order_id, now)] += 1
    quiet_refunds = _quiet_refunds(collector, now)  # listed first: a refund requested below is not quiet
    for refund_id in _pending_refunds(collector):
        request_refund(collector, refund_id)
        counts["refunds_requested"] += 1
    for out_refund_no in quiet_refunds:
        counts[_check_refund(collector, out_refund_no)] += 1
    return dict(counts)


def _orders_to_check(collector, now: datetime) -> list[int]:
    quiet_since = now - timedelta(minutes=collector.settings.wechatpay.query_after_minutes)
    with collector.db.session() as session:
        return list(session.scalars(select(Order.id).where(
            Order.gateway == "wechatpay",
            or_((Order.status == "pending") & (Order.created_at <= quiet_since),
                # closed here (replaced, or its collection ended) but maybe still open at WeChat Pay
                (Order.status == "closed") & Order.closed_at.is_(None)
                & (Order.prepay_id.is_not(None) | Order.closed_reason.in_(ENDED_REASONS))),
        ).order_by(Order.id)))


def _pending_refunds(collector) -> list[int]:
    with collector.db.session() as session:
        return list(session.scalars(select(Refund.id).where(Refund.status == "pending").order_by(Refund.id)))


def _quiet_refunds(collector, now: datetime) -> list[str]:
    """Refunds WeChat Pay accepted but has not reported finished (a lost REFUND.* notification)."""
    quiet_since = now - timedelta(minutes=collector.settings.wechatpay.query_after_minutes)
    with collector.db.session() as session:
        return list(session.scalars(select(Refund.out_refund_no).where(
            Refund.status == "processing", Refund.requested_at <= quiet_since).order_by(Refund.id)))


def _check_refund(collector, out_refund_no: str) -> str:
    try:
        result = collector.payments.query_refund(out_refund_no)
    except WeChatPayError as exc:
        log.warning("refund %s: query failed: %s", out_refund_no, exc)
        return "errors"
    return f"refunds_{record_refund(collector, result)}"


def _reconcile_order(collector, order_id: int, now: datetime) -> str:
    gateway = collector.payments
    with collector.db.session() as session:
        order = session.get(Order, order_id)
    expired = now >= gateway.payable_until(order)
    try:
        tx = gateway.query(order.out_trade_no)
    except OrderNotFound:
        tx = None
    except WeChatPayError as exc:
        log.warning("order %s: query failed: %s", order.out_trade_no, exc)
        return "errors"
    _touch(collector, order_id, now)
    if tx is not None and tx.trade_state == "SUCCESS":
        return _confirm_queried(collector, tx)
    if tx is None or tx.trade_state in FAILED_STATES:
        # Never opened at WeChat Pay (no prepay) or already finished there: nothing to close remotely.
        if tx is None and order.status == "pending" and not expired:
            return "waiting"
        return "closed" if _mark_closed(collector, order_id, now) else "unchanged"
    if tx.trade_state in UNPAID_STATES and (expired or order.status == "closed"):
        try:
            gateway.close(order.out_trade_no)
        except WeChatPayError as exc:
            log.warning("order %s: close failed: %s", order.out_trade_no, exc)
            return "errors"
        return "closed" if _mark_closed(collector, order_id, now) else "unchanged"
    if tx.trade_state not in UNPAID_STATES:
        log.warning("order %s: unexpected trade_state %s", order.out_trade_no, tx.trade_state)
    return "waiting"


def _confirm_queried(collector, tx: Transaction) -> str:
    try:
        outcome = record_transaction(collector, tx)
        return outcome if outcome in ("paid", "refunding") else "unchanged"
    except NotificationRejected as exc:
        log.error("order %s: WeChat Pay reports a payment we cannot accept: %s", tx.out_trade_no, exc.reason)
        return "errors"


def _touch(collector, order_id: int, now: datetime) -> None:
    with collector.db.session() as session:
        session.execute(update(Order).where(Order.id == order_id).values(queried_at=now)
                        .execution_options(synchronize_session=False))


def _mark_closed(collector, order_id: int, now: datetime) -> bool:
    """Closed here, and known to be closed at WeChat Pay (closed_at). Never undoes a payment."""
    with collector.db.session() as session:
        return session.execute(
            update(Order).where(Order.id == order_id, Order.status.in_(("pending", "closed")))
            .values(status="closed", closed_at=now, closed_reason=func.coalesce(Order.closed_reason, "expired"))
            .execution_options(synchronize_session=False)
        ).rowcount == 1
