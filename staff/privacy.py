"""Personal data over its lifetime (issue 14): re-encrypting photo files under the active key, the
retention job that deletes what has lived long enough, and erasure on request.

The retention clock of a candidate starts when a photo of their roster entry was handed over (the
batch's time) or, for one never handed over, when the collection window closed. Each kind of data
([retention] photos_days, transcripts_days, payments_days) is due that many days later. What is kept
for accounting: orders' amounts, dates, status, out_trade_no and transaction_id, and refunds.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable, Iterable

from sqlalchemy import Text, cast, delete, func, null, or_, select, update
from sqlalchemy.orm import Session

from rules.identity import mask_id_number
from settings import Settings
from staff.audit import record
from staff.lookup import find_graduate
from store.db import Database
from store.files import PhotoFiles
from store.models import (Candidate, HandoverBatch, InboundKey, Message, Notification, Order, PhoneCode, Photo,
                          ReminderCampaign, ReminderRecipient, utcnow)

log = logging.getLogger(__name__)

KINDS = ("photos", "transcripts", "payments")
KIND_NAMES = {"photos": "照片", "transcripts": "对话记录", "payments": "支付记录中的个人信息",
              "handover_zips": "报送压缩包"}
ERASED_OPENID = "erased"
BATCH = 500
ROTATE_BATCH = 100


# --- key rotation ---------------------------------------------------------------------------------------

@dataclass
class Rotation:
    rotated: int = 0
    already: int = 0
    failed: list[str] = field(default_factory=list)


def rotate_photo_files(files: PhotoFiles, progress: Callable[[Rotation], None] = lambda _: None,
                       batch: int = ROTATE_BATCH) -> Rotation:
    """Every photo file re-encrypted under the active key, one file at a time (each written beside the
    old one and renamed over it), reporting progress every `batch` files. Resumable: a file already on
    the active key is skipped, so a run killed anywhere is simply run again."""
    if not files.keys.can_encrypt:
        from settings import ConfigError
        from store.crypto import MISSING_KEY

        raise ConfigError(MISSING_KEY)
    files.remove_stale_temporaries()
    result = Rotation()
    for number, relative in enumerate(files.files(), start=1):
        try:
            if files.rotate(relative):
                result.rotated += 1
            else:
                result.already += 1
        except (OSError, ValueError) as error:  # DecryptError: a key no longer configured
            log.warning("photo file %s not rotated: %s", relative, error)
            result.failed.append(relative)
        if number % batch == 0:
            progress(result)
    progress(result)
    return result


def files_by_key(files: PhotoFiles) -> Counter:
    """How many photo files each key id encrypts (None: plaintext from before encryption)."""
    return Counter(files.key_id(relative) for relative in files.files())


# --- retention --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clock:
    """When a candidate's retention clock started, and why."""
    candidate_id: int
    openid: str
    roster_entry_id: int | None
    started: datetime
    handed_over: bool


def clocks(session: Session, settings: Settings) -> list[Clock]:
    """Every candidate's retention start: the hand-over of their roster entry's photo, else the window's end."""
    handed = dict(session.execute(
        select(Photo.roster_entry_id, func.max(func.coalesce(HandoverBatch.finished_at, HandoverBatch.created_at)))
        .join(HandoverBatch, HandoverBatch.id == Photo.handover_batch_id)
        .where(HandoverBatch.status == "ready", Photo.roster_entry_id.is_not(None))
        .group_by(Photo.roster_entry_id)).all())
    window_end = settings.window.aware_end()
    result = []
    for candidate_id, openid, entry_id in session.execute(select(Candidate.id, Candidate.openid, Candidate.roster_entry_id)):
        started = handed.get(entry_id) if entry_id is not None else None
        result.append(Clock(candidate_id, openid, entry_id, started or window_end, started is not None))
    return result


def _days(settings: Settings, kind: str) -> int:
    return getattr(settings.retention, f"{kind}_days")


def due_clocks(session: Session, settings: Settings, kind: str, now: datetime | None = None) -> list[Clock]:
    days = _days(settings, kind)
    if days == 0:
        return []
    cutoff = (now or utcnow()) - timedelta(days=days)
    return [clock for clock in clocks(session, settings) if clock.started <= cutoff]


def _photos_left(session: Session, clocks_: list[Clock]) -> Counter:
    """Per candidate id: photos whose file is still kept, and transcript rows still pointing to a file."""
    ids = [clock.candidate_id for clock in clocks_]
    counts: Counter = Counter()
    for chunk in _chunks(ids):
        counts.update(dict(session.execute(select(Photo.candidate_id, func.count()).where(
            Photo.candidate_id.in_(chunk), Photo.path != "").group_by(Photo.candidate_id)).all()))
    return counts


