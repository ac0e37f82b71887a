"""The database, as SQLAlchemy 2 declarative models. Alembic migrations in store/migrations follow these."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from store.sealed import Sealed, SealedJSON, SealedList, SealedText, keep_hashes_current, lookup_hash_default


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime stored; use an aware UTC datetime")
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class RosterEntry(Base):
    """One graduate on the exam office's roster. `bound_openid` is the one WeChat account collecting for them."""
    __tablename__ = "roster_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    id_number: Mapped[str] = mapped_column(Sealed)
    id_number_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, default=lookup_hash_default("id_number"))
    # Staff may look a graduate up by the masked form screens show (staff/lookup.py).
    id_number_masked_hash: Mapped[str | None] = mapped_column(
        String(64), index=True, default=lookup_hash_default("id_number", "id_number_masked_hash"))
    exam_number: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    major: Mapped[str] = mapped_column(String(128))
    bound_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    bound_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The roster's optional 手机号: the only way to remind a graduate who never followed the account.
    phone: Mapped[str | None] = mapped_column(Sealed)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True, default=lookup_hash_default("phone"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    def unbind(self) -> None:
        """Frees the graduate for another WeChat account."""
        self.bound_openid = None
        self.bound_at = None


class Candidate(Base):
    """A WeChat account talking to the bot, and where it stands in the conversation."""
    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(32), default="welcome")
    level: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(64))
    id_number: Mapped[str | None] = mapped_column(Sealed)
    id_number_hash: Mapped[str | None] = mapped_column(String(64), index=True, default=lookup_hash_default("id_number"))
    phone: Mapped[str | None] = mapped_column(Sealed)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True, default=lookup_hash_default("phone"))
    roster_entry_id: Mapped[int | None] = mapped_column(ForeignKey("roster_entries.id"))
    human_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The support agent holding the conversation (the bot stays silent meanwhile), since when, and the
    # last time the agent or the candidate did anything in it (idle ones go back to the bot).
    agent: Mapped[str | None] = mapped_column(String(64))
    agent_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    agent_active_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Handed back to the bot while WeChat would take no message (window closed or used up): the bot
    # says so in its next answer.
    handed_back_untold_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    roster_entry: Mapped[RosterEntry | None] = relationship()

    def forget_identity(self) -> None:
        """Clears what the candidate entered and the roster link (starting over, or after an unbind)."""
        self.level = self.name = self.id_number = self.phone = None
        self.roster_entry_id = None


