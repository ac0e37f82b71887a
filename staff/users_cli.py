"""`flask users …`: console accounts from the command line, thin over staff.accounts."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from staff import accounts
from staff.cli import by_option, collector, fail, local_time

users_group = AppGroup("users", help="Staff accounts of the web console (/staff/).")


@users_group.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(sorted(accounts.ROLES)),
              help="admin: everything; reviewer: the review queue; support: the support desk.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@by_option
def add_command(name: str, role: str, password_stdin: bool, by: str) -> None:
    """Create the account NAME (the password is asked for, or read from stdin)."""
    password = _read_password(password_stdin)
    try:
        with collector().db.session() as session:
            user = accounts.add_user(session, name, role, password, by)
    except accounts.AccountError as error:
        raise fail(error)
    click.echo(f"已创建账号 {user.name}（{accounts.ROLES[role]}）。")


@users_group.command("list")
def list_command() -> None:
    """Every account: name, role, state, last sign-in."""
    with collector().db.session() as session:
        users = accounts.list_users(session)
    if not users:
        click.echo("还没有账号。创建第一个管理员：flask --app app users add 名字 --role admin")
        return
    for user in users:
        state = "启用" if user.active else "停用"
        last = local_time(user.last_login_at) if user.last_login_at else "从未登录"
        click.echo(f"{user.name}\t{user.role}\t{state}\t{last}")


@users_group.command("disable")
@click.argument("name")
@click.option("--reason", default=None, help="Why (audited).")
@by_option
def disable_command(name: str, reason: str | None, by: str) -> None:
    """Disable the account NAME: it cannot sign in, and its open sessions end."""
    try:
        with collector().db.session() as session:
            accounts.disable_user(session, name, by, reason=reason)
    except accounts.AccountError as error:
        raise fail(error)
    click.echo(f"已停用账号 {name}。")


@users_group.command("enable")
@click.argument("name")
@click.option("--reason", default=None, help="Why (audited).")
@by_option
def enable_command(name: str, reason: str | None, by: str) -> None:
    """Enable the disabled account NAME again (it keeps its password)."""
    try:
        with collector().db.session() as session:
            accounts.enable_user(session, name, by, reason=reason)
    except accounts.AccountError as error:
        raise fail(error)
    click.echo(f"已启用账号 {name}。")


@users_group.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@by_option
def password_command(name: str, password_stdin: bool, by: str) -> None:
    """Set a new password for NAME (ends its open sessions, lifts a lockout)."""
    password = _read_password(password_stdin)
    try:
        with collector().db.session() as session:
            accounts.set_password(session, name, password, by)
    except accounts.AccountError as error:
        raise fail(error)
    click.echo(f"已为 {name} 设置新密码。")


@users_group.command("demo-admin")
@by_option
def demo_admin_command(by: str) -> None:
    """For the demo only: the admin account demo-admin with a new random password, printed once."""
    try:
        with collector().db.session() as session:
            user, password = accounts.ensure_demo_admin(session, by)
    except accounts.AccountError as error:
        raise fail(error)
    server = collector().settings.server
    click.echo(f"员工后台：http://{server.host}:{server.port}/staff/")
    click.echo(f"演示管理员：{user.name}  密码：{password}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("密码", hide_input=True, confirmation_prompt="再输入一次")
