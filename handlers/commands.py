"""Commands that work at any step: 帮助, 进度, 重新开始, 人工, 查看照片."""
from __future__ import annotations

import messages
from handlers import payment, review, texts, window
from handlers.base import Context, Incoming, Outcome, Reply, State
from payments.orders import end_collection
from store import queries
from store.models import utcnow

PAID_STATES = (State.UNDER_REVIEW, State.APPROVED)


def help_(ctx: Context, msg: Incoming) -> Outcome:
    if window.applies(ctx):  # no step can be taken now: only the window's state and what still works
        return window.closed_reply(ctx)
    return Outcome(Reply(texts.step_help(ctx.settings, ctx.candidate.state)), ctx.candidate.state)


def progress(ctx: Context, msg: Incoming) -> Outcome:
    state = ctx.candidate.state
    step = messages.PROGRESS_STEPS.get(state, state)
    if window.applies(ctx):
        where = step if state == State.WELCOME else messages.OUTSIDE_WINDOW_PROGRESS.format(step=step)
        text = texts.join(window.state_text(ctx), messages.PROGRESS.format(step=where, detail="").strip(),
                          messages.OUTSIDE_WINDOW_COMMANDS)
        return Outcome(Reply(text), state)
    return Outcome(Reply(messages.PROGRESS.format(step=step, detail=progress_detail(ctx))), state)


def progress_detail(ctx: Context) -> str:
    state = ctx.candidate.state
    if state == State.UNDER_REVIEW:
        return review.review_status(ctx)
    if state == State.APPROVED:
        return messages.APPROVED_STATUS
    if state == State.PAYMENT:
        return payment.pending_text(ctx)
    detail = texts.step_help(ctx.settings, state).split("\n\n")[0]
    rejected = rejection_reason(ctx)
    return texts.join(messages.PROGRESS_LAST_REJECTION.format(reason=rejected) if rejected else "", detail)


def rejection_reason(ctx: Context) -> str | None:
    if ctx.candidate.roster_entry_id is None:
        return None
    photo = queries.latest_roster_photo(ctx.session, ctx.candidate.roster_entry_id, ("rejected", "submitted"))
    return photo.review_reason if photo is not None and photo.status == "rejected" else None


def restart(ctx: Context, msg: Incoming) -> Outcome:
    candidate = ctx.candidate
    paid = candidate.roster_entry_id is not None and queries.paid_order(ctx.session, candidate.roster_entry_id)
    if candidate.state in PAID_STATES or paid:
        return Outcome(Reply(messages.RESTART_AFTER_PAYMENT.format(**texts.office_fields(ctx.settings))),
                       candidate.state)
    end_collection(ctx.session, candidate.openid, candidate.roster_entry, "restart")
    candidate.forget_identity()
    text = texts.join(messages.RESTARTED, texts.ask_institution(ctx.settings))
    return Outcome(Reply(text), State.INSTITUTION)


def human(ctx: Context, msg: Incoming) -> Outcome:
    if ctx.settings.support.mode == "wechat_kf":  # WeChat's own customer-service system takes it from here
        return Outcome(Reply(transfer_to_kf=True), ctx.candidate.state, checks={"human_requested": "wechat_kf"})
    ctx.candidate.human_requested_at = utcnow()
    text = messages.HUMAN_REQUESTED_WINDOW_SHUT if window.applies(ctx) else messages.HUMAN_REQUESTED
    return Outcome(Reply(text.format(**texts.office_fields(ctx.settings))), ctx.candidate.state,
                   checks={"human_requested": True})


def view_photo(ctx: Context, msg: Incoming) -> Outcome:
    candidate = ctx.candidate
    photo = None
    if candidate.state == State.APPROVED and candidate.roster_entry_id is not None:
        photo = queries.latest_roster_photo(ctx.session, candidate.roster_entry_id, ("approved",))
    if photo is None:
        return Outcome(Reply(messages.NO_APPROVED_PHOTO), candidate.state)
    if not photo.path:  # its file went at the end of its retention period (staff/privacy.py)
        return Outcome(Reply(messages.PHOTO_DELETED.format(**texts.office_fields(ctx.settings))), candidate.state)
    data = ctx.services.photo_files.read(photo.path)
    ctx.release()
    media_id = ctx.services.wechat.upload_image(data, f"photo-{photo.id}.jpg")
    return Outcome(Reply(image_media_id=media_id), candidate.state)
