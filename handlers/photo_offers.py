"""What a refused photo offers the candidate (step 9, after the checks):

- a re-framed 480×640 version when the only problems are framing or a picture on its side
  (rules/photo/reframe.py): sent as an image, taken with "1";
- "申请人工审核" after two refusals in a row by rules that can be wrong (anything but the file, its
  pixels and the number of faces): the photo goes to the review queue flagged with the findings
  (staff.review.send_to_review), and the candidate is told the review may still reject it.

Both originals and the re-framed file are kept; nothing else about a photo is ever changed."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import messages
from handlers import payment, texts
from handlers.base import Context, Incoming, Outcome, Reply, Services, State
from rules.credentials import scrub_credentials
from rules.text import compact
from store import queries
from store.files import StoredFile
from store.models import Photo, utcnow

log = logging.getLogger(__name__)

# Rules whose verdict is a count or a file property: a reviewer cannot find them wrong.
CERTAIN_RULES = frozenset({"file.format", "file.size", "image.resolution", "face.count"})
ACCEPT_REFRAMED = "1"
APPEAL = "申请人工审核"
APPEAL_ACTOR = "考生本人"
REFUSALS_BEFORE_APPEAL = 2


@dataclass(frozen=True)
class ReframedOffer:
    stored: StoredFile
    report: Any  # rules.photo.Report of the re-framed file (passed)
    media_id: str  # uploaded to WeChat, ready to send


def prepare(services: Services, data: bytes, report) -> ReframedOffer | None:
    """In the worker thread, beside the checks: the re-framed photo, stored and uploaded, or None."""
    if report.verdict == "pass":
        return None
    from rules.photo.reframe import can_reframe, offer

    if not can_reframe(report):
        return None
    made = offer(data, report, services.check_photo)
    if made is None:
        return None
    stored = services.photo_files.put(made.data)
    try:
        media_id = services.wechat.upload_image(made.data, "photo-reframed.jpg")
    except Exception as exc:  # noqa: BLE001 - no offer then; the refusal still goes out
        log.warning("re-framed photo upload failed: %s", scrub_credentials(str(exc)))
        return None
    return ReframedOffer(stored, made.report, media_id)


def refused(ctx: Context, stored: StoredFile, report, reframed: ReframedOffer | None, checks: dict) -> Outcome:
    """Store the refused photo and say what to fix, with the re-framed photo or the way out."""
    candidate = ctx.candidate
    earlier = _latest_photo(ctx, candidate)
    stored_report = report.to_dict()
    if reframed is not None:
        stored_report["reframed"] = {"path": reframed.stored.relative_path, "sha256": reframed.stored.sha256,
                                     "size_bytes": reframed.stored.size_bytes, "report": reframed.report.to_dict()}
    ctx.session.add(Photo(
        candidate_id=candidate.id, roster_entry_id=candidate.roster_entry_id, sha256=stored.sha256,
        path=stored.relative_path, size_bytes=stored.size_bytes, verdict=report.verdict,
        report=stored_report, status="checked", created_at=utcnow(),
    ))
    problems = "\n".join(f"{i}. {failure.message}" for i, failure in enumerate(report.failures, start=1))
    if reframed is not None:
        ctx.release()  # no row lock held while WeChat is called
        _send_image(ctx, reframed.media_id)
        ctx.reload()
        text = messages.PHOTO_REFRAMED_OFFER.format(problems=problems)
    else:
        text = messages.PHOTO_FAILED.format(problems=problems)
        if (candidate.state == State.PHOTO and _appealable(report.to_dict()) and earlier is not None
                and _appealable_photo(earlier)):
            text += "\n" + messages.PHOTO_APPEAL_OFFER
    return Outcome(Reply(text), candidate.state, checks=checks, media_path=stored.relative_path)


def handle_text(ctx: Context, msg: Incoming) -> Outcome:
    """Text at the photo step: "1" takes the re-framed photo, "申请人工审核" asks for a human look."""
    said = compact(msg.text)
    if said == ACCEPT_REFRAMED:
        return accept_reframed(ctx)
    if said == APPEAL:
        return appeal(ctx)
    return Outcome(Reply(messages.PHOTO_EXPECTED), ctx.candidate.state)


def handle_payment_text(ctx: Context, msg: Incoming) -> Outcome:
    """Text at the payment step: "1" still takes a re-framed photo offered for a newer upload; anything
    else is the payment step's."""
    if compact(msg.text) == ACCEPT_REFRAMED and _pending_offer(ctx) is not None:
        return accept_reframed(ctx)
    return payment.handle(ctx, msg)


