"""What staff do to a graduate's collection: review the photo, free the WeChat binding, answer a
request for a human, read the transcript. Shared by the CLI and any future web console.

Every function works inside the caller's session (one transaction) and raises StaffActionError,
before changing anything, when the action does not apply. Changes are audited.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.base import State
from notify import notices
from notify.notices import Notice
from notify.outbox import Outbox
from payments.orders import end_collection
from rules.identity import mask_id_number, mask_personal_data
from settings import ReviewSettings
from staff import lookup
from store import queries
from store.models import (Candidate, ForcedReview, Message, Notification, Order, Photo, RejectReason, ReviewClaim,
                          ReviewDecision, RosterEntry, SecondReview, utcnow)

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
    exam_number: str = ""
    refused: tuple[str, ...] = ()  # the checker's refusal, when staff sent the photo to review anyway

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
    """The graduate named by a full ID number, a 准考证号, or the masked ID number with the name."""
    try:
        return lookup.find_graduate(session, id_number)
    except lookup.GraduateNotFound as exc:
        raise StaffActionError(str(exc)) from exc


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


# --- the review queue -------------------------------------------------------------------------------
# A photo is in the queue while it is "submitted" and its candidate is under review (paid). Reviewers
# claim it with a lease (review_claims: a conditional UPDATE, or an INSERT that only one writer wins),
# so two reviewers never hold the same photo and an abandoned one comes back when the lease runs out.
# Approvals drawn for a blind second look form a second queue (round "second") with the same claims.

FIRST, SECOND = "first", "second"
VERDICTS = ("approved", "rejected")


@dataclass(frozen=True)
class QueueItem:
    photo_id: int
    round: str
    roster_entry_id: int
    name: str
    masked_id_number: str
    exam_number: str
    level: str
    openid: str
    waiting_since: datetime
    deadline: datetime
    refused_rules: tuple[str, ...]  # the checker's refusal, when staff sent the photo here anyway
    hints: tuple[str, ...]
    claimed_by: str | None
    claimed_until: datetime | None
    first_reviewer: str | None = None  # second round only; never shown to the second reviewer

    def seconds_left(self, now: datetime) -> float:
        return (self.deadline - now).total_seconds()

    def overdue(self, now: datetime) -> bool:
        return self.seconds_left(now) <= 0

    def held_by_other(self, reviewer: str, now: datetime) -> bool:
        return self.claimed_by not in (None, reviewer) and self.claimed_until > now


@dataclass(frozen=True)
class Decided:
    decision: ReviewDecision
    entry: RosterEntry
    candidate: Candidate | None
    photo: Photo
    second_review: bool = False


def review_queue(session: Session, review_hours: int, now: datetime | None = None) -> list[QueueItem]:
    """Photos waiting for their first review, oldest deadline first (review_hours from the later of
    payment and last upload, or from when staff sent a refused photo here)."""
    paid_at = (select(Order.roster_entry_id, func.max(Order.paid_at).label("paid_at"))
               .where(Order.status == "paid").group_by(Order.roster_entry_id).subquery())
    rows = session.execute(
        select(Photo, RosterEntry, Candidate, paid_at.c.paid_at, ForcedReview.created_at, ReviewClaim)
        .join(RosterEntry, Photo.roster_entry_id == RosterEntry.id)
        .join(Candidate, (Candidate.roster_entry_id == RosterEntry.id) & (Candidate.openid == RosterEntry.bound_openid))
        .outerjoin(paid_at, paid_at.c.roster_entry_id == RosterEntry.id)
        .outerjoin(ForcedReview, ForcedReview.photo_id == Photo.id)
        .outerjoin(ReviewClaim, (ReviewClaim.photo_id == Photo.id) & (ReviewClaim.round == FIRST))
        .where(Photo.status == "submitted", Candidate.state == State.UNDER_REVIEW)
    ).all()
    promised = timedelta(hours=review_hours)
    items = [_queue_item(photo, entry, candidate, FIRST, max(t for t in (paid, photo.created_at, forced) if t),
                         promised, claim)
             for photo, entry, candidate, paid, forced, claim in rows]
    return sorted(items, key=lambda item: (item.deadline, item.photo_id))


def second_review_queue(session: Session, review_hours: int) -> list[QueueItem]:
    """Approvals drawn for a blind second look that nobody has given yet, oldest first."""
    rows = session.execute(
        select(Photo, RosterEntry, ReviewDecision, ReviewClaim)
        .join(SecondReview, SecondReview.photo_id == Photo.id)
        .join(ReviewDecision, ReviewDecision.id == SecondReview.first_decision_id)
        .join(RosterEntry, Photo.roster_entry_id == RosterEntry.id)
        .outerjoin(ReviewClaim, (ReviewClaim.photo_id == Photo.id) & (ReviewClaim.round == SECOND))
        .where(SecondReview.second_decision_id.is_(None), Photo.status == "approved")
        .order_by(SecondReview.created_at, Photo.id)
    ).all()
    promised = timedelta(hours=review_hours)
    return [_queue_item(photo, entry, None, SECOND, first.decided_at, promised, claim, first_reviewer=first.reviewer)
            for photo, entry, first, claim in rows]


def _queue_item(photo: Photo, entry: RosterEntry, candidate: Candidate | None, round_: str, since: datetime,
                promised: timedelta, claim: ReviewClaim | None, first_reviewer: str | None = None) -> QueueItem:
    report = photo.report or {}
    item = QueueItem(
        photo_id=photo.id, round=round_, roster_entry_id=entry.id, name=entry.name,
        masked_id_number=mask_id_number(entry.id_number), exam_number=entry.exam_number, level=entry.level,
        openid=candidate.openid if candidate else (entry.bound_openid or ""), waiting_since=since,
        deadline=since + promised, refused_rules=tuple(f.get("rule", "?") for f in report.get("failures", [])),
        hints=tuple(h.get("code", "?") for h in report.get("hints", [])),
        claimed_by=claim.reviewer if claim else None, claimed_until=claim.lease_until if claim else None,
        first_reviewer=first_reviewer)
    return item


def next_photo(session: Session, reviewer: str, review: ReviewSettings, review_hours: int,
               now: datetime | None = None) -> QueueItem | None:
    """The reviewer's own current claim, else the next free photo, claimed for them (first reviews by
    deadline, then second reviews of other reviewers' approvals). None when nothing is left."""
    reviewer = check_actor(reviewer)
    now = now or utcnow()
    firsts = review_queue(session, review_hours, now)
    seconds = [item for item in second_review_queue(session, review_hours)
               if item.first_reviewer != reviewer]
    for item in firsts + seconds:
        if item.claimed_by == reviewer and item.claimed_until > now:
            return item
    lease_until = now + timedelta(minutes=review.claim_minutes)
    for item in firsts + seconds:
        if not item.held_by_other(reviewer, now) and claim(session, item.photo_id, item.round, reviewer, now,
                                                            lease_until):
            return replace(item, claimed_by=reviewer, claimed_until=lease_until)
    return None


