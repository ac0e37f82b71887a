"""/staff/review: the reviewers' queue and the one-photo screen (keyboard first), and for admins the
preset reasons, the checker's overridden refusals and the second-look disagreements. Every decision
is one call into staff.review, the same functions `flask review …` uses."""
from __future__ import annotations

import mimetypes
from datetime import datetime, timedelta

from flask import (Blueprint, Response, abort, flash, redirect, render_template, request, url_for)
from flask_login import current_user
from sqlalchemy import func, select

from console import PREFIX
from console.auth import audit_event, requires, collector as _collector
from staff import review, review_quality
from staff.review import FIRST, SECOND, StaffActionError
from store.models import Photo, SecondReview, utcnow

blueprint = Blueprint("console_review", __name__, url_prefix=PREFIX)

RULE_NAMES = {
    "file.format": "文件格式", "file.size": "文件大小", "image.resolution": "分辨率", "image.aspect": "宽高比",
    "image.color": "彩色", "face.count": "人脸数量", "background.color": "背景颜色", "background.uniform": "背景均匀",
    "background.contrast": "背景对比", "head.size": "头部大小", "head.position": "头部位置", "face.pose": "头部姿态",
    "face.eyes": "双眼睁开", "face.mouth": "嘴巴闭合", "face.glasses": "眼镜", "quality.sharpness": "清晰度",
    "quality.exposure": "曝光", "quality.color": "偏色",
}
STATUS_NAMES = review.PHOTO_STATUS
VERDICT_NAMES = {"approved": "通过", "rejected": "不通过"}


def _settings():
    return _collector().settings


def _db():
    return _collector().db


def _local(moment: datetime | None) -> str:
    return moment.astimezone(_settings().window.tz).strftime("%m-%d %H:%M") if moment else "-"


def _left(seconds: float) -> str:
    sign, seconds = ("超时 " if seconds <= 0 else ""), abs(int(seconds))
    return f"{sign}{seconds // 3600}小时{seconds % 3600 // 60:02d}分"


@blueprint.app_template_global("review_rule_name")
def rule_name(rule: str) -> str:
    return f"{RULE_NAMES.get(rule, rule)}（{rule}）"


# --- the queue --------------------------------------------------------------------------------------

@blueprint.get("/review")
@requires("reviewer")
def queue():
    now = utcnow()
    hours = _settings().collection.review_hours
    with _db().read() as session:
        items = review.review_queue(session, hours, now)
        seconds = [item for item in review.second_review_queue(session, hours)
                   if item.first_reviewer != current_user.name]
        undoable = _undoable(session, now)
    return render_template("console/review/queue.html", items=items, second_count=len(seconds), now=now,
                           left=_left, local=_local, undoable=undoable)


@blueprint.get("/review/next")
@requires("reviewer")
def next_photo():
    with _db().session() as session:
        item = review.next_photo(session, current_user.name, _settings().review, _settings().collection.review_hours)
    if item is None:
        flash("审核队列已空，辛苦了。")
        return redirect(url_for("console_review.queue"))
    return redirect(url_for("console_review.photo", photo_id=item.photo_id))


# --- one photo ----------------------------------------------------------------------------------------

@blueprint.get("/review/photo/<int:photo_id>")
@requires("reviewer")
def photo(photo_id: int):
    now = utcnow()
    settings = _settings()
    with _db().session() as session:
        try:
            screen = review.photo_screen(session, photo_id)
        except StaffActionError:
            abort(404)
        round_, held_by = _take(session, photo_id, now)
        audit_event(session, "review.view", f"photo:{photo_id}", f"round {round_ or '-'}")
        undoable = _undoable(session, now)
        reasons = review.reject_reasons(session)
        item = _queue_item(session, photo_id, round_)
        page = render_template(
            "console/review/photo.html", screen=screen, photo=screen.photo, entry=screen.entry, round=round_,
            held_by=held_by, item=item, reasons=reasons, undoable=undoable, now=now, left=_left, local=_local,
            report=screen.photo.report or {}, status_names=STATUS_NAMES, verdict_names=VERDICT_NAMES,
            grace=settings.review.undo_seconds)
    return page


def _take(session, photo_id: int, now: datetime) -> tuple[str | None, str | None]:
    """(round the reviewer may decide, who else holds it): claims the photo for the current reviewer
    when it is in a queue and free; (None, None) for a photo that is not waiting for anyone."""
    hours = _settings().collection.review_hours
    lease_until = now + _lease()
    for round_, items in ((FIRST, review.review_queue(session, hours, now)),
                          (SECOND, review.second_review_queue(session, hours))):
        item = next((item for item in items if item.photo_id == photo_id), None)
        if item is None:
            continue
        if round_ == SECOND and item.first_reviewer == current_user.name:
            return None, None
        if review.claim(session, photo_id, round_, current_user.name, now, lease_until):
            return round_, None
        return None, item.claimed_by
    return None, None


def _lease() -> timedelta:
    return timedelta(minutes=_settings().review.claim_minutes)


def _queue_item(session, photo_id: int, round_: str | None):
    if round_ is None:
        return None
    hours = _settings().collection.review_hours
    items = review.review_queue(session, hours) if round_ == FIRST else review.second_review_queue(session, hours)
    return next((item for item in items if item.photo_id == photo_id), None)


def _undoable(session, now: datetime):
    decision = review.last_undoable(session, current_user.name, now)
    if decision is None:
        return None
    entry_name = review.photo_screen(session, decision.photo_id).entry.name
    return {"id": decision.id, "photo_id": decision.photo_id, "verdict": VERDICT_NAMES[decision.verdict],
            "name": entry_name, "seconds": max(0, int((decision.undo_until - now).total_seconds()))}


