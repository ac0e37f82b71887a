"""Sign-in and sign-out of the console, role checks, idle expiry and the sign-in rate limits.

Failed sign-ins are limited twice: moving-window counters (the `limits` library, which Flask-Limiter is
built on) per account name and per client address (Redis when redis_url is set, else this process's
memory), and an account lockout kept in the database (staff.accounts.authenticate) after [console]
lockout_failures failures in a row.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from datetime import datetime, timedelta, timezone

import limits
from flask import Blueprint, Flask, current_app, redirect, render_template, request, session, url_for
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from flask_login import LoginManager, current_user, login_user, logout_user
from redis.exceptions import RedisError

from console import PREFIX, is_console_request
from staff import accounts, audit

blueprint = Blueprint("console_auth", __name__, url_prefix=PREFIX)
log = logging.getLogger(__name__)

# Pages an anonymous visitor may open; every other /staff/ URL sends them to sign in first.
PUBLIC_ENDPOINTS = frozenset({"console_auth.login", "console.static"})
LAST_SEEN = "console_seen"
# A page's automatic refreshes (htmx polling) send this header: they are not a person at work, so they do
# not keep an idle session alive. `hx-headers='{"X-Console-Poll": "1"}'` on the polling element.
POLL_HEADER = "X-Console-Poll"


def configure(app: Flask, login_manager: LoginManager) -> None:
    settings = app.config["SETTINGS"]
    login_manager.login_view = "console_auth.login"
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_to_sign_in)
    # Only the counters are used (failures are counted by hand, see _throttled), so no Flask-Limiter extension:
    # its request hooks would run on every webhook request for nothing. A Redis that hangs must not hang the
    # sign-in page: short socket timeouts.
    redis_options = {"socket_timeout": 1, "socket_connect_timeout": 1} if settings.redis_url else {}
    storage = storage_from_string(settings.redis_url or "memory://", **redis_options)
    app.extensions["console_limiter"] = MovingWindowRateLimiter(storage)
    app.before_request(_guard_console)


def requires(*roles: str):
    """Lets the view run for a signed-in account of one of these roles (admin passes every check; no
    roles: any signed-in account). Anonymous → the sign-in page; another role → a 403 page."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return _to_sign_in()
            if roles and not current_user.may(*roles):
                return forbidden()
            return view(*args, **kwargs)
        return guarded
    return decorate


def forbidden():
    return render_template("console/error.html", title="没有权限",
                           message="你的账号无权打开这个页面。如需权限，请联系管理员。"), 403


def client_address() -> str | None:
    return request.remote_addr


def audit_event(db_session, action: str, target: str, detail: str | None = None, reason: str | None = None):
    """An audit event by the signed-in staff member, from this request's address."""
    return audit.record(db_session, current_user.name, action, target, detail, reason=reason, ip=client_address())


def collector():
    return current_app.extensions["collector"]


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("console_home.home"))
        return _login_page(notice=_NOTICES.get(request.args.get("why", "")))
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    if not name or not password:
        return _login_page(error="请输入账号和密码。", name=name), 400
    settings = collector().settings.console
    retry_at = _throttled()
    if retry_at is not None:
        with collector().db.session() as db_session:
            accounts.record_refusal(db_session, name, "rate limited", client_address())
        return _login_page(error=f"登录尝试过于频繁，请于 {_local_clock(retry_at)} 后再试。", name=name), 429
    with collector().db.session() as db_session:
        outcome = accounts.authenticate(db_session, name, password, client_address(),
                                        settings.lockout_failures, settings.lockout_minutes)
    if outcome.ok:
        return _signed_in(outcome.user)
    if outcome.locked_until is None:
        _count_failure()
        return _login_page(error="账号或密码不对，请重新输入。", name=name), 401
    return _login_page(error=f"密码错误次数过多，账号已锁定，请于 {_local_clock(outcome.locked_until)} 后再试。",
                       name=name), 429


