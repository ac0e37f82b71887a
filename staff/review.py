"""What staff do to a graduate's collection: review the photo, free the WeChat binding, answer a
request for a human, read the transcript. Shared by the CLI and any future web console.

Every function works inside the caller's session (one transaction) and raises StaffActionError,
before changing anything, when the action does not apply. Changes are audited.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.base import State
from notify import notices
from notify.notices import Notice
from notify.outbox import Outbox
from rules.identity import clean_id_number, mask_id_number, mask_personal_data
from store import queries
from store.models import Candidate, Message, Notification, Order, Photo, RosterEntry, utcnow

ACTOR_MAX_LENGTH = 64


class StaffActionError(Exception):
    """The action does not apply (unknown graduate, wrong state…); nothing was changed."""


@dataclass(frozen=True)
class Reviewed:
    entry: RosterEntry
    candidate: Candidate
    photo: Photo


@dataclass(frozen=True)
class PendingReview:
    name: str
    masked_id_number: str
    level: str
    openid: str
    photo_id: int | None
    hints: tuple[str, ...]
    waiting_since: datetime

    def hours_waiting(self, now: datetime) -> float:
        return (now - self.waiting_since).total_seconds() / 3600


@dataclass(frozen=True)
class SupportRequest:
    openid: str
    state: str
    name: str | None
    masked_id_number: str
    requested_at: datetime
    last_message: str | None


# --- looking graduates up ---------------------------------------------------------------------------

def roster_entry(session: Session, id_number: str) -> RosterEntry:
    entry = queries.roster_by_id_number(session, clean_id_number(id_number))
    if entry is None:
        raise StaffActionError(f"名单中没有身份证号 {mask_id_number(clean_id_number(id_number))}")
    return entry


def bound_candidate(session: Session, entry: RosterEntry) -> Candidate:
    """The candidate collecting for this graduate, locked for the rest of the transaction."""
    if entry.bound_openid is None:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）尚未绑定微信号")
    candidate = session.scalar(select(Candidate).where(Candidate.openid == entry.bound_openid).with_for_update())
    if candidate is None:
        raise StaffActionError(f"绑定的微信号 {entry.bound_openid} 没有对话记录")
    return candidate


def check_actor(actor: str) -> str:
    actor = actor.strip()
    if not actor or len(actor) > ACTOR_MAX_LENGTH:
        raise StaffActionError(f"审核人姓名应为1到{ACTOR_MAX_LENGTH}个字符")
    return actor


# --- photo review ----------------------------------------------------------------------------------

def photo_under_review(session: Session, id_number: str) -> Reviewed:
    entry = roster_entry(session, id_number)
    candidate = bound_candidate(session, entry)
    if candidate.state != State.UNDER_REVIEW:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）不在审核中（当前步骤：{candidate.state}）")
    photo = queries.latest_roster_photo(session, entry.id, ("submitted",))
    if photo is None:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）没有待审核的照片")
    return Reviewed(entry, candidate, photo)


def approve(session: Session, outbox: Outbox, id_number: str, by: str) -> Reviewed:
    by = check_actor(by)
    reviewed = photo_under_review(session, id_number)
    _mark_photo(reviewed.photo, "approved", by, reason=None)
    notice = notices.approved(outbox.settings, reviewed.candidate.openid, reviewed.photo.id, reviewed.entry.name)
    _move_and_notify(session, outbox, reviewed.candidate, State.APPROVED, notice,
                     checks={"review": "approved", "photo_id": reviewed.photo.id, "by": by})
    queries.audit(session, by, "review.approve", _target(reviewed.entry), f"photo {reviewed.photo.id}")
    return reviewed


def reject(session: Session, outbox: Outbox, id_number: str, reason: str, by: str) -> Reviewed:
    """The candidate goes back to sending a photo; the payment stays (no second payment)."""
    by = check_actor(by)
    reason = reason.strip()
    if not reason:
        raise StaffActionError("请填写不通过的原因（--reason）")
    reviewed = photo_under_review(session, id_number)
    _mark_photo(reviewed.photo, "rejected", by, reason=reason)
    notice = notices.rejected(outbox.settings, reviewed.candidate.openid, reviewed.photo.id, reviewed.entry.name,
                              reason)
    _move_and_notify(session, outbox, reviewed.candidate, State.PHOTO, notice,
                     checks={"review": "rejected", "photo_id": reviewed.photo.id, "by": by})
    queries.audit(session, by, "review.reject", _target(reviewed.entry), f"photo {reviewed.photo.id}: {reason}")
    return reviewed


def _mark_photo(photo: Photo, status: str, by: str, reason: str | None) -> None:
    photo.status = status
    photo.review_reason = reason
    photo.reviewed_at = utcnow()
    photo.reviewed_by = by


def _move_and_notify(session: Session, outbox: Outbox, candidate: Candidate, state: str, notice: Notice,
                     checks: dict) -> None:
    """Moves the candidate on and tells them, by WeChat and SMS, once the transaction commits."""
    before = candidate.state
    candidate.state = state
    outbox.add(session, notice, state_before=before, state_after=state, checks=checks)


def _target(entry: RosterEntry) -> str:
    return f"roster_entry:{entry.id}"


def pending_reviews(session: Session) -> list[PendingReview]:
    """Candidates under review, oldest first (waiting since payment or the photo, whichever is later)."""
    paid_at = (select(Order.roster_entry_id, func.max(Order.paid_at).label("paid_at"))
               .where(Order.status == "paid").group_by(Order.roster_entry_id).subquery())
    rows = session.execute(
        select(Candidate, RosterEntry, Photo, paid_at.c.paid_at)
        .join(RosterEntry, Candidate.roster_entry_id == RosterEntry.id)
        .outerjoin(Photo, (Photo.roster_entry_id == RosterEntry.id) & (Photo.status == "submitted"))
        .outerjoin(paid_at, paid_at.c.roster_entry_id == RosterEntry.id)
        .where(Candidate.state == State.UNDER_REVIEW)
        .order_by(Candidate.id, Photo.id)
    ).all()
    latest: dict[int, PendingReview] = {}
    for candidate, entry, photo, paid in rows:
        latest[candidate.id] = _pending(candidate, entry, photo, paid)
    return sorted(latest.values(), key=lambda item: item.waiting_since)


def _pending(candidate: Candidate, entry: RosterEntry, photo: Photo | None, paid: datetime | None) -> PendingReview:
    moments = [moment for moment in (paid, photo.created_at if photo else None) if moment]
    since = max(moments) if moments else candidate.updated_at
    hints = tuple(hint.get("code", "?") for hint in (photo.report or {}).get("hints", [])) if photo else ()
    return PendingReview(name=entry.name, masked_id_number=mask_id_number(entry.id_number), level=entry.level,
                         openid=candidate.openid, photo_id=photo.id if photo else None, hints=hints,
                         waiting_since=since)


# --- WeChat binding ----------------------------------------------------------------------------------

def unbind(session: Session, id_number: str, by: str) -> str:
    """Frees the graduate for another WeChat account; the old account starts over. Returns its openid.
    Orders and photos stay with the roster entry, so a payment carries over to the next account."""
    by = check_actor(by)
    entry = roster_entry(session, id_number)
    if entry.bound_openid is None:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）没有绑定微信号")
    old_openid = entry.bound_openid
    candidate = session.scalar(select(Candidate).where(Candidate.openid == old_openid).with_for_update())
    old_state = candidate.state if candidate else None
    if candidate is not None:
        _start_over(candidate)
    entry.unbind()
    queries.audit(session, by, "roster.unbind", _target(entry), f"openid {old_openid} (state {old_state})")
    return old_openid


def _start_over(candidate: Candidate) -> None:
    candidate.state = State.WELCOME
    candidate.forget_identity()


# --- requests for a human -----------------------------------------------------------------------------

def support_queue(session: Session) -> list[SupportRequest]:
    candidates = session.scalars(
        select(Candidate).where(Candidate.human_requested_at.is_not(None)).order_by(Candidate.human_requested_at)
    ).all()
    return [_support_request(session, candidate) for candidate in candidates]


def _support_request(session: Session, candidate: Candidate) -> SupportRequest:
    last = session.scalar(
        select(Message.content).where(Message.openid == candidate.openid, Message.direction == "in")
        .order_by(Message.id.desc()).limit(1)
    )
    return SupportRequest(openid=candidate.openid, state=candidate.state, name=candidate.name,
                          masked_id_number=mask_id_number(candidate.id_number),
                          requested_at=candidate.human_requested_at, last_message=last)


def support_done(session: Session, openid: str, by: str) -> Candidate:
    by = check_actor(by)
    candidate = queries.find_candidate(session, openid)
    if candidate is None:
        raise StaffActionError(f"没有微信号 {openid} 的对话")
    if candidate.human_requested_at is None:
        raise StaffActionError(f"{openid} 不在人工客服队列中")
    candidate.human_requested_at = None
    queries.audit(session, by, "support.done", f"openid:{openid}")
    return candidate


# --- transcript -----------------------------------------------------------------------------------

def conversation_openids(session: Session, openid_or_id_number: str) -> tuple[str, list[str]]:
    """(audit target, openids in first-contact order) of a WeChat account or of a graduate: every account
    that collected for them (bound now, paid, or sent a photo). StaffActionError if there is none."""
    key = openid_or_id_number.strip()
    entry = queries.roster_by_id_number(session, clean_id_number(key))
    if entry is None:
        if session.scalar(select(func.count()).select_from(Message).where(Message.openid == key)):
            return f"openid:{key}", [key]
        raise StaffActionError(f"没有找到 {mask_personal_data(key)} 的对话记录")
    openids = _graduate_openids(session, entry)
    if not openids:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）还没有对话记录")
    return _target(entry), openids


def _graduate_openids(session: Session, entry: RosterEntry) -> list[str]:
    found = set(session.scalars(select(Order.openid).where(Order.roster_entry_id == entry.id)))
    found.update(session.scalars(select(Candidate.openid).join(Photo, Photo.candidate_id == Candidate.id)
                                 .where(Photo.roster_entry_id == entry.id)))
    found.update(session.scalars(select(Candidate.openid).where(Candidate.roster_entry_id == entry.id)))
    if entry.bound_openid:
        found.add(entry.bound_openid)
    first_seen = {openid: session.scalar(select(func.min(Message.id)).where(Message.openid == openid))
                  for openid in found}
    return sorted((openid for openid in found if first_seen[openid] is not None), key=first_seen.get)


def transcript(session: Session, openid: str) -> list[Message]:
    return list(session.scalars(select(Message).where(Message.openid == openid).order_by(Message.id)))


def notifications(session: Session, openid: str) -> list[Notification]:
    """What the outbox sent (or failed to send) this account, by WeChat and by SMS."""
    return list(session.scalars(select(Notification).where(Notification.openid == openid)
                                .order_by(Notification.id)))