def _pending_offer(ctx: Context) -> tuple[Photo, dict] | None:
    """The candidate's newest photo, when it was refused with a re-framed version offered."""
    latest = _latest_photo(ctx, ctx.candidate)
    if latest is None or latest.status != "checked":
        return None
    offer = (latest.report or {}).get("reframed")
    return (latest, offer) if offer else None


def accept_reframed(ctx: Context) -> Outcome:
    candidate = ctx.candidate
    pending = _pending_offer(ctx)
    if pending is None:
        return Outcome(Reply(messages.PHOTO_NO_REFRAMED), candidate.state)
    latest, offer = pending
    queries.replace_submitted_photos(ctx.session, candidate.roster_entry_id)
    report = dict(offer["report"])
    report["reframed_from"] = latest.id
    ctx.session.add(Photo(
        candidate_id=candidate.id, roster_entry_id=candidate.roster_entry_id, sha256=offer["sha256"],
        path=offer["path"], size_bytes=offer["size_bytes"], verdict="pass", report=report,
        status="submitted", created_at=utcnow(),
    ))
    outcome = payment.after_photo_passed(ctx)
    if outcome.reply.text is not None:
        outcome.reply = Reply(messages.PHOTO_REFRAMED_TAKEN + "\n" + outcome.reply.text)
    outcome.checks = {"photo": "reframed_accepted", "from_photo": latest.id}
    return outcome


def appeal(ctx: Context) -> Outcome:
    from staff.review import StaffActionError, send_to_review

    candidate = ctx.candidate
    latest, before = _two_latest_photos(ctx, candidate)
    if latest is None or before is None or not (_appealable_photo(latest) and _appealable_photo(before)):
        return Outcome(Reply(messages.PHOTO_APPEAL_NOT_AVAILABLE), candidate.state)
    try:
        forced = send_to_review(ctx.session, latest.id, APPEAL_ACTOR, appeal_flag(latest.report or {}))
    except StaffActionError as exc:
        log.info("appeal refused: %s", exc)
        return Outcome(Reply(messages.PHOTO_APPEAL_NOT_AVAILABLE), candidate.state)
    hours = ctx.settings.collection.review_hours
    if forced.paid:
        return Outcome(Reply(messages.PHOTO_APPEAL_SENT_PAID.format(review_hours=hours)), State.UNDER_REVIEW,
                       checks={"photo": "appeal", "photo_id": latest.id})
    text = messages.PHOTO_APPEAL_SENT_PAY.format(fee=texts.fee_yuan(ctx.settings),
                                                 pay_url=payment.pay_url(ctx), review_hours=hours)
    return Outcome(Reply(text), State.PAYMENT, checks={"photo": "appeal", "photo_id": latest.id})


def appeal_flag(report: dict) -> str:
    """What the reviewer reads beside the photo: the candidate asked, and what the checker found."""
    found = "；".join(f"{f.get('rule')}（测得 {f.get('value')}，限值 {f.get('threshold')}）"
                     for f in report.get("failures", []))
    return f"考生连续两次被自动检查拒绝后申请人工审核。自动检查认为：{found}"


def _appealable(report: dict) -> bool:
    rules = {f.get("rule") for f in report.get("failures", [])}
    return bool(rules) and not rules & CERTAIN_RULES


def _appealable_photo(photo: Photo) -> bool:
    return photo.status == "checked" and _appealable(photo.report or {})


def _latest_photo(ctx: Context, candidate) -> Photo | None:
    return _two_latest_photos(ctx, candidate)[0]


def _two_latest_photos(ctx: Context, candidate) -> tuple[Photo | None, Photo | None]:
    from sqlalchemy import select

    if candidate.roster_entry_id is None:
        return None, None
    rows = list(ctx.session.scalars(
        select(Photo).where(Photo.roster_entry_id == candidate.roster_entry_id, Photo.candidate_id == candidate.id)
        .order_by(Photo.id.desc()).limit(REFUSALS_BEFORE_APPEAL)))
    rows += [None] * (REFUSALS_BEFORE_APPEAL - len(rows))
    return rows[0], rows[1]


def _send_image(ctx: Context, media_id: str) -> None:
    try:
        ctx.services.wechat.send_image(ctx.candidate.openid, media_id)
    except Exception as exc:  # noqa: BLE001 - the text reply still explains; "1" still works
        log.warning("re-framed photo not sent: %s", scrub_credentials(str(exc)))
