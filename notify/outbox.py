"""The outbox. Notifications are rows written in the same transaction as the event that causes them
(a payment, a review verdict…), so a crash after the commit loses nothing; a worker delivers them
afterwards. Each row is claimed before it is sent, so a task that runs twice, a sweep that overlaps
a worker, or a redelivered job sends nothing twice.

Delivery is at-least-once only in one place: when the provider has accepted a message and the worker
dies before recording it. Everything before that point is exactly once, and a database connection lost
while recording it is replaced and the record made again. The attempt after such a death is "in doubt"
(`Parcel.in_doubt_since`), and the channels close the window where the provider lets them: a template
message repeats its client_msg_id, which WeChat drops; an SMS is looked up in the provider's delivery
reports first. A customer-service message has neither, so it goes again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notify.errors import DeliveryError
from notify.notices import Notice
from rules.credentials import scrub_credentials
from settings import Settings
from store.db import Database, connection_lost, unpinged_checkout
from store.models import Candidate, Message, Notification, utcnow

log = logging.getLogger(__name__)

ERROR_MAX_CHARS = 500
DATABASE_TRIES = 3  # claiming a row or recording an outcome, on a new connection each time the last one was lost


@dataclass(frozen=True)
class Parcel:
    """A claimed notification, detached from the database while it is being sent."""
    id: int
    kind: str
    channel: str
    openid: str
    phone: str | None
    payload: dict
    attempt: int
    message_id: int | None  # the transcript row of a WeChat notification
    in_doubt_since: datetime | None = None  # the previous attempt's start, when its worker died mid-send

    @property
    def provider_key(self) -> str:
        """The same for every attempt at this notification: what a provider deduplicates it by or finds it
        by (WeChat's template client_msg_id, Tencent Cloud's SMS SessionContext)."""
        return f"notification-{self.id}"


class Channel(Protocol):
    def deliver(self, parcel: Parcel) -> str:
        """Sends the parcel; returns how it went out (custom, template, the SMS provider…).
        Raises DeliveryError when it did not."""


class Outbox:
    def __init__(self, db: Database, settings: Settings, channels: dict[str, Channel]):
        self.db = db
        self.settings = settings  # notices read the collection settings (fee, review hours)
        self.policy = settings.notifications
        self.channels = channels
        self.enqueue: Callable[[int], None] = self.deliver  # jobs replace this with a queued task

    # -- writing ----------------------------------------------------------------------------------

    def add(self, session: Session, notice: Notice, *, state_before: str | None = None,
            state_after: str | None = None, checks: dict | None = None) -> list[int]:
        """Writes the notice's rows (WeChat, and SMS when it promises one and the candidate left a
        number) in the caller's transaction; delivery starts once it commits. A notice whose key is
        already in the outbox adds nothing."""
        candidate = session.scalar(select(Candidate).where(Candidate.openid == notice.openid))
        state = candidate.state if candidate is not None else None
        message_id = None
        ids = []
        wechat_id = self._insert(session, notice, "wechat", None, _wechat_payload(notice))
        if wechat_id is not None:
            message_id = self._transcribe(session, notice, state_before or state, state_after or state, checks)
            session.get(Notification, wechat_id).message_id = message_id
            ids.append(wechat_id)
        phone = candidate.phone if candidate is not None else None
        if notice.by_sms and phone:
            sms_id = self._insert(session, notice, "sms", phone,
                                  {"template": notice.kind, "params": list(notice.sms_params)})
            if sms_id is not None:
                ids.append(sms_id)
        if ids:
            self.db.after_commit(session, lambda: self._start(ids))
        return ids

    def add_sms(self, session: Session, notice: Notice, phone: str) -> int | None:
        """Only the text message of a notice (the support desk, when WeChat refuses the candidate)."""
        sms_id = self._insert(session, notice, "sms", phone, {"template": notice.kind, "params": list(notice.sms_params)})
        if sms_id is not None:
            self.db.after_commit(session, lambda: self._start([sms_id]))
        return sms_id

    def _insert(self, session: Session, notice: Notice, channel: str, phone: str | None,
                payload: dict) -> int | None:
        key = f"{notice.key}:{channel}"
        if session.scalar(select(Notification.id).where(Notification.dedupe_key == key)) is not None:
            return None
        row = Notification(dedupe_key=key, kind=notice.kind, channel=channel, openid=notice.openid, phone=phone,
                           payload=payload, status="pending", attempts=0, next_attempt_at=utcnow(),
                           created_at=utcnow())
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # the same event, reported at the same moment by another process
            return None
        return row.id

    @staticmethod
    def _transcribe(session: Session, notice: Notice, before: str | None, after: str | None,
                    checks: dict | None) -> int:
        row = Message(openid=notice.openid, direction="out", channel="custom",
                      msg_type="image" if notice.image_media_id else "text",
                      content=notice.text if not notice.image_media_id else f"[image {notice.image_media_id}]",
                      state_before=before, state_after=after, checks=checks, created_at=utcnow())
        session.add(row)
        session.flush()
        return row.id

    def _start(self, ids: Iterable[int]) -> None:
        for notification_id in ids:
            try:
                self.enqueue(notification_id)
            except Exception:  # the sweep picks the row up; the event itself is already committed
                log.exception("could not queue notification %s; the sweep will deliver it", notification_id)

    # -- delivering -------------------------------------------------------------------------------

    def deliver(self, notification_id: int, now: datetime | None = None) -> str:
        """Claims the row and sends it. Returns sent | retry | dead | skipped (not due, or another
        worker holds it, or it is already sent)."""
        parcel = self._on_new_connection(lambda: self._claim(notification_id, now or utcnow()),
                                         f"notification {notification_id}: claiming it")
        if parcel is None:
            return "skipped"
        if parcel.in_doubt_since is not None:
            log.warning("notification %s (%s): the worker of attempt %s died while sending it; attempt %s checks "
                        "first where the channel can", parcel.id, parcel.channel, parcel.attempt - 1, parcel.attempt)
        try:
            via = self.channels[parcel.channel].deliver(parcel)
        except DeliveryError as exc:
            if exc.retry_at is not None:
                return self._deferred(parcel, str(exc), exc.retry_at)
            return self._failed(parcel, str(exc), permanent=exc.permanent)
        except Exception as exc:  # a bug or an unexpected library error: retried, and logged in full
            log.exception("notification %s: unexpected error", parcel.id)
            return self._failed(parcel, f"{type(exc).__name__}: {exc}", permanent=False)
        self._finish(parcel, status="sent", via=via)
        return "sent"

    def _claim(self, notification_id: int, now: datetime) -> Parcel | None:
        lease = timedelta(seconds=self.policy.lease_seconds)
        with self.db.session() as session:
            before = session.execute(select(Notification.status, Notification.lease_until)
                                     .where(Notification.id == notification_id)).one_or_none()
            if before is None:
                return None
            claimed = session.execute(
                update(Notification)
                .where(Notification.id == notification_id, Notification.status == before.status, _claimable(now))
                .values(status="sending", lease_until=now + lease, attempts=Notification.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if claimed != 1:
                return None
            row = session.get(Notification, notification_id)
            # Still "sending" when claimed: its worker died during the attempt, which began a lease earlier.
            in_doubt_since = before.lease_until - lease if before.status == "sending" else None
            return Parcel(id=row.id, kind=row.kind, channel=row.channel, openid=row.openid, phone=row.phone,
                          payload=dict(row.payload), attempt=row.attempts, message_id=row.message_id,
                          in_doubt_since=in_doubt_since)

    def _failed(self, parcel: Parcel, error: str, permanent: bool) -> str:
        error = scrub_credentials(error)  # stored and listed: an unreachable API's URL carries its token
        give_up = permanent or parcel.attempt >= self.policy.max_attempts
        status = "dead" if give_up else "pending"
        log.warning("notification %s (%s to %s) attempt %s failed%s: %s", parcel.id, parcel.channel,
                    parcel.openid, parcel.attempt, ", giving up" if give_up else "", error)
        self._finish(parcel, status=status, error=error[:ERROR_MAX_CHARS],
                     next_attempt_at=utcnow() + self.backoff(parcel.attempt))
        return "dead" if give_up else "retry"

    def _deferred(self, parcel: Parcel, why: str, retry_at: datetime) -> str:
        """Back to pending until retry_at, the attempt not counted."""
        with self.db.session() as session:
            session.execute(
                update(Notification)
                .where(Notification.id == parcel.id, Notification.status == "sending",
                       Notification.attempts == parcel.attempt)
                .values(status="pending", lease_until=None, next_attempt_at=retry_at, attempts=parcel.attempt - 1,
                        last_error=why[:ERROR_MAX_CHARS])
                .execution_options(synchronize_session=False)
            )
        return "deferred"

    def _finish(self, parcel: Parcel, status: str, via: str | None = None, error: str | None = None,
                next_attempt_at: datetime | None = None) -> None:
        """Records the outcome, unless the lease ran out and another worker has taken the row over."""
        values: dict = {"status": status, "lease_until": None, "last_error": error}
        if status == "sent":
            values.update(sent_at=utcnow(), delivered_via=via)
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        # Left unrecorded, a sent message would be sent again once its lease ran out.
        self._on_new_connection(lambda: self._record(parcel, values, error),
                                f"notification {parcel.id}: recording it as {status}")

    @staticmethod
    def _on_new_connection(action, what: str):
        """Runs one transaction again on a new connection when its connection was lost (a failover,
        pg_terminate_backend). Both callers are safe to repeat: a claim and a record change a row only
        in the state they expect it in."""
        for tries_left in reversed(range(DATABASE_TRIES)):
            try:
                return action()
            except Exception as exc:
                if not connection_lost(exc) or not tries_left:
                    raise
                log.warning("%s: the database connection was lost; doing it again on a new one", what)

    def _record(self, parcel: Parcel, values: dict, error: str | None) -> None:
        """Idempotent: only the attempt that still holds the row changes it. A message sent and not yet
        recorded is sent again if the worker dies now, so this takes as few round trips as it can: no
        ping (a dead connection is replaced by _finish), and the transcript row only when it shows or
        showed an error."""
        with unpinged_checkout(), self.db.session() as session:
            session.execute(
                update(Notification)
                .where(Notification.id == parcel.id, Notification.status == "sending",
                       Notification.attempts == parcel.attempt)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if parcel.message_id is not None and (error is not None or parcel.attempt > 1):
                session.execute(update(Message).where(Message.id == parcel.message_id)
                                .values(delivery_error=error).execution_options(synchronize_session=False))

    def backoff(self, attempt: int) -> timedelta:
        seconds = self.policy.retry_base_seconds * 2 ** max(attempt - 1, 0)
        return timedelta(seconds=min(seconds, self.policy.retry_max_seconds))

    # -- the sweep and staff ----------------------------------------------------------------------

    def due(self, now: datetime | None = None, limit: int = 200) -> list[int]:
        """Rows a worker should try now: pending and due, or claimed by a worker that never finished."""
        with self.db.session() as session:
            return list(session.scalars(
                select(Notification.id).where(_claimable(now or utcnow()))
                .order_by(Notification.next_attempt_at, Notification.id).limit(limit)
            ))

    def sweep(self, now: datetime | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for notification_id in self.due(now):
            outcome = self.deliver(notification_id, now)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def revive(self, session: Session, ids: Iterable[int] | None = None) -> list[int]:
        """Staff: dead rows (all, or the given ones) get a fresh set of attempts."""
        query = select(Notification).where(Notification.status == "dead")
        if ids is not None:
            query = query.where(Notification.id.in_(list(ids)))
        rows = list(session.scalars(query.with_for_update()))
        for row in rows:
            row.status, row.attempts, row.next_attempt_at, row.lease_until = "pending", 0, utcnow(), None
        revived = [row.id for row in rows]
        if revived:
            self.db.after_commit(session, lambda: self._start(revived))
        return revived


def _claimable(now: datetime):
    return or_(
        and_(Notification.status == "pending", Notification.next_attempt_at <= now),
        and_(Notification.status == "sending", Notification.lease_until < now),
    )


def _wechat_payload(notice: Notice) -> dict:
    payload: dict = {"text": notice.text}
    if notice.image_media_id:
        payload["image_media_id"] = notice.image_media_id
    if notice.template_fields:
        payload["template_fields"] = notice.template_fields
    return payload