def _messages_left(session: Session, clocks_: list[Clock]) -> Counter:
    counts: Counter = Counter()
    for chunk in _chunks([clock.openid for clock in clocks_]):
        counts.update(dict(session.execute(select(Message.openid, func.count()).where(
            Message.openid.in_(chunk), _message_has_content()).group_by(Message.openid)).all()))
    return counts


def _orders_left(session: Session, clocks_: list[Clock]) -> Counter:
    counts: Counter = Counter()
    for chunk in _chunks([clock.openid for clock in clocks_]):
        counts.update(dict(session.execute(select(Order.openid, func.count()).where(
            Order.openid.in_(chunk)).group_by(Order.openid)).all()))
    return counts


def _message_has_content():
    return or_(Message.content != "", Message.checks.is_not(None), Message.media_path.is_not(None))


@dataclass(frozen=True)
class ReportLine:
    kind: str
    due: date
    count: int


def retention_report(session: Session, settings: Settings) -> list[ReportLine]:
    """What the retention job will delete and on which (local) day: counts by kind and due date, past
    days included (what the next run takes). Kinds kept forever ([retention] …_days = 0) are left out."""
    all_clocks = clocks(session, settings)
    left = {"photos": (_photos_left(session, all_clocks), "candidate_id"),
            "transcripts": (_messages_left(session, all_clocks), "openid"),
            "payments": (_orders_left(session, all_clocks), "openid")}
    tz = settings.window.tz
    totals: Counter = Counter()
    for kind in KINDS:
        days = _days(settings, kind)
        if days == 0:
            continue
        counts, key = left[kind]
        for clock in all_clocks:
            count = counts.get(getattr(clock, key), 0)
            if count:
                totals[(kind, (clock.started + timedelta(days=days)).astimezone(tz).date())] += count
                counts[getattr(clock, key)] = 0  # one openid may belong to one clock only; count it once
    if settings.retention.photos_days:
        for finished in session.scalars(_zips_kept()):
            totals[("handover_zips", (finished + timedelta(days=settings.retention.photos_days)).astimezone(tz).date())] += 1
    order = (*KINDS, "handover_zips")
    return [ReportLine(kind, due, count) for (kind, due), count in sorted(totals.items(), key=lambda i: (order.index(i[0][0]), i[0][1]))]


def _zips_kept():
    """Hand-over zips still on disk: they hold every photo of their batch, unencrypted, and the manifest."""
    return select(func.coalesce(HandoverBatch.finished_at, HandoverBatch.created_at)).where(
        HandoverBatch.status == "ready", HandoverBatch.path.is_not(None))


def _erase_handover_zips(db: Database, settings: Settings, now: datetime) -> int:
    """Each batch's zip goes with its photos ([retention] photos_days after the hand-over); the batch's row,
    its count and its audit trail stay."""
    if settings.retention.photos_days == 0:
        return 0
    cutoff = now - timedelta(days=settings.retention.photos_days)
    with db.session() as session:
        batches = session.scalars(select(HandoverBatch).where(
            HandoverBatch.status == "ready", HandoverBatch.path.is_not(None),
            func.coalesce(HandoverBatch.finished_at, HandoverBatch.created_at) <= cutoff)).all()
        paths = [settings.data_dir / batch.path for batch in batches]
        for batch in batches:
            batch.path = None
    for path in paths:
        path.unlink(missing_ok=True)
    return len(paths)


def run_retention(db: Database, settings: Settings, files: PhotoFiles, now: datetime | None = None) -> dict[str, int]:
    """Deletes or anonymises everything due, in batches of candidates; returns and logs the counts. A
    second run finds nothing left to do."""
    now = now or utcnow()
    counts: Counter = Counter()
    for kind in KINDS:
        with db.read() as session:
            due = due_clocks(session, settings, kind, now)
        for chunk in _chunks(due, BATCH):
            doomed = _AfterCommit(files)
            with db.session() as session:
                counts.update(ERASERS[kind](session, doomed, chunk))
            doomed.remove_files()
    counts["handover_zips"] = _erase_handover_zips(db, settings, now)
    db.checkpoint()  # what was deleted leaves the WAL too (secure_delete zeroes it in the file)
    result = {name: counts.get(name, 0) for name in ("photos", "photo_files", "handover_zips", "messages", "notifications",
                                                     "reminder_recipients", "phone_codes", "orders")}
    log.info("retention: %s", ", ".join(f"{name} {count}" for name, count in result.items()))
    return result


