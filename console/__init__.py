"""The exam office's web console under /staff/: server-rendered pages over the functions in staff/.

`register_console(app)` sets up sign-in (Flask-Login), CSRF (Flask-WTF, on /staff/ only: the WeChat
webhook, /pay/notify and the candidates' pay pages are not forms of ours), the sign-in rate limits
(the `limits` library), the session cookie (opened under /staff/ only), idle expiry, the error pages, and
every blueprint named in BLUEPRINT_MODULES (each module exposes `blueprint`).
"""
from __future__ import annotations

import importlib

from flask import Blueprint, Flask, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from rules.identity import mask_personal_data

BLUEPRINT_MODULES = (
    "console.auth",
    "console.home",
    "console.audit",
    "console.users",
    "console.review",
    "console.roster",
    "console.handover",
    "console.overview",
    "console.support",
    "console.reminders",
)

PREFIX = "/staff"

# Templates (console/templates/console/*.html) and static files (/staff/static/…, url_for("console.static",
# filename=…)) of every console page.
assets = Blueprint("console", __name__, static_folder="static", static_url_path="/static",
                   template_folder="templates", url_prefix=PREFIX)


def register_console(app: Flask) -> None:
    settings = app.config["SETTINGS"].console
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=settings.secure_cookies,
        # Only the console uses Flask's session; candidates' pages never receive the staff cookie.
        # A browser-session cookie (gone when the browser closes); idle expiry is checked on the server
        # (console.auth), so a copied cookie stops working too.
        SESSION_COOKIE_NAME="staff_session", SESSION_COOKIE_PATH=PREFIX + "/",
        # A form stays valid as long as its session: idle expiry already ends both.
        WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_SSL_STRICT=settings.secure_cookies,
    )
    from console import auth

    app.session_interface = ConsoleSessionInterface()
    csrf = CSRFProtect(app)
    app.before_request(_protect_console_forms(csrf))
    login_manager = ConsoleLoginManager(app)
    auth.configure(app, login_manager)
    app.register_error_handler(CSRFError, _csrf_refused)
    for code in (404, 405, 500):
        app.register_error_handler(code, _console_error_page)
    app.after_request(_console_headers)
    app.add_template_filter(mask_personal_data, "masked")
    app.register_blueprint(assets)
    for name in BLUEPRINT_MODULES:
        app.register_blueprint(importlib.import_module(name).blueprint)
    from staff.users_cli import users_group

    app.cli.add_command(users_group)


def is_console_request() -> bool:
    return is_console_path(request.path)


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """The staff session is opened and saved under /staff/ only. Its cookie's path keeps browsers from sending
    it anywhere else, so elsewhere (the webhook, /pay/…) the session was always empty: now it is Flask's null
    session, and those requests no longer build a signer, decode cookies or consider setting one."""

    def open_session(self, app, request):
        if not is_console_path(request.path):
            return self.make_null_session(app)
        return super().open_session(app, request)


class ConsoleLoginManager(LoginManager):
    """Flask-Login's remember-cookie hook runs after every request of the app; outside the console it has
    no session to look at."""

    def _update_remember_cookie(self, response):
        if not is_console_request():
            return response
        return super()._update_remember_cookie(response)


def _protect_console_forms(csrf: CSRFProtect):
    def protect():
        if is_console_request():
            csrf.protect()
    return protect


def _console_headers(response):
    """Console pages show personal data: never cached, never framed by another site."""
    if is_console_request() and not request.path.startswith(PREFIX + "/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


ERROR_PAGES = {
    404: ("页面不存在", "这个地址没有页面。请从首页进入。"),
    405: ("操作方式不对", "这个页面不接受这种操作。请从首页进入。"),
    500: ("出错了", "服务器处理时出错，已记录。请稍后再试；如一直出错，请联系管理员。"),
}


def _console_error_page(error: HTTPException):
    """Console pages fail in Chinese; every other URL keeps Flask's plain answer (WeChat reads those)."""
    if not is_console_request():
        return error
    title, message = ERROR_PAGES[error.code]
    return render_template("console/error.html", title=title, message=message), error.code


def _csrf_refused(error: CSRFError):
    return render_template("console/error.html", title="请求已失效",
                           message="页面已过期或来源不明，请刷新页面后重试。"), 400