class Photo(Base):
    """An uploaded photo. The bytes live content-addressed under the data directory, untouched."""
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    roster_entry_id: Mapped[int | None] = mapped_column(ForeignKey("roster_entries.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(8))
    report: Mapped[dict] = mapped_column(JSON)
    # checked (failed the checks) | submitted (passed, awaits review) | approved | rejected | replaced
    status: Mapped[str] = mapped_column(String(16))
    review_reason: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The hand-over batch that took this approved photo to the exam office (claimed once, never twice).
    handover_batch_id: Mapped[int | None] = mapped_column(ForeignKey("handover_batches.id"), index=True)


class ReviewClaim(Base):
    """A reviewer's hold on a photo in the review queue (first or second review) until lease_until;
    a lapsed lease puts the photo back in the queue. One row per photo and round."""
    __tablename__ = "review_claims"

    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"), primary_key=True)
    round: Mapped[str] = mapped_column(String(8), primary_key=True)  # first | second
    reviewer: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_until: Mapped[datetime] = mapped_column(UtcDateTime)


class ReviewDecision(Base):
    """One reviewer's verdict on one photo. `round` second: the blind quality check of an approval,
    which changes nothing for the candidate. `overridden_rules`: checker rules the reviewer marked wrong
    when accepting a photo the checker refused. `undone_at`: taken back within the grace period."""
    __tablename__ = "review_decisions"
    __table_args__ = (Index("ix_review_decisions_photo_round", "photo_id", "round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"))
    round: Mapped[str] = mapped_column(String(8))  # first | second
    reviewer: Mapped[str] = mapped_column(String(64), index=True)
    verdict: Mapped[str] = mapped_column(String(8))  # approved | rejected
    reason_code: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)  # the text the candidate receives
    overridden_rules: Mapped[list | None] = mapped_column(JSON)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    undo_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    undone_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SecondReview(Base):
    """An approval drawn for a blind second look; `second_decision_id` is set once it was given."""
    __tablename__ = "second_reviews"

    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"), primary_key=True)
    first_decision_id: Mapped[int] = mapped_column(ForeignKey("review_decisions.id"))
    second_decision_id: Mapped[int | None] = mapped_column(ForeignKey("review_decisions.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ForcedReview(Base):
    """A photo the checker refused that staff sent to the review queue anyway, and why."""
    __tablename__ = "forced_reviews"

    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"), primary_key=True)
    sent_by: Mapped[str] = mapped_column(String(64))
    why: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RejectReason(Base):
    """A preset reason for rejecting a photo: a short label for reviewers and the sentence the
    candidate receives. Admins edit the list; retired reasons stay for the decisions that used them."""
    __tablename__ = "reject_reasons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    label: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Order(Base):
    """The collection fee. Belongs to the roster entry, so a payment survives a re-upload or a re-bind."""
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    roster_entry_id: Mapped[int] = mapped_column(ForeignKey("roster_entries.id"), index=True)
    openid: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | paid | closed
    gateway: Mapped[str] = mapped_column(String(16))
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # WeChat Pay: the prepay id of the JSAPI order, when it stops being payable, last status query.
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    queried_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Why it stopped being payable: replaced (a new order for the same collection) | expired | restart
    # or unbind (the collection it was opened for ended: money that still arrives for it is refunded).
    closed_reason: Mapped[str | None] = mapped_column(String(16))


class Refund(Base):
    """Money sent back: a second payment by a graduate who had already paid. One refund per order."""
    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(80))
    # pending (recorded, not yet asked) | processing (WeChat Pay accepted it) | success | closed | abnormal
    status: Mapped[str] = mapped_column(String(16), default="pending")
    refund_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Message(Base):
    """The transcript: every message in or out, once, with the conversation state around it."""
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_openid_id", "openid", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    channel: Mapped[str] = mapped_column(String(16))  # webhook | passive | custom
    msg_type: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(SealedText, default="")
    media_path: Mapped[str | None] = mapped_column(String(255))
    wechat_msg_id: Mapped[str | None] = mapped_column(String(64))
    state_before: Mapped[str | None] = mapped_column(String(32))
    state_after: Mapped[str | None] = mapped_column(String(32))
    checks: Mapped[dict | None] = mapped_column(JSON)
    delivery_error: Mapped[str | None] = mapped_column(Text)
    # "photo" while work deferred past the reply (a slow photo check) has not been applied; a job
    # finishes it should the process that started it die.
    pending: Mapped[str | None] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Notification(Base):
    """The outbox: one message to one candidate on one channel, written in the same transaction as the
    event that causes it and delivered afterwards by a worker, with retries, exactly once per dedupe_key."""
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # payment_done | approved | rejected | review_delay | reply
    channel: Mapped[str] = mapped_column(String(8))  # wechat | sms
    openid: Mapped[str] = mapped_column(String(64), index=True)
    phone: Mapped[str | None] = mapped_column(Sealed)
    payload: Mapped[dict] = mapped_column(SealedJSON)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))  # the transcript row
    # pending | sending (claimed by a worker until lease_until) | sent | dead (gave up; staff can retry)
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_via: Mapped[str | None] = mapped_column(String(16))  # custom | template | sms provider
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SharedToken(Base):
    """A credential every process shares (the WeChat access token) when no Redis is configured."""
    __tablename__ = "shared_tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class InboundKey(Base):
    """A message already taken in, so WeChat's retries are answered from here instead of run again.
    The process running it holds a lease it keeps renewing; a retry after the lease ran out runs it."""
    __tablename__ = "inbound_keys"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    reply_xml: Mapped[str | None] = mapped_column(SealedText)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    owner: Mapped[str | None] = mapped_column(String(96))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The latest moment an attempt still holding WeChat's connection open can take the reply.
    waiting_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ReplayNonce(Base):
    """A (timestamp, nonce) already used by a webhook request, with the message it carried, kept while
    the timestamp is still accepted: a plain request's signature covers only those two, not the body."""
    __tablename__ = "replay_nonces"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class AlertMark(Base):
    """When an alert was last logged, so every server process together logs it once per interval."""
    __tablename__ = "alert_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    quiet_until: Mapped[datetime] = mapped_column(UtcDateTime)