class _AfterCommit:
    """Photo files whose rows are being cleared: removed once the transaction committed, so a rollback
    never leaves a row pointing at a deleted file (a crash in between leaves an encrypted orphan file)."""

    def __init__(self, files: PhotoFiles):
        self.files = files
        self.paths: set[str] = set()

    def remove(self, path: str) -> bool:
        self.paths.add(path)
        return True

    def remove_files(self) -> None:
        for path in sorted(self.paths):
            self.files.remove(path)


def _erase_photos(session: Session, files: _AfterCommit, clocks_: list[Clock]) -> Counter:
    candidate_ids = [clock.candidate_id for clock in clocks_]
    openids = [clock.openid for clock in clocks_]
    photos = session.execute(select(Photo.id, Photo.path).where(Photo.candidate_id.in_(candidate_ids),
                                                                Photo.path != "")).all()
    media = session.execute(select(Message.id, Message.media_path).where(
        Message.openid.in_(openids), Message.media_path.is_not(None))).all()
    paths = {path for _, path in photos} | {path for _, path in media}
    if photos:
        session.execute(update(Photo).where(Photo.id.in_([photo_id for photo_id, _ in photos])).values(path="")
                        .execution_options(synchronize_session=False))
    if media:
        session.execute(update(Message).where(Message.id.in_([message_id for message_id, _ in media]))
                        .values(media_path=None).execution_options(synchronize_session=False))
    session.flush()
    removed = sum(files.remove(path) for path in paths - _still_used(session, paths))
    return Counter(photos=len(photos), photo_files=removed)


def _still_used(session: Session, paths: set[str]) -> set[str]:
    """Content-addressed: the same bytes may belong to a photo not yet due (someone else's upload). One
    query per table for the whole batch (neither column is indexed)."""
    used: set[str] = set()
    for chunk in _chunks(sorted(paths)):
        used.update(session.scalars(select(Photo.path).where(Photo.path.in_(chunk))))
        used.update(session.scalars(select(Message.media_path).where(Message.media_path.in_(chunk))))
    return used


def _erase_transcripts(session: Session, files: _AfterCommit, clocks_: list[Clock]) -> Counter:
    openids = [clock.openid for clock in clocks_]
    messages = session.execute(update(Message).where(Message.openid.in_(openids), or_(
        Message.content != "", Message.checks.is_not(None))).values(content="", checks=null())
        .execution_options(synchronize_session=False)).rowcount
    notifications = session.execute(update(Notification).where(
        Notification.openid.in_(openids), Notification.status.in_(("sent", "dead")),
        or_(Notification.phone.is_not(None), cast(Notification.payload, Text) != "{}")).values(phone=None, payload={})
        .execution_options(synchronize_session=False)).rowcount
    # Replies kept for WeChat's retries of a message quote the transcript.
    keys = _inbound_keys(session, openids)
    if keys:
        session.execute(update(InboundKey).where(InboundKey.key.in_(keys), InboundKey.reply_xml.is_not(None))
                        .values(reply_xml=None).execution_options(synchronize_session=False))
    reminders = session.execute(update(ReminderRecipient).where(
        or_(ReminderRecipient.openid.in_(openids), ReminderRecipient.roster_entry_id.in_(
            [clock.roster_entry_id for clock in clocks_ if clock.roster_entry_id is not None])),
        or_(ReminderRecipient.phone.is_not(None), ReminderRecipient.name.is_not(None)))
        .values(phone=None, name=None).execution_options(synchronize_session=False)).rowcount
    codes = session.execute(delete(PhoneCode).where(PhoneCode.openid.in_(openids))
                            .execution_options(synchronize_session=False)).rowcount
    return Counter(messages=messages, notifications=notifications, reminder_recipients=reminders, phone_codes=codes)


def _inbound_keys(session: Session, openids: list[str]) -> list[str]:
    """bot/protocol.retry_key: msg:<MsgId> for messages, evt:<openid>:<time> for events."""
    msg_ids = session.scalars(select(Message.wechat_msg_id).where(
        Message.openid.in_(openids), Message.wechat_msg_id.is_not(None))).all()
    events = session.scalars(select(InboundKey.key).where(
        or_(*[InboundKey.key.startswith(f"evt:{openid}:", autoescape=True) for openid in openids]))).all() if openids else []
    return [f"msg:{msg_id}" for msg_id in msg_ids] + list(events)


def _erase_payments(session: Session, files: _AfterCommit, clocks_: list[Clock]) -> Counter:
    openids = [clock.openid for clock in clocks_]
    orders = session.execute(update(Order).where(Order.openid.in_(openids)).values(openid=ERASED_OPENID)
                             .execution_options(synchronize_session=False)).rowcount
    return Counter(orders=orders)


ERASERS = {"photos": _erase_photos, "transcripts": _erase_transcripts, "payments": _erase_payments}


# --- erasure on request -----------------------------------------------------------------------------------