@blueprint.post("/review/photo/<int:photo_id>/approve")
@requires("reviewer")
def approve(photo_id: int):
    return _decide(photo_id, "approved")


@blueprint.post("/review/photo/<int:photo_id>/reject")
@requires("reviewer")
def reject(photo_id: int):
    return _decide(photo_id, "rejected")


def _decide(photo_id: int, verdict: str):
    form = request.form
    settings = _settings()
    try:
        with _db().session() as session:
            if form.get("round") == SECOND:
                review.second_decide(session, photo_id, current_user.name, verdict, preset=form.get("preset") or None,
                                     note=form.get("note"))
                done = f"已复核：{VERDICT_NAMES[verdict]}。"
            else:
                decided = review.decide(
                    session, _collector().outbox, photo_id, current_user.name, verdict,
                    preset=form.get("preset") or None, note=form.get("note"), wrong_rules=form.getlist("wrong_rule"),
                    grace_seconds=settings.review.undo_seconds, second_share=settings.review.second_review_share,
                    require_claim=True)
                done = f"{decided.entry.name}：{VERDICT_NAMES[verdict]}。"
    except StaffActionError as error:
        flash(f"未保存：{error}")
        return redirect(url_for("console_review.photo", photo_id=photo_id))
    flash(done)
    return redirect(url_for("console_review.next_photo"))


@blueprint.post("/review/undo/<int:decision_id>")
@requires("reviewer")
def undo(decision_id: int):
    try:
        with _db().session() as session:
            undone = review.undo(session, decision_id, current_user.name)
            photo_id, name = undone.photo.id, undone.entry.name
    except StaffActionError as error:
        flash(f"无法撤销：{error}")
        return redirect(url_for("console_review.queue"))
    flash(f"已撤销对 {name} 的审核，考生未收到任何通知。")
    return redirect(url_for("console_review.photo", photo_id=photo_id))


@blueprint.post("/review/photo/<int:photo_id>/release")
@requires("reviewer")
def release(photo_id: int):
    with _db().session() as session:
        review.release(session, photo_id, current_user.name)
    flash(f"照片 {photo_id} 已放回队列。")
    return redirect(url_for("console_review.queue"))


# --- photo bytes: only through these routes, never a public URL ----------------------------------------

@blueprint.get("/review/photo/<int:photo_id>/image")
@requires("reviewer")
def image(photo_id: int):
    data = _photo_bytes(photo_id)
    return Response(data, mimetype=_image_type(data))


@blueprint.get("/review/photo/<int:photo_id>/explain")
@requires("reviewer")
def explain(photo_id: int):
    """The checker's annotated picture, drawn now into memory (never written beside the photo)."""
    from rules.photo.explain import explain as draw

    _, png = draw(_photo_bytes(photo_id), _settings().photo)
    return Response(png, mimetype="image/png")


def _photo_bytes(photo_id: int) -> bytes:
    with _db().session() as session:
        photo = session.get(Photo, photo_id)
        path = photo.path if photo is not None else None
    if path is None:
        abort(404)
    try:
        return _collector().services.photo_files.read(path)
    except FileNotFoundError:
        abort(404)


def _image_type(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG"):
        return "image/png"
    return mimetypes.types_map.get(".bin", "application/octet-stream")


# --- admins: preset reasons, overrides, second-look disagreements ----------------------------------------

@blueprint.get("/review/reasons")
@requires("admin")
def reasons():
    return _reasons_page()


@blueprint.post("/review/reasons")
@requires("admin")
def save_reason():
    form = request.form
    try:
        position = int(form["position"]) if form.get("position", "").strip() else None
        with _db().session() as session:
            saved = review.save_reject_reason(session, current_user.name, form.get("code", ""), form.get("label", ""),
                                              form.get("text", ""), position=position,
                                              active=form.get("active", "1") == "1")
            label = saved.label
    except (StaffActionError, ValueError) as error:
        return _reasons_page(error=str(error) if isinstance(error, StaffActionError) else "顺序应为整数",
                             form=form), 400
    flash(f"已保存原因“{label}”。")
    return redirect(url_for("console_review.reasons"))


def _reasons_page(error: str | None = None, form=None):
    with _db().read() as session:
        listed = review.reject_reasons(session, include_retired=True)
        page = render_template("console/review/reasons.html", reasons=listed, error=error, form=form or {})
    return page


@blueprint.get("/review/overrides")
@requires("admin")
def overrides():
    with _db().read() as session:
        listed = review.overrides(session)
        counts: dict[str, int] = {}
        for override in listed:
            for rule in override.decision.overridden_rules or []:
                counts[rule] = counts.get(rule, 0) + 1
        page = render_template("console/review/overrides.html", overrides=listed, local=_local,
                               counts=sorted(counts.items(), key=lambda pair: -pair[1]))
    return page


@blueprint.get("/review/quality")
@requires("admin")
def quality():
    with _db().read() as session:
        figures = review_quality.reviewer_figures(session)
        disagreements = review_quality.disagreements(session)
        waiting = session.scalar(select(func.count()).select_from(SecondReview)
                                 .where(SecondReview.second_decision_id.is_(None)))
        page = render_template("console/review/quality.html", figures=figures, disagreements=disagreements,
                               waiting=waiting, local=_local, verdict_names=VERDICT_NAMES,
                               share=_settings().review.second_review_share)
    return page
