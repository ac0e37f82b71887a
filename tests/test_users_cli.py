"""`flask users …`: console accounts from the command line, and what the accounts functions refuse."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from staff import accounts
from store.models import StaffUser
from tests.staff_fixtures import audit_events, db


def user(app, name: str) -> StaffUser | None:
    with db(app).session() as session:
        return session.scalar(select(StaffUser).where(StaffUser.name == name))


def signs_in(app, name: str, password: str) -> bool:
    with db(app).session() as session:
        return accounts.authenticate(session, name, password, "127.0.0.1", lockout_failures=5,
                                     lockout_minutes=15).ok


def test_add_reads_the_password_from_stdin_and_stores_only_an_argon2_hash(cli, app):
    result = cli("users", "add", "李老师", "--role", "reviewer", "--password-stdin", "--by", "root",
                 input="a-long-password\n")
    assert result.exit_code == 0, result.output
    assert result.output == "已创建账号 李老师（审核员）。\n"
    created = user(app, "李老师")
    assert (created.role, created.active, created.created_by) == ("reviewer", True, "root")
    assert created.password_hash.startswith("$argon2id$")
    assert "a-long-password" not in created.password_hash
    assert PasswordHasher().verify(created.password_hash, "a-long-password")
    [event] = audit_events(app, "user.add")
    assert (event.actor, event.target, event.detail) == ("root", "staff_user:李老师", "role reviewer")


def test_add_asks_for_the_password_twice_without_echoing_it(cli, app):
    result = cli("users", "add", "王老师", "--role", "admin", input="first-password\nfirst-password\n")
    assert result.exit_code == 0, result.output
    assert "first-password" not in result.output
    assert signs_in(app, "王老师", "first-password")


@pytest.mark.parametrize("args, stdin, error", [
    (["users", "add", "李老师", "--role", "admin", "--password-stdin"], "short\n", "密码至少10个字符"),
    (["users", "add", "李 老师", "--role", "admin", "--password-stdin"], "a-long-password\n", "不含空格"),
    (["users", "add", "(unknown)", "--role", "admin", "--password-stdin"], "a-long-password\n", "括号"),
    (["users", "add", "李老师", "--role", "boss", "--password-stdin"], "a-long-password\n", "'boss' is not one of"),
])
def test_add_refuses_bad_input_and_creates_nothing(cli, app, args, stdin, error):
    result = cli(*args, input=stdin)
    assert result.exit_code != 0
    assert error in result.output
    with db(app).session() as session:
        assert accounts.list_users(session) == []
    assert audit_events(app, "user.add") == []


def test_add_refuses_a_name_that_exists(cli, app):
    cli("users", "add", "李老师", "--role", "admin", "--password-stdin", input="a-long-password\n")
    result = cli("users", "add", "李老师", "--role", "support", "--password-stdin", input="other-password\n")
    assert result.exit_code == 1
    assert "账号 李老师 已存在" in result.output
    assert user(app, "李老师").role == "admin"


def test_list_shows_name_role_state_and_last_sign_in(cli, app):
    assert "还没有账号" in cli("users", "list").output
    cli("users", "add", "李老师", "--role", "admin", "--password-stdin", input="a-long-password\n")
    cli("users", "add", "周客服", "--role", "support", "--password-stdin", input="b-long-password\n")
    signs_in(app, "李老师", "a-long-password")
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in cli("users", "list").output.splitlines()}
    assert rows["周客服"] == ["support", "启用", "从未登录"]
    assert rows["李老师"][:2] == ["admin", "启用"] and rows["李老师"][2].startswith("20")


def test_disable_stops_sign_in_and_is_audited_with_its_reason(cli, app):
    cli("users", "add", "李老师", "--role", "admin", "--password-stdin", input="a-long-password\n")
    cli("users", "add", "周客服", "--role", "support", "--password-stdin", input="b-long-password\n")
    with db(app).session() as session:
        session_id = accounts.identity(accounts.find_user(session, "周客服")).get_id()
    result = cli("users", "disable", "周客服", "--reason", "离职", "--by", "李老师")
    assert result.exit_code == 0, result.output
    assert result.output == "已停用账号 周客服。\n"
    assert not signs_in(app, "周客服", "b-long-password")
    with db(app).session() as session:
        assert accounts.load_identity(session, session_id) is None  # its open sessions end
    [event] = audit_events(app, "user.disable")
    assert (event.actor, event.target, event.reason) == ("李老师", "staff_user:周客服", "离职")
    assert "停用" in [line.split("\t")[2] for line in cli("users", "list").output.splitlines()
                    if line.startswith("周客服")]


def test_disable_refuses_unknown_disabled_and_the_last_admin_changing_nothing(cli, app):
    cli("users", "add", "李老师", "--role", "admin", "--password-stdin", input="a-long-password\n")
    result = cli("users", "disable", "没有这个人")
    assert result.exit_code == 1 and "没有账号 没有这个人" in result.output
    result = cli("users", "disable", "李老师")
    assert result.exit_code == 1 and "唯一启用的管理员" in result.output
    assert user(app, "李老师").active
    cli("users", "add", "周客服", "--role", "support", "--password-stdin", input="b-long-password\n")
    cli("users", "disable", "周客服")
    result = cli("users", "disable", "周客服")
    assert result.exit_code == 1 and "已停用" in result.output
    assert len(audit_events(app, "user.disable")) == 1


def test_password_sets_a_new_one_and_ends_open_sessions(cli, app):
    cli("users", "add", "李老师", "--role", "reviewer", "--password-stdin", input="a-long-password\n")
    with db(app).session() as session:
        old_session = accounts.identity(accounts.find_user(session, "李老师")).get_id()
    result = cli("users", "password", "李老师", "--password-stdin", input="a-new-password\n")
    assert result.exit_code == 0, result.output
    assert signs_in(app, "李老师", "a-new-password")
    assert not signs_in(app, "李老师", "a-long-password")
    with db(app).session() as session:
        assert accounts.load_identity(session, old_session) is None
    assert len(audit_events(app, "user.password")) == 1


def test_demo_admin_prints_the_console_url_and_a_password_that_works_each_time(cli, app):
    first = cli("users", "demo-admin")
    assert first.exit_code == 0, first.output
    url_line, account_line = first.output.splitlines()
    assert url_line == "员工后台：http://127.0.0.1:8000/staff/"
    first_password = account_line.split("密码：")[1]
    assert signs_in(app, "demo-admin", first_password)
    second_password = cli("users", "demo-admin").output.splitlines()[1].split("密码：")[1]
    assert second_password != first_password
    assert signs_in(app, "demo-admin", second_password)
    assert not signs_in(app, "demo-admin", first_password)
    with db(app).session() as session:
        assert [(u.name, u.role) for u in accounts.list_users(session)] == [("demo-admin", "admin")]


def test_lockout_counts_failures_in_a_row_only(app):
    with db(app).session() as session:
        accounts.add_user(session, "李老师", "admin", "a-long-password", by="test")

    def attempt(password: str) -> accounts.SignIn:
        with db(app).session() as session:
            return accounts.authenticate(session, "李老师", password, None, lockout_failures=3, lockout_minutes=5)

    assert not attempt("wrong-password-1").ok
    assert not attempt("wrong-password-2").ok
    assert attempt("a-long-password").ok  # a success starts the count again
    assert attempt("wrong-password-3").locked_until is None
    assert attempt("wrong-password-4").locked_until is None
    locked = attempt("wrong-password-5")
    assert locked.locked_until is not None and not locked.ok
    assert attempt("a-long-password").locked_until == locked.locked_until


def test_enable_lets_a_disabled_account_sign_in_again_with_its_password(cli, app):
    cli("users", "add", "李老师", "--role", "admin", "--password-stdin", input="a-long-password\n")
    cli("users", "add", "周客服", "--role", "support", "--password-stdin", input="b-long-password\n")
    result = cli("users", "enable", "周客服")
    assert result.exit_code == 1 and "已是启用状态" in result.output
    cli("users", "disable", "周客服")
    result = cli("users", "enable", "周客服", "--reason", "误停用", "--by", "李老师")
    assert result.exit_code == 0, result.output
    assert signs_in(app, "周客服", "b-long-password")
    [event] = audit_events(app, "user.enable")
    assert (event.actor, event.target, event.reason) == ("李老师", "staff_user:周客服", "误停用")
