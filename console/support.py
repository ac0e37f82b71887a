"""/staff/support: the support desk. Search, one page per candidate with its whole timeline (live while
an agent holds the conversation), take over, reply, act, hand back; admins edit the canned replies.
Every action is one call into staff.support, the functions `flask support …` uses."""
from __future__ import annotations

import io
import time
from datetime import datetime

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy.exc import NoResultFound

from console import PREFIX
from console.auth import client_address, requires, collector as _collector
from rules.identity import mask_id_number
from rules.phone import mask_phone
from staff import support
from staff.review import StaffActionError
from store.models import CannedReply, Message, Photo, utcnow

blueprint = Blueprint("console_support", __name__, url_prefix=PREFIX)

REVEAL_SECONDS = 600  # an unmasked view lasts this long on this agent's pages, then masks again
THUMBNAIL = (160, 200)


def _settings():
    return _collector().settings


def _db():
    return _collector().db


def _local(moment: datetime | None, fmt: str = "%m-%d %H:%M:%S") -> str:
    return moment.astimezone(_settings().window.tz).strftime(fmt) if moment else "-"


def _waited(since: datetime | None) -> str:
    if since is None:
        return "-"
    minutes = int((utcnow() - since).total_seconds() // 60)
    return f"{minutes // 60}小时{minutes % 60:02d}分" if minutes >= 60 else f"{minutes}分钟"


# --- search and the queue -----------------------------------------------------------------------------

@blueprint.get("/support")
@requires("support")
def desk():
    query = request.args.get("q", "").strip()
    hits, error = [], None
    with _db().read() as db_session:
        if query:
            try:
                hits = support.search(db_session, query)
            except StaffActionError as exc:
                error = str(exc)
        waiting = support.queue(db_session)
        stuck = support.stuck(db_session, _settings())
    return render_template("console/support/desk.html", query=query, hits=hits, error=error, waiting=waiting,
                           stuck=stuck, local=_local, waited=_waited, state_name=support.state_name)


# --- one candidate ----------------------------------------------------------------------------------

@blueprint.get("/support/c/<openid>")
@requires("support")
def candidate(openid: str):
    return _candidate_page(openid)


def _candidate_page(openid: str, error: str | None = None, status: int = 200):
    with _db().session() as db_session:  # the canned replies are written on first use
        try:
            file = support.candidate_file(db_session, openid, _settings())
        except StaffActionError:
            abort(404)
        canned = [(row.title, support.fill(row.text, file.candidate, _settings()))
                  for row in support.canned_replies(db_session)]
        page = render_template("console/support/candidate.html", file=file, c=file.candidate, entry=file.entry,
                               canned=canned, error=error, **_view(openid, file))
    return page, status


def _view(openid: str, file: support.CandidateFile) -> dict:
    now = utcnow()
    return dict(revealed=_revealed(openid), local=_local, waited=_waited, state_name=support.state_name,
                now=now, mine=file.candidate.agent == current_user.name, window_open=file.window.open(now),
                mask_id_number=mask_id_number, mask_phone=mask_phone, poll=_settings().support.poll_seconds,
                idle_minutes=_settings().support.idle_minutes, sms_ready=_sms_ready(),
                template_ready=bool(_settings().notifications.wechat_template_support_reply))


def _sms_ready() -> bool:
    settings = _settings()
    return settings.sms.provider == "console" or bool(settings.sms.template_support_reply)


@blueprint.get("/support/c/<openid>/live")
@requires("support")
def live(openid: str):
    """The timeline and the reply box's figures, polled by the page; 204 (htmx swaps nothing) when
    nothing changed since the stamp the page has."""
    with _db().read() as db_session:
        try:
            if request.args.get("stamp") == support.stamp(db_session, openid):
                return Response(status=204)
            file = support.candidate_file(db_session, openid, _settings())
        except (StaffActionError, NoResultFound):
            abort(404)
        page = render_template("console/support/_live.html", file=file, c=file.candidate, **_view(openid, file))
    return page


def _revealed(openid: str) -> bool:
    return session.get("support_reveal", {}).get(openid, 0) > time.time()


@blueprint.post("/support/c/<openid>/reveal")
@requires("support")
def reveal(openid: str):
    try:
        with _db().session() as db_session:
            support.reveal(db_session, openid, current_user.name, request.form.get("reason", ""), client_address())
    except StaffActionError as exc:
        return _candidate_page(openid, error=str(exc), status=400)
    shown = {key: until for key, until in session.get("support_reveal", {}).items() if until > time.time()}
    shown[openid] = time.time() + REVEAL_SECONDS
    session["support_reveal"] = shown
    flash(f"已显示完整身份证号和手机号（{REVEAL_SECONDS // 60} 分钟内有效，已记录）。")
    return redirect(url_for("console_support.candidate", openid=openid))


# --- actions: each one call into staff.support ----------------------------------------------------------

def _act(openid: str, action, done: str):
    try:
        with _db().session() as db_session:
            result = action(db_session)
    except StaffActionError as exc:
        return _candidate_page(openid, error=str(exc), status=409)
    flash(done.format(result=result) if "{result" in done else done)
    return redirect(url_for("console_support.candidate", openid=openid))


@blueprint.post("/support/c/<openid>/take")
@requires("support")
def take(openid: str):
    outbox = _collector().outbox
    return _act(openid, lambda s: support.take_over(s, openid, current_user.name, outbox),
                "已接手：机器人不再自动回复这位考生，考生已收到通知。")


@blueprint.post("/support/c/<openid>/reply")
@requires("support")
def reply(openid: str):
    outbox, text = _collector().outbox, request.form.get("text", "")
    return _act(openid, lambda s: support.reply(s, openid, current_user.name, text, outbox), "回复已提交发送。")


@blueprint.post("/support/c/<openid>/sms")
@requires("support")
def sms(openid: str):
    collector = _collector()
    return _act(openid, lambda s: support.sms(s, openid, current_user.name, collector.outbox, collector.settings),
                "短信已提交发送。")


@blueprint.post("/support/c/<openid>/hand-back")
@requires("support")
def hand_back(openid: str):
    collector = _collector()

    def action(db_session):
        if not current_user.may("admin"):  # only the agent holding it (or an admin) hands it back
            support.held_by(db_session, openid, current_user.name)
        return support.hand_back(db_session, openid, current_user.name, collector.outbox, collector.settings)
    return _act(openid, action, "已交还机器人，考生已收到通知。")


@blueprint.post("/support/c/<openid>/resolve")
@requires("support")
def resolve(openid: str):
    collector = _collector()
    return _act(openid, lambda s: support.resolve(s, openid, current_user.name, collector.outbox, collector.settings),
                "已标记为解决。")


@blueprint.post("/support/c/<openid>/send-back")
@requires("support")
def send_back(openid: str):
    outbox, step = _collector().outbox, request.form.get("step", "")
    return _act(openid, lambda s: support.send_back(s, openid, step, current_user.name, outbox),
                "已退回，考生已收到通知。")


@blueprint.post("/support/c/<openid>/phone")
@requires("support")
def phone(openid: str):
    outbox, number = _collector().outbox, request.form.get("phone", "")
    return _act(openid, lambda s: support.correct_phone(s, openid, number, current_user.name, outbox),
                "手机号已更正，考生已收到通知。")


@blueprint.post("/support/c/<openid>/unbind")
@requires("support")
def unbind(openid: str):
    return _act(openid, lambda s: support.unbind(s, openid, current_user.name), "已解除绑定，该微信号将从头开始。")


@blueprint.post("/support/c/<openid>/force-review")
@requires("support")
def force_review(openid: str):
    outbox = _collector().outbox
    try:
        photo_id = int(request.form.get("photo_id", ""))
    except ValueError:
        return _candidate_page(openid, error="没有指定照片", status=400)
    why = request.form.get("why", "")
    return _act(openid, lambda s: support.send_to_review(s, openid, photo_id, current_user.name, why, outbox),
                "照片已转人工审核，考生已收到通知。")


# --- photo thumbnails: only through this route ------------------------------------------------------------

@blueprint.get("/support/photo/<int:photo_id>/thumb")
@requires("support")
def thumbnail(photo_id: int):
    with _db().read() as db_session:
        photo = db_session.get(Photo, photo_id)
        path = photo.path if photo is not None else None
    return _thumbnail(path)


@blueprint.get("/support/message/<int:message_id>/thumb")
@requires("support")
def message_thumbnail(message_id: int):
    """A photo the candidate sent while an agent held the conversation (kept, never checked)."""
    with _db().read() as db_session:
        message = db_session.get(Message, message_id)
        path = message.media_path if message is not None else None
    return _thumbnail(path)


def _thumbnail(path: str | None) -> Response:
    from PIL import Image

    if path is None:
        abort(404)
    try:
        data = _collector().services.photo_files.read(path)
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail(THUMBNAIL)
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG", quality=80)
    except (FileNotFoundError, OSError):
        abort(404)
    return Response(out.getvalue(), mimetype="image/jpeg", headers={"Cache-Control": "private, no-store"})


# --- canned replies (admins) ----------------------------------------------------------------------------

@blueprint.get("/support/canned")
@requires("admin")
def canned():
    return _canned_page()


@blueprint.post("/support/canned")
@requires("admin")
def save_canned():
    form = request.form
    try:
        reply_id = int(form["id"]) if form.get("id", "").strip() else None
        with _db().session() as db_session:
            saved = support.save_canned_reply(db_session, current_user.name, form.get("title", ""),
                                              form.get("text", ""), reply_id, active=form.get("active", "1") == "1")
            title = saved.title
    except StaffActionError as exc:
        return _canned_page(error=str(exc), form=form), 400
    flash(f"已保存常用回复“{title}”。")
    return redirect(url_for("console_support.canned"))


def _canned_page(error: str | None = None, form=None):
    with _db().session() as db_session:
        support.canned_replies(db_session)
        rows = list(db_session.query(CannedReply).order_by(CannedReply.position, CannedReply.id))
        page = render_template("console/support/canned.html", rows=rows, error=error, form=form or {})
    return page
