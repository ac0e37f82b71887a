"""/staff/users: admins list, add and disable console accounts (the same functions as `flask users`)."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from console import PREFIX
from console.auth import client_address, requires
from staff import accounts

blueprint = Blueprint("console_users", __name__, url_prefix=PREFIX)


@blueprint.get("/users")
@requires("admin")
def users():
    return _page()


@blueprint.post("/users")
@requires("admin")
def add_user():
    form = request.form
    try:
        with _db().session() as session:
            user = accounts.add_user(session, form.get("name", ""), form.get("role", ""), form.get("password", ""),
                                     by=current_user.name, ip=client_address())
    except accounts.AccountError as error:
        return _page(error=str(error), form=form), 400
    flash(f"已添加账号 {user.name}。")
    return redirect(url_for("console_users.users"))


@blueprint.post("/users/<name>/disable")
@requires("admin")
def disable_user(name: str):
    try:
        with _db().session() as session:
            accounts.disable_user(session, name, by=current_user.name, reason=request.form.get("reason") or None,
                                  ip=client_address())
    except accounts.AccountError as error:
        return _page(error=str(error)), 400
    flash(f"已停用账号 {name}。")
    return redirect(url_for("console_users.users"))


@blueprint.post("/users/<name>/enable")
@requires("admin")
def enable_user(name: str):
    try:
        with _db().session() as session:
            accounts.enable_user(session, name, by=current_user.name, ip=client_address())
    except accounts.AccountError as error:
        return _page(error=str(error)), 400
    flash(f"已启用账号 {name}。")
    return redirect(url_for("console_users.users"))


@blueprint.post("/users/<name>/password")
@requires("admin")
def set_password(name: str):
    """A forgotten password: the admin sets a new one and tells the person; their open sessions end."""
    try:
        with _db().session() as session:
            accounts.set_password(session, name, request.form.get("password", ""), by=current_user.name,
                                  ip=client_address())
    except accounts.AccountError as error:
        return _page(error=str(error)), 400
    flash(f"已为 {name} 设置新密码。")
    return redirect(url_for("console_users.users"))


def _page(error: str | None = None, form=None):
    with _db().session() as session:
        listed = accounts.list_users(session)
    return render_template("console/users.html", users=listed, roles=accounts.ROLES, error=error,
                           form=form or {}, tz=current_app.extensions["collector"].settings.window.tz,
                           min_length=accounts.PASSWORD_MIN_LENGTH)


def _db():
    return current_app.extensions["collector"].db
