"""The periodic jobs that are not the outbox sweep: review deadlines, and (with WeChat Pay) order
reconciliation and refunds. Each returns counts, which the consumer logs and `flask jobs run` prints."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from functools import partial

from notify import notices
from staff.review import pending_reviews

log = logging.getLogger(__name__)


def review_deadlines(collector, now: datetime | None = None) -> dict[str, int]:
    """Candidates waiting longer than the promised review time get one apology (by WeChat and SMS);
    reviews close to the deadline are logged as a warning for staff."""
    now = now or datetime.now(timezone.utc)
    promised = timedelta(hours=collector.settings.collection.review_hours)
    warn_before = timedelta(hours=collector.settings.notifications.review_warning_hours)
    overdue = due_soon = apologised = 0
    with collector.db.session() as session:
        for review in pending_reviews(session):
            waited = now - review.waiting_since
            if waited >= promised:
                overdue += 1
                notice = notices.review_delay(collector.settings, review.openid, review.photo_id, review.name,
                                              review.waiting_since)
                apologised += bool(collector.outbox.add(session, notice, checks={"review": "delayed"}))
            elif waited >= promised - warn_before:
                due_soon += 1
    if overdue or due_soon:
        log.warning("reviews: %s past the promised %s h, %s due within %s h (flask review pending lists them)",
                    overdue, collector.settings.collection.review_hours, due_soon,
                    collector.settings.notifications.review_warning_hours)
    return {"overdue": overdue, "due_soon": due_soon, "apologised": apologised}


def register_payment_jobs(collector) -> None:
    """Only a real payment gateway has orders to reconcile and money to refund."""
    if collector.payments.name != "wechatpay":
        return
    from payments import reconcile

    collector.jobs.task("refund", partial(reconcile.request_refund, collector))
    collector.jobs.every("orders", collector.settings.jobs.orders_every_minutes,
                         partial(reconcile.reconcile_orders, collector),
                         "query orders with no payment notification, close expired ones, retry refunds")