@blueprint.post("/logout")
def logout():
    if current_user.is_authenticated:
        with collector().db.session() as db_session:
            accounts.record_sign_out(db_session, current_user, "signed out", client_address())
    _end_session()
    return redirect(url_for("console_auth.login", why="signed_out"))


_NOTICES = {
    "idle": "长时间未操作，已自动退出，请重新登录。",
    "signed_out": "已退出。",
    "required": "请先登录。",
}


def _login_page(error: str | None = None, notice: str | None = None, name: str = ""):
    return render_template("console/login.html", error=error, notice=notice, name=name)


def _signed_in(user: accounts.StaffIdentity):
    session.clear()  # nothing from before the sign-in carries over
    login_user(user)
    session[LAST_SEEN] = time.time()
    return redirect(_safe_next(request.args.get("next")) or url_for("console_home.home"))


def _safe_next(target: str | None) -> str | None:
    """Only a console path of this site: never another host (an open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _end_session() -> None:
    logout_user()
    session.clear()


def _load_user(session_id: str):
    with collector().db.session() as db_session:
        return accounts.load_identity(db_session, session_id)


def _to_sign_in():
    if request.headers.get("HX-Request"):
        # htmx swaps responses into the page; a redirect to the sign-in form would land inside it.
        return "", 401, {"HX-Redirect": url_for("console_auth.login", why="required")}
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("console_auth.login", why="required", next=target))


def _guard_console():
    """Runs before every request: under /staff/, ends idle sessions and sends anonymous visitors to sign in."""
    if not is_console_request() or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return _to_sign_in()
    idle = timedelta(minutes=collector().settings.console.idle_minutes).total_seconds()
    now = time.time()
    if now - session.get(LAST_SEEN, 0) > idle:
        with collector().db.session() as db_session:
            accounts.record_sign_out(db_session, current_user, "idle", client_address())
        _end_session()
        if request.headers.get("HX-Request"):
            return "", 401, {"HX-Redirect": url_for("console_auth.login", why="idle")}
        return redirect(url_for("console_auth.login", why="idle"))
    if not request.headers.get(POLL_HEADER):
        session[LAST_SEEN] = now
    return None


def _limits() -> list[tuple[limits.RateLimitItem, str, str]]:
    settings = collector().settings.console
    # The typed name may be a password typed in the wrong field: the counter's key is its hash.
    account = hashlib.sha256(request.form.get("name", "").strip().encode()).hexdigest()
    return [(limits.parse(settings.account_failure_limit), "account", account),
            (limits.parse(settings.address_failure_limit), "address", client_address() or "-")]


def _throttled() -> datetime | None:
    """When the account's or the address's failure budget is spent: the moment it frees up again. With
    Redis unreachable the counters are skipped (logged); the account lockout in the database still holds."""
    limiter = current_app.extensions["console_limiter"]
    prefix = collector().settings.console.rate_limit_prefix
    try:
        for item, kind, key in _limits():
            if not limiter.test(item, prefix, kind, key):
                reset = limiter.get_window_stats(item, prefix, kind, key).reset_time
                return datetime.fromtimestamp(reset, timezone.utc)
    except RedisError as error:
        log.warning("sign-in rate limits skipped, Redis unreachable: %s", error)
    return None


def _count_failure() -> None:
    limiter = current_app.extensions["console_limiter"]
    prefix = collector().settings.console.rate_limit_prefix
    try:
        for item, kind, key in _limits():
            limiter.hit(item, prefix, kind, key)
    except RedisError as error:
        log.warning("failed sign-in not counted, Redis unreachable: %s", error)


def _local_clock(moment: datetime) -> str:
    """HH:MM in the office's time zone, rounded up so "try again at" is never a minute early."""
    local = moment.astimezone(collector().settings.window.tz)
    rounded = datetime.fromtimestamp(math.ceil(local.timestamp() / 60) * 60, local.tzinfo)
    return rounded.strftime("%H:%M") if rounded.date() == datetime.now(local.tzinfo).date() \
        else rounded.strftime("%m月%d日 %H:%M")