class MatchAttempt(Base):
    """A roster look-up, kept to limit how fast one account can probe ID numbers."""
    __tablename__ = "match_attempts"
    __table_args__ = (Index("ix_match_attempts_openid_created", "openid", "created_at"),
                      Index("ix_match_attempts_created", "created_at"))  # the global limit counts by time

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    matched: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AuditEvent(Base):
    """Who did what to whose personal data (staff commands, unmasked views)."""
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    # Why the staff member did it (a reject reason, a disable reason), and from which address.
    reason: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(45))


class StaffUser(Base):
    """A console account. `generation` changes when the account is disabled or its password set, which
    ends every session signed in before (the session carries the generation it was opened with)."""
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class CannedReply(Base):
    """A ready-made answer for support agents; {name}, {office_phone}, {deadline} are filled in when used.
    Admins edit the list."""
    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class HandoverBatch(Base):
    """A zip of approved photos (and its manifest) for the exam office, kept under the data directory."""
    __tablename__ = "handover_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(12))  # building | ready | failed
    created_by: Mapped[str] = mapped_column(String(64))
    photo_count: Mapped[int] = mapped_column(Integer, default=0)
    file_key: Mapped[str] = mapped_column(String(16))  # exam_number | id_number
    normalised_copy: Mapped[bool] = mapped_column(Boolean, default=False)
    path: Mapped[str | None] = mapped_column(String(255))  # relative to the data directory
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    # The worker writing the zip holds the batch until lease_until, renewing it as it goes; a batch
    # still building whose lease ran out (its worker died) is taken over by the periodic job.
    builder: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ReminderCampaign(Base):
    """A reminder to one segment of graduates (staff/reminders.py). Recipients are planned once, when
    sending starts; the worker driving it holds it until lease_until, renewing as it goes."""
    __tablename__ = "reminder_campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment: Mapped[str] = mapped_column(String(32))
    level: Mapped[str | None] = mapped_column(String(16))
    stuck_hours: Mapped[int | None] = mapped_column(Integer)
    id_numbers: Mapped[list | None] = mapped_column(SealedList)  # the "id_list" segment's uploaded ID numbers
    text: Mapped[str] = mapped_column(Text)
    # draft | scheduled | sending | paused | done | cancelled
    status: Mapped[str] = mapped_column(String(12), default="draft")
    send_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    planned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    planned_count: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    driver: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ReminderRecipient(Base):
    """One graduate (or one unidentified follower) of a campaign. `status` planned → queued once its
    notification exists (the outbox then says whether it was sent); skipped when unreachable at planning."""
    __tablename__ = "reminder_recipients"
    __table_args__ = (UniqueConstraint("campaign_id", "graduate_key", name="uq_reminder_recipients_graduate"),
                      Index("ix_reminder_recipients_campaign_status", "campaign_id", "status", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("reminder_campaigns.id"))
    graduate_key: Mapped[str] = mapped_column(String(80))  # r<roster id> or o<openid>
    roster_entry_id: Mapped[int | None] = mapped_column(ForeignKey("roster_entries.id"))
    openid: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(Sealed)
    name: Mapped[str | None] = mapped_column(String(64))
    planned_channel: Mapped[str] = mapped_column(String(12))  # custom | template | sms | unreachable
    status: Mapped[str] = mapped_column(String(8), default="planned")  # planned | queued | skipped
    reason: Mapped[str | None] = mapped_column(String(64))
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))


class ThrottleBucket(Base):
    """A token bucket shared by every worker when no Redis is configured (notify/throttle.py)."""
    __tablename__ = "throttle_buckets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PhoneCode(Base):
    """An SMS verification code sent to the phone number a candidate typed ([sms] verify_phone). Only a
    keyed hash of the code is stored; a row is one code, so the sends of the last hour are the resends."""
    __tablename__ = "phone_codes"
    __table_args__ = (Index("ix_phone_codes_openid_created", "openid", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(Sealed)
    code_hash: Mapped[str] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Set once the code was typed right, or once a newer code replaced it: it can never be used again.
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SealProgress(Base):
    """How far store/sealing.py has (re)sealed one table under `key_id`: it goes on after `last_key`."""
    __tablename__ = "seal_progress"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32))
    last_key: Mapped[str | None] = mapped_column(Text)
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


keep_hashes_current(RosterEntry, "id_number", "phone")
keep_hashes_current(Candidate, "id_number", "phone")