class ErasureError(Exception):
    """The graduate cannot be erased; nothing was changed."""


@dataclass(frozen=True)
class Erasure:
    masked_id: str
    counts: dict[str, int]


def erase_graduate(db: Database, settings: Settings, files: PhotoFiles, graduate: str, by: str, reason: str) -> Erasure:
    """Removes a graduate's personal data (roster entry's personal fields, the candidate's identity,
    transcripts, photos and their files, notifications' phones and texts, the openid on orders), keeping
    what accounting needs. Audited with the masked ID number only. Raises before changing anything."""
    from staff.lookup import GraduateNotFound

    by, reason = by.strip(), reason.strip()
    if not by or not reason:
        raise ErasureError("请用 --by 写明操作人，用 --reason 写明删除依据（如申请编号）")
    doomed = _AfterCommit(files)
    with db.session() as session:
        try:
            entry = find_graduate(session, graduate)
        except GraduateNotFound as exc:
            raise ErasureError(str(exc)) from exc
        masked = mask_id_number(entry.id_number)
        # Every account that was this graduate: bound now, bound before (its photos, its orders), or that
        # typed the ID number into the chat.
        earlier = (select(Photo.candidate_id).where(Photo.roster_entry_id == entry.id))
        openids_seen = set(session.scalars(select(Order.openid).where(Order.roster_entry_id == entry.id))) | set(
            session.scalars(select(Message.openid).where(Message.content.contains(entry.id_number, autoescape=True))))
        candidates = session.scalars(select(Candidate).where(or_(
            Candidate.roster_entry_id == entry.id, Candidate.id_number == entry.id_number,
            Candidate.openid == entry.bound_openid, Candidate.id.in_(earlier), Candidate.openid.in_(openids_seen)))).all()
        openids = sorted({c.openid for c in candidates} | openids_seen | ({entry.bound_openid} if entry.bound_openid else set()))
        openids = [openid for openid in openids if openid != ERASED_OPENID]
        clocks_ = [Clock(c.id, c.openid, c.roster_entry_id, utcnow(), False) for c in candidates]
        extra = [Clock(-1, openid, None, utcnow(), False) for openid in openids if openid not in {c.openid for c in candidates}]
        counts = Counter()
        # Photos of the roster entry taken by an earlier, unbound account too.
        counts.update(_erase_entry_photos(session, doomed, entry.id))
        for eraser in (_erase_photos, _erase_transcripts, _erase_payments):
            counts.update(eraser(session, doomed, clocks_ + extra))
        counts["photo_files"] = len(doomed.paths)  # one file may be both a photo's and a message's
        session.execute(update(Notification).where(Notification.openid.in_(openids)).values(
            phone=None, payload={}, status="dead", last_error="erased").where(Notification.status.in_(("pending", "sending")))
            .execution_options(synchronize_session=False))
        for candidate in candidates:
            candidate.forget_identity()
            candidate.state = "welcome"
        counts.update(_forget_in_campaign_lists(session, entry.id_number))
        entry.name = "已删除"
        entry.id_number = f"E{entry.id:017d}"
        entry.exam_number = f"E{entry.id}"
        entry.phone = None
        entry.bound_openid = None
        entry.bound_at = None
        record(session, by, "privacy.erase", masked,
               ", ".join(f"{name} {count}" for name, count in sorted(counts.items())), reason=reason)
        result = Erasure(masked, dict(counts))
    doomed.remove_files()
    db.checkpoint()  # what was deleted leaves the WAL too (secure_delete zeroes it in the file)
    return result


def _forget_in_campaign_lists(session: Session, id_number: str) -> Counter:
    """Reminder campaigns of the "id_list" segment keep the uploaded ID numbers."""
    changed = 0
    for campaign in session.scalars(select(ReminderCampaign).where(ReminderCampaign.id_numbers.is_not(None))):
        if id_number in (campaign.id_numbers or []):
            campaign.id_numbers = [number for number in campaign.id_numbers if number != id_number]
            changed += 1
    return Counter(campaign_lists=changed)


def _erase_entry_photos(session: Session, files: _AfterCommit, entry_id: int) -> Counter:
    photos = session.execute(select(Photo.id, Photo.path).where(Photo.roster_entry_id == entry_id, Photo.path != "")).all()
    if not photos:
        return Counter()
    session.execute(update(Photo).where(Photo.id.in_([photo_id for photo_id, _ in photos])).values(path="")
                    .execution_options(synchronize_session=False))
    session.flush()
    paths = {path for _, path in photos}
    removed = sum(files.remove(path) for path in paths - _still_used(session, paths))
    return Counter(photos=len(photos), photo_files=removed)


def _chunks(items: list, size: int = BATCH) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
