"""Step 9: the photo. Downloaded with the media API, stored untouched, checked at once.

When download and checks do not fit the reply budget, the candidate is told the photo is being
checked and the verdict follows as a customer-service message.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import messages
from handlers import payment, photo_offers
from handlers.base import Context, Incoming, Outcome, Reply, Services, State
from rules.credentials import scrub_credentials
from store import queries
from store.files import StoredFile
from store.models import Photo, utcnow

log = logging.getLogger(__name__)

ACCEPTING_STATES = (State.PHOTO, State.PAYMENT)


class DownloadFailed(Exception):
    pass


class PhotoTooLarge(Exception):
    pass


@dataclass(frozen=True)
class CheckedPhoto:
    stored: StoredFile
    report: Any  # rules.photo.Report
    reframed: Any = None  # handlers.photo_offers.ReframedOffer: the re-framed photo offered with a refusal


def handle(ctx: Context, msg: Incoming) -> Outcome:
    job = ctx.services.submit(fetch_and_check, ctx.services, msg.media_id, ctx.settings.photo.max_file_bytes)
    remaining = ctx.settings.wechat.reply_budget_seconds - (time.monotonic() - ctx.started)
    ctx.release()
    try:
        job.exception(timeout=max(0.0, remaining))
    except FutureTimeout:
        ctx.reload()
        ctx.defer(job, "photo")
        return Outcome(Reply(messages.PHOTO_CHECKING), ctx.candidate.state,
                       checks={"photo": "deferred", "media_id": msg.media_id})
    ctx.reload()
    return apply_finished(ctx, job)


def fetch_and_check(services: Services, media_id: str, max_bytes: int) -> CheckedPhoto:
    """Runs in a worker thread: no database here, only the download, the file store and the rules."""
    try:
        data = services.wechat.download_media(media_id)
    except Exception as exc:
        raise DownloadFailed(str(exc)) from exc
    if len(data) > max_bytes:  # not even worth storing
        raise PhotoTooLarge(len(data))
    stored = services.photo_files.put(data)
    report = services.check_photo(data)
    return CheckedPhoto(stored=stored, report=report, reframed=photo_offers.prepare(services, data, report))


def redo(services: Services, settings, checks: dict) -> Future:
    """The download and checks again, here and now, for a deferred check whose process died.
    WeChat keeps an upload's media for 3 days."""
    job: Future = Future()
    try:
        job.set_result(fetch_and_check(services, checks["media_id"], settings.photo.max_file_bytes))
    except Exception as exc:  # handed to apply_later like the original job's error
        job.set_exception(exc)
    return job


def apply_later(ctx: Context, job: Future) -> Outcome:
    if ctx.candidate.state not in ACCEPTING_STATES:
        log.info("photo verdict dropped: candidate moved on to %s", ctx.candidate.state)
        # Said, not silently dropped: the candidate is waiting for this photo's verdict.
        return Outcome(Reply(messages.PHOTO_NOT_USED.format(step=messages.PROGRESS_STEPS.get(ctx.candidate.state, ""))),
                       ctx.candidate.state)
    return apply_finished(ctx, job)


def apply_finished(ctx: Context, job: Future) -> Outcome:
    try:
        result = job.result()
    except DownloadFailed as exc:
        return download_failed(ctx, exc)
    except PhotoTooLarge as exc:
        text = messages.PHOTO_TOO_LARGE.format(limit_mb=ctx.settings.photo.max_file_bytes // (1024 * 1024))
        return Outcome(Reply(text), ctx.candidate.state, checks={"photo": "too_large", "bytes": exc.args[0]})
    return apply(ctx, result)


def download_failed(ctx: Context, exc: Exception) -> Outcome:
    error = scrub_credentials(str(exc))  # an unreachable API's URL carries the access token
    log.warning("photo download failed: %s", error)
    return Outcome(Reply(messages.PHOTO_DOWNLOAD_FAILED), ctx.candidate.state,
                   checks={"photo": "download_failed", "error": error[:200]})


def apply(ctx: Context, result: CheckedPhoto) -> Outcome:
    candidate = ctx.candidate
    report = result.report
    passed = report.verdict == "pass"
    checks = {"photo": report.to_dict()}
    if not passed:
        return payment.earlier_photo_still_payable(
            ctx, photo_offers.refused(ctx, result.stored, report, result.reframed, checks))
    queries.replace_submitted_photos(ctx.session, candidate.roster_entry_id)
    ctx.session.add(Photo(
        candidate_id=candidate.id, roster_entry_id=candidate.roster_entry_id, sha256=result.stored.sha256,
        path=result.stored.relative_path, size_bytes=result.stored.size_bytes, verdict=report.verdict,
        report=report.to_dict(), status="submitted", created_at=utcnow(),
    ))
    outcome = payment.after_photo_passed(ctx)
    outcome.checks = checks
    outcome.media_path = result.stored.relative_path
    return outcome
