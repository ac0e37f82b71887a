"""/staff/reminders: reminder campaigns (admins). Compose (segment, level, text), see the per-channel counts and
the text as a real recipient reads it, send now or at a set time, pause, resume, cancel, watch the progress
(htmx polling), download the delivery report (masked unless revealed with a reason, audited). The logic is
staff/reminders.py, the same as `flask remind`."""
from __future__ import annotations

from datetime import date, datetime, timezone

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from console import PREFIX
from console.auth import client_address, requires, collector
from staff import reminders
from staff.reminders import Audience, ReminderError

blueprint = Blueprint("console_reminders", __name__, url_prefix=PREFIX)


def _page_context() -> dict:
    settings = collector().settings
    return {"segments": reminders.SEGMENTS, "channels": reminders.CHANNELS, "reasons": reminders.REASONS,
            "statuses": reminders.STATUSES, "levels": [level.name for level in settings.collection.levels],
            "placeholders": reminders.PLACEHOLDERS, "tz": settings.window.tz,
            "stuck_hours": settings.reminders.stuck_hours}


def _audience_from_form() -> Audience:
    segment = request.form.get("segment", "")
    hours = request.form.get("stuck_hours", "").strip()
    try:
        stuck_hours = int(hours) if hours and segment == "stuck" else None
    except ValueError as exc:
        raise ReminderError("停留小时数应为整数。") from exc
    ids: tuple[str, ...] = ()
    if segment == "id_list":
        ids = reminders.parse_id_numbers(request.form.get("id_numbers", ""), date.today())
    return Audience(segment, request.form.get("level") or None, stuck_hours, ids)


def _send_at_from_form() -> datetime | None:
    text = request.form.get("send_at", "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReminderError("定时发送的时间格式不对。") from exc
    return moment.replace(tzinfo=collector().settings.window.tz).astimezone(timezone.utc)


@blueprint.get("/reminders")
@requires("admin")
def reminders_page():
    with collector().db.read() as session:
        campaigns = reminders.list_campaigns(session)
    return render_template("console/reminders/list.html", campaigns=campaigns, form={}, **_page_context())


@blueprint.post("/reminders/preview")
@requires("admin")
def preview():
    """The compose form's live preview (htmx): per-channel counts and the text for a real recipient."""
    try:
        audience = _audience_from_form()
        with collector().db.read() as session:
            shown = reminders.preview(session, collector().settings, audience, request.form.get("text", ""))
    except ReminderError as error:
        return render_template("console/reminders/_preview.html", error=str(error), **_page_context())
    return render_template("console/reminders/_preview.html", shown=shown, error=None, **_page_context())


@blueprint.post("/reminders")
@requires("admin")
def create():
    try:
        audience = _audience_from_form()
        with collector().db.session() as session:
            campaign = reminders.create(session, collector().settings, audience, request.form.get("text", ""),
                                        current_user.name, send_at=_send_at_from_form(), ip=client_address())
            campaign_id = campaign.id
    except ReminderError as error:
        flash(str(error))
        with collector().db.read() as session:
            campaigns = reminders.list_campaigns(session)
        return render_template("console/reminders/list.html", campaigns=campaigns, form=request.form,
                               **_page_context()), 400
    return redirect(url_for("console_reminders.campaign_page", campaign_id=campaign_id))


@blueprint.get("/reminders/<int:campaign_id>")
@requires("admin")
def campaign_page(campaign_id: int):
    settings = collector().settings
    with collector().db.read() as session:
        try:
            campaign = reminders.get(session, campaign_id)
        except ReminderError:
            abort(404)
        shown = reminders.preview(session, settings, reminders.audience_of(campaign), campaign.text) \
            if campaign.status in ("draft", "scheduled") else None
        found = reminders.progress(session, settings, campaign_id)
        session.expunge(campaign)
    return render_template("console/reminders/campaign.html", campaign=campaign, shown=shown, progress=found,
                           **_page_context())


@blueprint.get("/reminders/<int:campaign_id>/progress")
@requires("admin")
def progress(campaign_id: int):
    with collector().db.read() as session:
        try:
            found = reminders.progress(session, collector().settings, campaign_id)
        except ReminderError:
            abort(404)
    return render_template("console/reminders/_progress.html", progress=found, campaign_id=campaign_id,
                           **_page_context())


ACTIONS = {"pause": (reminders.pause, "已暂停。"), "resume": (reminders.resume, "继续发送。"),
           "cancel": (reminders.cancel, "已取消，不再发送。")}


@blueprint.post("/reminders/<int:campaign_id>/<action>")
@requires("admin")
def change(campaign_id: int, action: str):
    app = collector()
    try:
        with app.db.session() as session:
            if action == "send":
                campaign = reminders.send(session, app.settings, campaign_id, current_user.name, ip=client_address())
                done = "已开始发送。" if campaign.status == "sending" else "已设定定时发送。"
            elif action in ACTIONS:
                function, done = ACTIONS[action]
                campaign = function(session, campaign_id, current_user.name, ip=client_address())
            else:
                abort(404)
            if campaign.status in ("sending", "scheduled"):
                app.db.after_commit(session, lambda: app.jobs.enqueue("remind", campaign_id))
    except ReminderError as error:
        flash(str(error))
    else:
        flash(f"提醒活动 {campaign_id}：{done}")
    return redirect(url_for("console_reminders.campaign_page", campaign_id=campaign_id))


@blueprint.post("/reminders/<int:campaign_id>/report.csv")
@requires("admin")
def report(campaign_id: int):
    """The delivery report; with a reason, unmasked (audited either way)."""
    reason = request.form.get("reason", "").strip() or None
    try:
        with collector().db.session() as session:
            chunks = list(reminders.report_csv(session, collector().settings, campaign_id, current_user.name,
                                               reason, ip=client_address()))
    except ReminderError:
        abort(404)
    name = f"reminder-{campaign_id}{'-unmasked' if reason else ''}.csv"
    return Response(chunks, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f"attachment; filename={name}"})