def claim(session: Session, photo_id: int, round_: str, reviewer: str, now: datetime,
          lease_until: datetime) -> bool:
    """Takes the photo for the reviewer unless someone else holds a live lease on it. Race-safe: the
    UPDATE re-checks the lease under the row lock, and of two INSERTs only one can succeed."""
    taken = session.execute(
        update(ReviewClaim)
        .where(ReviewClaim.photo_id == photo_id, ReviewClaim.round == round_,
               or_(ReviewClaim.lease_until <= now, ReviewClaim.reviewer == reviewer))
        .values(reviewer=reviewer, claimed_at=case((ReviewClaim.reviewer == reviewer, ReviewClaim.claimed_at),
                                                   else_=now),
                lease_until=lease_until)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken == 1:
        return True
    if session.scalar(select(ReviewClaim.photo_id).where(ReviewClaim.photo_id == photo_id,
                                                         ReviewClaim.round == round_)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(ReviewClaim(photo_id=photo_id, round=round_, reviewer=reviewer, claimed_at=now,
                                    lease_until=lease_until))
    except IntegrityError:
        return False
    return True


def release(session: Session, photo_id: int, reviewer: str) -> None:
    """The reviewer hands the photo back to the queue (skips it)."""
    session.execute(delete(ReviewClaim).where(ReviewClaim.photo_id == photo_id, ReviewClaim.reviewer == reviewer)
                    .execution_options(synchronize_session=False))


def _held_claim(session: Session, photo_id: int, round_: str, reviewer: str, now: datetime,
                required: bool) -> ReviewClaim | None:
    """The reviewer's claim on the photo; refuses when another reviewer holds a live one."""
    held = session.scalar(select(ReviewClaim).where(ReviewClaim.photo_id == photo_id, ReviewClaim.round == round_)
                          .with_for_update())
    if held is not None and held.reviewer != reviewer and held.lease_until > now:
        raise StaffActionError(f"照片 {photo_id} 正由 {held.reviewer} 审核，请审核下一张")
    if held is None and required:
        raise StaffActionError(f"照片 {photo_id} 未由您领取，请从审核队列打开")
    return held if held is not None and held.reviewer == reviewer else None


# --- verdicts -----------------------------------------------------------------------------------------

def approve(session: Session, outbox: Outbox, id_number: str, by: str,
            wrong_rules: tuple[str, ...] = ()) -> Reviewed:
    """`flask review approve`: the graduate's photo under review; the candidate is told at once."""
    reviewed = photo_under_review(session, id_number)
    decide(session, outbox, reviewed.photo.id, by, "approved", wrong_rules=wrong_rules)
    return reviewed


def reject(session: Session, outbox: Outbox, id_number: str, reason: str, by: str,
           preset: str | None = None) -> Reviewed:
    """The candidate goes back to sending a photo; the payment stays (no second payment)."""
    reviewed = photo_under_review(session, id_number)
    decide(session, outbox, reviewed.photo.id, by, "rejected", preset=preset, note=reason)
    return reviewed


def decide(session: Session, outbox: Outbox, photo_id: int, by: str, verdict: str, *,
           preset: str | None = None, note: str | None = None, wrong_rules: tuple[str, ...] | list[str] = (),
           grace_seconds: int = 0, second_share: float = 0.0, require_claim: bool = False,
           now: datetime | None = None) -> Decided:
    """The one first-round verdict behind both front doors. The candidate is told through the outbox,
    `grace_seconds` later (an undo before then tells them nothing). Approving a photo the checker
    refused needs the rule(s) the checker got wrong."""
    by, now = check_actor(by), now or utcnow()
    if verdict not in VERDICTS:
        raise StaffActionError(f"未知的审核结论 {verdict}")
    photo, entry, candidate = _photo_in_review(session, photo_id)
    held = _held_claim(session, photo.id, FIRST, by, now, require_claim)
    reason_code, reason = _reason(session, verdict, preset, note)
    overridden = _overridden(photo, verdict, wrong_rules)
    _mark_photo(photo, verdict, by, reason)
    if verdict == "approved":
        notice = notices.approved(outbox.settings, candidate.openid, photo.id, entry.name)
        state = State.APPROVED
    else:
        notice = notices.rejected(outbox.settings, candidate.openid, photo.id, entry.name, reason)
        state = State.PHOTO
    ids = _move_and_notify(session, outbox, candidate, state, notice,
                           checks={"review": verdict, "photo_id": photo.id, "by": by})
    undo_until = now + timedelta(seconds=grace_seconds) if grace_seconds else None
    if undo_until is not None:
        _hold_back(session, ids, undo_until)
    decision = ReviewDecision(photo_id=photo.id, round=FIRST, reviewer=by, verdict=verdict, reason_code=reason_code,
                              reason=reason, overridden_rules=overridden or None,
                              claimed_at=held.claimed_at if held else None, decided_at=now, undo_until=undo_until)
    session.add(decision)
    session.flush()
    _drop_claim(session, photo.id, FIRST)
    drawn = verdict == "approved" and second_share > 0 and random.random() < second_share
    if drawn:
        session.add(SecondReview(photo_id=photo.id, first_decision_id=decision.id, created_at=now))
    detail = f"photo {photo.id}" + (f": {reason}" if reason else "") + (
        f"; checker wrong on {', '.join(overridden)}" if overridden else "")
    queries.audit(session, by, "review.approve" if verdict == "approved" else "review.reject", _target(entry), detail)
    return Decided(decision, entry, candidate, photo, second_review=drawn)


def _photo_in_review(session: Session, photo_id: int) -> tuple[Photo, RosterEntry, Candidate]:
    photo = session.scalar(select(Photo).where(Photo.id == photo_id).with_for_update())
    if photo is None:
        raise StaffActionError(f"没有编号为 {photo_id} 的照片")
    entry = session.get(RosterEntry, photo.roster_entry_id) if photo.roster_entry_id else None
    if entry is None:
        raise StaffActionError(f"照片 {photo_id} 不属于名单中的考生")
    if photo.status != "submitted":
        raise StaffActionError(f"照片 {photo_id} 不在审核中（{PHOTO_STATUS.get(photo.status, photo.status)}）")
    candidate = bound_candidate(session, entry)
    if candidate.state != State.UNDER_REVIEW:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）不在审核中（当前步骤：{candidate.state}）")
    return photo, entry, candidate


PHOTO_STATUS = {"checked": "未通过自动检查", "submitted": "待审核", "approved": "已通过", "rejected": "未通过",
                "replaced": "已被新照片替换"}


def _reason(session: Session, verdict: str, preset: str | None, note: str | None) -> tuple[str | None, str | None]:
    """(preset code, the text the candidate receives) of a rejection: the preset's sentence, then the
    reviewer's own words; either may be missing, not both."""
    note = (note or "").strip()
    if verdict == "approved":
        return None, None
    chosen = None
    if preset:
        chosen = session.scalar(select(RejectReason).where(RejectReason.code == preset.strip(),
                                                           RejectReason.active.is_(True)))
        if chosen is None:
            raise StaffActionError(f"没有预设原因 {preset}（可选：{', '.join(r.code for r in reject_reasons(session))}）")
    if chosen is None and not note:
        raise StaffActionError("请选择或填写不通过的原因")
    if len(note) > NOTE_MAX_CHARS:
        raise StaffActionError(f"补充说明最多{NOTE_MAX_CHARS}个字")
    text = "；".join(part for part in ((chosen.text if chosen else ""), note) if part)
    return (chosen.code if chosen else None), text


NOTE_MAX_CHARS = 200


def _overridden(photo: Photo, verdict: str, wrong_rules) -> list[str]:
    refused = [f.get("rule") for f in (photo.report or {}).get("failures", [])]
    marked = [rule.strip() for rule in wrong_rules if rule and rule.strip()]
    unknown = [rule for rule in marked if rule not in refused]
    if unknown:
        raise StaffActionError(f"自动检查没有拒绝这些项目：{', '.join(unknown)}（拒绝的是：{', '.join(refused) or '无'}）")
    if verdict == "approved" and refused and not marked:
        raise StaffActionError(f"自动检查拒绝过这张照片（{', '.join(refused)}）：通过前请标出判断错误的项目")
    return marked if verdict == "approved" else []


def _hold_back(session: Session, ids: list[int], until: datetime) -> None:
    """The candidate's notifications wait until the undo period is over; the outbox sweep sends them."""
    session.flush()
    session.execute(update(Notification).where(Notification.id.in_(ids)).values(next_attempt_at=until)
                    .execution_options(synchronize_session=False))


def _drop_claim(session: Session, photo_id: int, round_: str) -> None:
    session.execute(delete(ReviewClaim).where(ReviewClaim.photo_id == photo_id, ReviewClaim.round == round_)
                    .execution_options(synchronize_session=False))


def undo(session: Session, decision_id: int, by: str, now: datetime | None = None) -> Decided:
    """Takes a first-round verdict back within its grace period: nothing reaches the candidate, the
    photo is under review again and back in the reviewer's hands. Refused once the period is over or
    a notification has started going out."""
    by, now = check_actor(by), now or utcnow()
    decision = session.scalar(select(ReviewDecision).where(ReviewDecision.id == decision_id).with_for_update())
    if decision is None or decision.round != FIRST:
        raise StaffActionError(f"没有可撤销的审核 {decision_id}")
    if decision.undone_at is not None:
        raise StaffActionError("这条审核已撤销")
    if decision.reviewer != by:
        raise StaffActionError(f"只能撤销自己的审核（这条由 {decision.reviewer} 作出）")
    if decision.undo_until is None or now >= decision.undo_until:
        raise StaffActionError("已超过撤销时限，考生已收到或即将收到通知")
    photo = session.scalar(select(Photo).where(Photo.id == decision.photo_id).with_for_update())
    entry = session.get(RosterEntry, photo.roster_entry_id)
    candidate = bound_candidate(session, entry)
    expected = State.APPROVED if decision.verdict == "approved" else State.PHOTO
    if photo.status != decision.verdict or candidate.state != expected:
        raise StaffActionError("考生已有新的进展，无法撤销")
    rows = list(session.scalars(select(Notification).where(
        Notification.dedupe_key.in_([f"{decision.verdict}:{photo.id}:wechat", f"{decision.verdict}:{photo.id}:sms"])
    ).with_for_update()))
    if any(row.status != "pending" or row.attempts for row in rows):
        raise StaffActionError("通知已开始发送，无法撤销")
    _withdraw(session, rows)
    photo.status, photo.review_reason, photo.reviewed_at, photo.reviewed_by = "submitted", None, None, None
    candidate.state = State.UNDER_REVIEW
    decision.undone_at = now
    session.execute(delete(SecondReview).where(SecondReview.first_decision_id == decision.id,
                                               SecondReview.second_decision_id.is_(None))
                    .execution_options(synchronize_session=False))
    session.add(ReviewClaim(photo_id=photo.id, round=FIRST, reviewer=by, claimed_at=decision.claimed_at or now,
                            lease_until=now + timedelta(minutes=CLAIM_AFTER_UNDO_MINUTES)))
    queries.audit(session, by, "review.undo", _target(entry), f"photo {photo.id}: {decision.verdict} withdrawn")
    return Decided(decision, entry, candidate, photo)


CLAIM_AFTER_UNDO_MINUTES = 15


def _withdraw(session: Session, rows: list[Notification]) -> None:
    """Deletes notifications nobody was sent, and their transcript rows (they never went out)."""
    message_ids = [row.message_id for row in rows if row.message_id is not None]
    for row in rows:
        deleted = session.execute(delete(Notification).where(Notification.id == row.id,
                                                             Notification.status == "pending",
                                                             Notification.attempts == 0)
                                  .execution_options(synchronize_session=False)).rowcount
        if deleted != 1:  # a worker claimed it between our read and now
            raise StaffActionError("通知已开始发送，无法撤销")
    if message_ids:
        session.execute(delete(Message).where(Message.id.in_(message_ids)).execution_options(synchronize_session=False))
    session.expire_all()


def last_undoable(session: Session, reviewer: str, now: datetime | None = None) -> ReviewDecision | None:
    """The reviewer's latest verdict that can still be taken back."""
    now = now or utcnow()
    return session.scalar(select(ReviewDecision).where(
        ReviewDecision.reviewer == reviewer, ReviewDecision.round == FIRST, ReviewDecision.undone_at.is_(None),
        ReviewDecision.undo_until > now).order_by(ReviewDecision.id.desc()).limit(1))


def second_decide(session: Session, photo_id: int, by: str, verdict: str, *, preset: str | None = None,
                  note: str | None = None, now: datetime | None = None) -> ReviewDecision:
    """The blind second look at an approval. It changes nothing for the candidate; a disagreement is
    listed for admins."""
    by, now = check_actor(by), now or utcnow()
    if verdict not in VERDICTS:
        raise StaffActionError(f"未知的审核结论 {verdict}")
    pending = session.scalar(select(SecondReview).where(SecondReview.photo_id == photo_id).with_for_update())
    if pending is None or pending.second_decision_id is not None:
        raise StaffActionError(f"照片 {photo_id} 不需要复核")
    first = session.get(ReviewDecision, pending.first_decision_id)
    if first.reviewer == by:
        raise StaffActionError("不能复核自己审核过的照片")
    held = _held_claim(session, photo_id, SECOND, by, now, required=True)
    reason_code, reason = _reason(session, verdict, preset, note)
    decision = ReviewDecision(photo_id=photo_id, round=SECOND, reviewer=by, verdict=verdict, reason_code=reason_code,
                              reason=reason, claimed_at=held.claimed_at if held else None, decided_at=now)
    session.add(decision)
    session.flush()
    pending.second_decision_id = decision.id
    _drop_claim(session, photo_id, SECOND)
    queries.audit(session, by, "review.second", f"photo:{photo_id}",
                  f"{verdict} (first: {first.verdict} by {first.reviewer})" + (f": {reason}" if reason else ""))
    return decision


# --- sending a refused photo to review ----------------------------------------------------------------

@dataclass(frozen=True)
class Forced:
    photo: Photo
    entry: RosterEntry
    candidate: Candidate
    paid: bool  # False: the candidate must pay first; the photo joins the queue once they have


def send_to_review(session: Session, photo_id: int, actor: str, why: str, outbox: Outbox | None = None) -> Forced:
    """Puts a photo the checker refused in front of a reviewer (the support desk, or a candidate who
    asks for a human look). The candidate's latest photo only, while they are at the photo or payment
    step. Paid: they are under review now. Not paid: the photo counts as passed and they move to the
    payment step (approval before payment is not allowed); paying puts it in the queue. With an outbox
    the candidate is told by WeChat; without one the calling front door tells them."""
    actor = check_actor(actor)
    why = (why or "").strip()
    if not why:
        raise StaffActionError("请说明转人工审核的原因")
    photo = session.scalar(select(Photo).where(Photo.id == photo_id).with_for_update())
    if photo is None:
        raise StaffActionError(f"没有编号为 {photo_id} 的照片")
    if photo.status != "checked":
        raise StaffActionError(f"照片 {photo_id} 不是被自动检查拒绝的照片（{PHOTO_STATUS.get(photo.status, photo.status)}）")
    entry = session.get(RosterEntry, photo.roster_entry_id) if photo.roster_entry_id else None
    if entry is None:
        raise StaffActionError(f"照片 {photo_id} 不属于名单中的考生")
    candidate = bound_candidate(session, entry)
    if candidate.id != photo.candidate_id:
        raise StaffActionError(f"照片 {photo_id} 由另一个微信号上传，该考生已换绑")
    newest = session.scalar(select(func.max(Photo.id)).where(Photo.roster_entry_id == entry.id))
    if newest != photo.id:
        raise StaffActionError(f"考生之后又上传了照片（编号 {newest}），请处理最新的照片")
    if candidate.state not in (State.PHOTO, State.PAYMENT):
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）当前步骤为 {candidate.state}，不能转人工审核")
    queries.replace_submitted_photos(session, entry.id)
    photo.status = "submitted"
    session.add(ForcedReview(photo_id=photo.id, sent_by=actor, why=why[:500], created_at=utcnow()))
    paid = queries.paid_order(session, entry.id) is not None
    before, candidate.state = candidate.state, State.UNDER_REVIEW if paid else State.PAYMENT
    if outbox is not None:
        outbox.add(session, notices.sent_to_review(outbox.settings, candidate.openid, photo.id, paid),
                   state_before=before, state_after=candidate.state, checks={"review": "forced", "by": actor})
    queries.audit(session, actor, "review.force", _target(entry),
                  f"photo {photo.id} ({', '.join(_refused(photo))}): {why}")
    return Forced(photo, entry, candidate, paid)


def _refused(photo: Photo) -> list[str]:
    return [f.get("rule", "?") for f in (photo.report or {}).get("failures", [])]


# --- what reviewers and admins see --------------------------------------------------------------------

@dataclass(frozen=True)
class PhotoScreen:
    photo: Photo
    entry: RosterEntry
    forced: ForcedReview | None
    earlier_photos: list[Photo]
    earlier_decisions: list[ReviewDecision]


def photo_screen(session: Session, photo_id: int) -> PhotoScreen:
    """What a reviewer needs beside the photo: the roster record, the refusal (if staff forced it
    here), the graduate's earlier uploads and earlier verdicts."""
    photo = session.get(Photo, photo_id)
    if photo is None or photo.roster_entry_id is None:
        raise StaffActionError(f"没有编号为 {photo_id} 的照片")
    entry = session.get(RosterEntry, photo.roster_entry_id)
    earlier = list(session.scalars(select(Photo).where(Photo.roster_entry_id == entry.id, Photo.id != photo.id)
                                   .order_by(Photo.id.desc())))
    decisions = list(session.scalars(
        select(ReviewDecision).join(Photo, Photo.id == ReviewDecision.photo_id)
        .where(Photo.roster_entry_id == entry.id, ReviewDecision.photo_id != photo.id,
               ReviewDecision.round == FIRST, ReviewDecision.undone_at.is_(None))
        .order_by(ReviewDecision.id.desc())))
    return PhotoScreen(photo, entry, session.get(ForcedReview, photo.id), earlier, decisions)


def reject_reasons(session: Session, include_retired: bool = False) -> list[RejectReason]:
    query = select(RejectReason).order_by(RejectReason.position, RejectReason.id)
    if not include_retired:
        query = query.where(RejectReason.active.is_(True))
    return list(session.scalars(query))


REASON_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
REASON_TEXT_MAX_CHARS = 200


def save_reject_reason(session: Session, by: str, code: str, label: str, text: str, position: int | None = None,
                       active: bool = True) -> RejectReason:
    """Adds a preset reason or changes one (admins). Audited."""
    by = check_actor(by)
    code, label, text = code.strip(), " ".join(label.split()), text.strip()
    if not REASON_CODE.match(code):
        raise StaffActionError("代码只能用小写英文字母、数字和下划线，以字母开头，最多32个字符")
    if not label or len(label) > 32:
        raise StaffActionError("名称应为1到32个字")
    if not text or len(text) > REASON_TEXT_MAX_CHARS:
        raise StaffActionError(f"发给考生的说明应为1到{REASON_TEXT_MAX_CHARS}个字")
    reason = session.scalar(select(RejectReason).where(RejectReason.code == code).with_for_update())
    if reason is None:
        last = session.scalar(select(func.max(RejectReason.position))) or 0
        reason = RejectReason(code=code, position=last + 1 if position is None else position)
        session.add(reason)
    elif position is not None:
        reason.position = position
    reason.label, reason.text, reason.active, reason.updated_at = label, text, active, utcnow()
    session.flush()
    queries.audit(session, by, "review.reason", f"reject_reason:{code}",
                  f"{'active' if active else 'retired'}: {label} — {text}")
    return reason


@dataclass(frozen=True)
class Override:
    decision: ReviewDecision
    photo: Photo
    entry: RosterEntry
    forced: ForcedReview | None


def overrides(session: Session, limit: int = 500) -> list[Override]:
    """Photos the checker refused and a reviewer accepted, newest first, with the rules marked wrong:
    the checker's false refusals in the field."""
    rows = session.execute(
        select(ReviewDecision, Photo, RosterEntry, ForcedReview)
        .join(Photo, Photo.id == ReviewDecision.photo_id)
        .join(RosterEntry, RosterEntry.id == Photo.roster_entry_id)
        .outerjoin(ForcedReview, ForcedReview.photo_id == Photo.id)
        .where(ReviewDecision.overridden_rules.is_not(None), ReviewDecision.undone_at.is_(None),
               ReviewDecision.round == FIRST)
        .order_by(ReviewDecision.id.desc()).limit(limit)).all()
    return [Override(*row) for row in rows]


# --- CLI look-up --------------------------------------------------------------------------------------

def photo_under_review(session: Session, id_number: str) -> Reviewed:
    entry = roster_entry(session, id_number)
    candidate = bound_candidate(session, entry)
    if candidate.state != State.UNDER_REVIEW:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）不在审核中（当前步骤：{candidate.state}）")
    photo = queries.latest_roster_photo(session, entry.id, ("submitted",))
    if photo is None:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）没有待审核的照片")
    return Reviewed(entry, candidate, photo)


def _mark_photo(photo: Photo, status: str, by: str, reason: str | None) -> None:
    photo.status = status
    photo.review_reason = reason
    photo.reviewed_at = utcnow()
    photo.reviewed_by = by


def _move_and_notify(session: Session, outbox: Outbox, candidate: Candidate, state: str, notice: Notice,
                     checks: dict) -> list[int]:
    """Moves the candidate on and tells them, by WeChat and SMS, once the transaction commits."""
    before = candidate.state
    candidate.state = state
    return outbox.add(session, notice, state_before=before, state_after=state, checks=checks)


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
                         waiting_since=since, exam_number=entry.exam_number,
                         refused=tuple(_refused(photo)) if photo else ())


# --- WeChat binding ----------------------------------------------------------------------------------

def unbind(session: Session, id_number: str, by: str) -> str:
    """Frees the graduate for another WeChat account; the old account starts over. Returns its openid.
    Photos and a payment made stay with the roster entry and carry over to the next account; the old
    account's unpaid orders are closed (money that still arrives for them is refunded)."""
    by = check_actor(by)
    entry = roster_entry(session, id_number)
    if entry.bound_openid is None:
        raise StaffActionError(f"{entry.name}（{mask_id_number(entry.id_number)}）没有绑定微信号")
    old_openid = entry.bound_openid
    candidate = session.scalar(select(Candidate).where(Candidate.openid == old_openid).with_for_update())
    old_state = candidate.state if candidate else None
    if candidate is not None:
        _start_over(candidate)
    end_collection(session, old_openid, entry, "unbind")
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
    if session.scalar(select(func.count()).select_from(Message).where(Message.openid == key)):
        return f"openid:{key}", [key]
    if not lookup.looks_like_graduate(key):
        raise StaffActionError(f"没有找到 {mask_personal_data(key)} 的对话记录")
    entry = roster_entry(session, key)
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
