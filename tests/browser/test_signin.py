"""Signing in to the staff console, in real headless Chromium: the form, wrong passwords, the lockout and
the rate limits, CSRF, idle expiry, roles, and the admin's audit and users pages."""
from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import select

from store.models import AuditEvent, StaffUser
from tests.browser.conftest import TEST_PASSWORD, LiveConsole, console_settings, shoot, sign_in

SHANGHAI = ZoneInfo("Asia/Shanghai")
REDIS_URL = "redis://127.0.0.1:6379/0"


def events(app, action: str) -> list[AuditEvent]:
    with app.extensions["collector"].db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def error_text(page) -> str:
    return page.inner_text(".error")


def live(make_app, serve, **console) -> LiveConsole:
    app = make_app(console=console_settings(**console))
    return LiveConsole(app, serve(app))


def test_signing_in_opens_the_home_page_with_a_console_only_cookie(console, page):
    console.add_user("李老师", "admin")
    page.goto(f"{console.url}/staff/")
    assert page.url.startswith(f"{console.url}/staff/login")
    assert page.inner_text(".notice") == "请先登录。"
    shoot(page, "signin")
    sign_in(page, console.url, "李老师")
    assert page.url == f"{console.url}/staff/"
    assert "你好，李老师" in page.inner_text("main")
    assert [link.inner_text() for link in page.query_selector_all("header nav a")] == [
        "审核", "客服", "名单", "报送", "概况", "提醒", "审计日志", "账号"]
    shoot(page, "home")
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (
        "staff_session", "/staff/", True, "Lax")
    [success] = events(console.app, "login.success")
    assert (success.actor, success.ip) == ("李老师", "127.0.0.1")


def test_signing_in_returns_to_the_page_asked_for_but_never_to_another_site(console, page):
    console.add_user("李老师", "admin")
    page.goto(f"{console.url}/staff/audit?action=login.success")
    sign_in_here(page, "李老师")
    assert page.url == f"{console.url}/staff/audit?action=login.success"
    page.context.clear_cookies()
    page.goto(f"{console.url}/staff/login?next=//evil.example/staff/")
    sign_in_here(page, "李老师")
    assert page.url == f"{console.url}/staff/"


def sign_in_here(page, name: str, password: str = TEST_PASSWORD) -> None:
    """Fills the sign-in form already on the page (keeps its ?next=)."""
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_a_wrong_password_is_refused_and_audited(console, page):
    console.add_user("李老师", "admin")
    sign_in(page, console.url, "李老师", "not-the-password")
    assert page.url.startswith(f"{console.url}/staff/login")
    assert error_text(page) == "账号或密码不对，请重新输入。"
    assert page.input_value("input[name=name]") == "李老师"
    sign_in(page, console.url, "my-secret-password", "whatever-it-is")  # the password typed as the name
    assert error_text(page) == "账号或密码不对，请重新输入。"
    failures = events(console.app, "login.failure")
    assert [(event.actor, event.target, event.detail) for event in failures] == [
        ("李老师", "staff_user:李老师", "wrong password"), ("(unknown)", "staff_user:(unknown)", "unknown account")]
    assert events(console.app, "login.success") == []


def test_an_account_is_locked_after_failures_in_a_row_and_says_until_when(make_app, serve, page):
    console = live(make_app, serve, lockout_failures=3, lockout_minutes=10)
    console.add_user("李老师", "reviewer")
    sign_in(page, console.url, "李老师", "wrong-one-1")
    sign_in(page, console.url, "李老师", "wrong-one-2")
    assert error_text(page) == "账号或密码不对，请重新输入。"
    sign_in(page, console.url, "李老师", "wrong-one-3")
    locked_at = datetime.now(SHANGHAI)
    allowed = {(locked_at + timedelta(minutes=minutes)).strftime("%H:%M") for minutes in (10, 11)}
    message = error_text(page)
    assert message.startswith("密码错误次数过多，账号已锁定，请于 ") and message.endswith(" 后再试。")
    assert message.removeprefix("密码错误次数过多，账号已锁定，请于 ").removesuffix(" 后再试。") in allowed
    shoot(page, "signin-locked")
    sign_in(page, console.url, "李老师")  # the right password is refused too, until then
    assert page.url.startswith(f"{console.url}/staff/login")
    assert "账号已锁定" in error_text(page)
    assert [event.detail for event in events(console.app, "login.refused")] == ["locked"]
    assert events(console.app, "login.success") == []


def test_failures_from_one_address_are_rate_limited_whatever_the_name(make_app, serve, page):
    console = live(make_app, serve, address_failure_limit="4 per 15 minutes")
    console.add_user("李老师", "admin")
    for attempt in range(4):
        sign_in(page, console.url, f"guess{attempt}", "some-password")
        assert error_text(page) == "账号或密码不对，请重新输入。"
    sign_in(page, console.url, "李老师")
    assert error_text(page).startswith("登录尝试过于频繁，请于 ")
    assert page.url.startswith(f"{console.url}/staff/login")
    assert [event.detail for event in events(console.app, "login.refused")] == ["rate limited"]


def test_failure_counters_are_shared_by_server_processes_through_redis(make_app, serve, new_page):
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    prefix = f"h6-test-{uuid.uuid4().hex}"
    settings = {"account_failure_limit": "2 per 15 minutes", "lockout_failures": 100, "rate_limit_prefix": prefix}
    try:
        first = make_app(redis_url=REDIS_URL, console=console_settings(**settings))
        second = make_app(redis_url=REDIS_URL, console=console_settings(**settings))
        first_url, second_url = serve(first), serve(second)
        LiveConsole(first, first_url).add_user("李老师", "admin")
        page = new_page()
        sign_in(page, first_url, "李老师", "wrong-one-1")
        sign_in(page, first_url, "李老师", "wrong-one-2")
        other = new_page()
        sign_in(other, second_url, "李老师")
        assert error_text(other).startswith("登录尝试过于频繁")
        assert client.keys(f"*{prefix}*")
    finally:
        for key in client.scan_iter(f"*{prefix}*"):
            client.delete(key)


def test_a_form_posted_without_its_csrf_token_is_refused_in_chinese(console, page):
    console.add_user("李老师", "admin")
    sign_in(page, console.url, "李老师")
    page.goto(f"{console.url}/staff/users")
    page.fill("form.stacked input[name=name]", "赵老师")
    page.fill("form.stacked input[name=password]", "a-long-password")
    page.eval_on_selector("form.stacked input[name=csrf_token]", "input => input.remove()")
    with page.expect_response(f"{console.url}/staff/users") as response:
        page.click("form.stacked button[type=submit]")
    assert response.value.status == 400
    assert page.inner_text("h1") == "请求已失效"
    assert "请刷新页面后重试" in page.inner_text("main")
    with console.app.extensions["collector"].db.session() as session:
        assert session.scalar(select(StaffUser).where(StaffUser.name == "赵老师")) is None


def test_the_sign_in_form_needs_its_csrf_token_too(console, page):
    console.add_user("李老师", "admin")
    page.goto(f"{console.url}/staff/login")
    page.eval_on_selector("input[name=csrf_token]", "input => input.remove()")
    page.fill("input[name=name]", "李老师")
    page.fill("input[name=password]", TEST_PASSWORD)
    with page.expect_response(f"{console.url}/staff/login") as response:
        page.click("button[type=submit]")
    assert response.value.status == 400
    assert events(console.app, "login.success") == []


def test_an_idle_session_is_signed_out(make_app, serve, page):
    console = live(make_app, serve, idle_minutes=0.05)  # 3 seconds
    console.add_user("李老师", "admin")
    sign_in(page, console.url, "李老师")
    time.sleep(1.5)
    page.goto(f"{console.url}/staff/users")  # activity keeps the session alive
    time.sleep(1.8)
    page.goto(f"{console.url}/staff/audit")
    assert page.url == f"{console.url}/staff/audit"
    time.sleep(3.5)
    page.goto(f"{console.url}/staff/users")
    assert page.url.startswith(f"{console.url}/staff/login")
    assert page.inner_text(".notice") == "长时间未操作，已自动退出，请重新登录。"
    assert [event.detail for event in events(console.app, "login.end")] == ["idle"]


def test_a_support_account_cannot_open_the_users_page(console, page):
    console.add_user("周客服", "support")
    sign_in(page, console.url, "周客服")
    assert [link.inner_text() for link in page.query_selector_all("header nav a")] == ["客服"]
    response = page.goto(f"{console.url}/staff/users")
    assert response.status == 403
    assert page.inner_text("h1") == "没有权限"


def test_a_reviewer_cannot_open_or_export_the_audit_log(console, page):
    console.add_user("吴审核", "reviewer")
    sign_in(page, console.url, "吴审核")
    assert page.goto(f"{console.url}/staff/audit").status == 403
    export = page.request.get(f"{console.url}/staff/audit.csv")
    assert export.status == 403
    assert "没有权限" in export.text()
    assert events(console.app, "audit.export") == []


def test_the_admin_filters_pages_and_exports_the_audit_log(console, page):
    console.add_user("李老师", "admin")
    for attempt in range(3):
        sign_in(page, console.url, "李老师", f"wrong-{attempt}-password")
    sign_in(page, console.url, "李老师")
    page.goto(f"{console.url}/staff/audit")
    assert "共 5 条" in page.inner_text(".count")  # user.add, three failures, the sign-in
    page.select_option("select[name=action]", "login.failure")
    page.click("form.filters button[type=submit]")
    assert "共 3 条" in page.inner_text(".count")
    assert len(page.query_selector_all("table.data tbody tr")) == 3
    today = datetime.now(SHANGHAI).date()
    page.fill("input[name=since]", (today + timedelta(days=1)).isoformat())
    page.click("form.filters button[type=submit]")
    assert "没有符合条件的记录" in page.inner_text("table.data")
    page.fill("input[name=since]", today.isoformat())
    page.fill("input[name=until]", today.isoformat())
    page.click("form.filters button[type=submit]")
    assert "共 3 条" in page.inner_text(".count")
    shoot(page, "audit")
    with page.expect_download() as download:
        page.click("text=导出 CSV")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["时间", "操作人", "操作", "对象", "详情", "原因", "地址"]
    assert [(row[1], row[2], row[4]) for row in rows[1:]] == [("李老师", "login.failure", "wrong password")] * 3
    [export] = events(console.app, "audit.export")
    assert export.actor == "李老师" and "action=login.failure" in export.detail


def test_the_audit_log_pages_through_many_events(console, page):
    console.add_user("李老师", "admin")
    with console.app.extensions["collector"].db.session() as session:
        from staff import audit
        for number in range(120):
            audit.record(session, "脚本", "test.event", f"thing:{number}")
    sign_in(page, console.url, "李老师")
    page.goto(f"{console.url}/staff/audit?action=test.event")
    assert "共 120 条，第 1/3 页" in page.inner_text(".count")
    assert page.inner_text("table.data tbody tr:first-child td:nth-child(4)") == "thing:119"
    page.click("text=下一页")
    page.click("text=下一页")
    assert "第 3/3 页" in page.inner_text(".count")
    assert len(page.query_selector_all("table.data tbody tr")) == 20


def test_an_admin_adds_a_reviewer_and_disabling_it_ends_its_open_session(console, new_page):
    console.add_user("李老师", "admin")
    admin, reviewer = new_page(), new_page()
    sign_in(admin, console.url, "李老师")
    admin.goto(f"{console.url}/staff/users")
    admin.fill("form.stacked input[name=name]", "赵老师")
    admin.select_option("form.stacked select[name=role]", "reviewer")
    admin.fill("form.stacked input[name=password]", "short")
    admin.eval_on_selector("form.stacked input[name=password]", "input => input.removeAttribute('minlength')")
    admin.click("form.stacked button[type=submit]")
    assert error_text(admin) == "密码至少10个字符"
    admin.fill("form.stacked input[name=password]", "reviewer-password")
    admin.click("form.stacked button[type=submit]")
    assert admin.inner_text(".notice") == "已添加账号 赵老师。"
    shoot(admin, "users")

    sign_in(reviewer, console.url, "赵老师", "reviewer-password")
    assert reviewer.url == f"{console.url}/staff/"
    admin.fill("tr:has-text('赵老师') input[name=reason]", "调岗")
    admin.click("tr:has-text('赵老师') button.danger")
    assert admin.inner_text(".notice") == "已停用账号 赵老师。"
    reviewer.goto(f"{console.url}/staff/")
    assert reviewer.url.startswith(f"{console.url}/staff/login")
    sign_in(reviewer, console.url, "赵老师", "reviewer-password")
    assert error_text(reviewer) == "账号或密码不对，请重新输入。"
    [disabled] = events(console.app, "user.disable")
    assert (disabled.actor, disabled.target, disabled.reason) == ("李老师", "staff_user:赵老师", "调岗")
    admin.click("tr:has-text('赵老师') button:has-text('重新启用')")
    assert admin.inner_text(".notice") == "已启用账号 赵老师。"
    sign_in(reviewer, console.url, "赵老师", "reviewer-password")
    assert reviewer.url == f"{console.url}/staff/"


def test_signing_out_ends_the_session(console, page):
    console.add_user("李老师", "admin")
    sign_in(page, console.url, "李老师")
    page.click("header button:has-text('退出')")
    assert page.inner_text(".notice") == "已退出。"
    page.goto(f"{console.url}/staff/audit")
    assert page.url.startswith(f"{console.url}/staff/login")


def test_a_console_address_with_no_page_answers_in_chinese(console, page):
    console.add_user("周客服", "support")
    page.goto(f"{console.url}/staff/no-such-page")
    assert page.url.startswith(f"{console.url}/staff/login")  # anonymous visitors learn nothing
    sign_in_here(page, "周客服")
    assert page.url == f"{console.url}/staff/no-such-page"
    assert page.inner_text("h1") == "页面不存在"
    assert page.goto(f"{console.url}/staff/logout").status == 405
    assert page.inner_text("h1") == "操作方式不对"


def test_the_audit_export_masks_id_numbers_and_defuses_formulas(console, page):
    console.add_user("李老师", "admin")
    with console.app.extensions["collector"].db.session() as session:
        from staff import audit
        audit.record(session, "王老师", "review.reject", "roster_entry:7", "ID 110101199503120118, phone 13912345678",
                     reason="=HYPERLINK(\"http://evil.example\")")
    sign_in(page, console.url, "李老师")
    page.goto(f"{console.url}/staff/audit?action=review.reject")
    assert "110101********0118" in page.inner_text("table.data")
    assert "110101199503120118" not in page.content()
    with page.expect_download() as download:
        page.click("text=导出 CSV")
    [header, row] = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))
    assert row[1:5] == ["王老师", "review.reject", "roster_entry:7", "ID 110101********0118, phone 139****5678"]
    assert row[5] == "'=HYPERLINK(\"http://evil.example\")"


def test_htmx_requests_are_sent_to_sign_in_by_a_header_not_a_redirect(console, page):
    response = page.request.get(f"{console.url}/staff/audit", headers={"HX-Request": "true"}, max_redirects=0)
    assert response.status == 401
    assert response.headers["hx-redirect"] == "/staff/login?why=required"


def test_htmx_posts_carry_the_csrf_token_that_plain_fetches_lack(console, page):
    console.add_user("李老师", "admin")
    sign_in(page, console.url, "李老师")
    status = page.evaluate("fetch('/staff/logout', {method: 'POST'}).then(r => r.status)")
    assert status == 400
    page.goto(f"{console.url}/staff/")
    assert page.url == f"{console.url}/staff/"  # still signed in
    with page.expect_response(f"{console.url}/staff/logout") as response:
        page.evaluate("htmx.ajax('POST', '/staff/logout', {target: 'main', swap: 'innerHTML'})")
    assert response.value.request.headers["x-csrftoken"]
    page.goto(f"{console.url}/staff/")
    assert page.url.startswith(f"{console.url}/staff/login")
    assert [event.detail for event in events(console.app, "login.end")] == ["signed out"]


def test_an_admin_resets_a_forgotten_password_which_ends_the_old_session(console, new_page):
    console.add_user("李老师", "admin")
    console.add_user("赵老师", "reviewer", "old-password-1")
    admin, reviewer = new_page(), new_page()
    sign_in(reviewer, console.url, "赵老师", "old-password-1")
    sign_in(admin, console.url, "李老师")
    admin.goto(f"{console.url}/staff/users")
    admin.fill("tr:has-text('赵老师') input[name=password]", "new-password-2")
    admin.click("tr:has-text('赵老师') button:has-text('重设密码')")
    assert admin.inner_text(".notice") == "已为 赵老师 设置新密码。"
    reviewer.goto(f"{console.url}/staff/")
    assert reviewer.url.startswith(f"{console.url}/staff/login")
    sign_in(reviewer, console.url, "赵老师", "old-password-1")
    assert error_text(reviewer) == "账号或密码不对，请重新输入。"
    sign_in(reviewer, console.url, "赵老师", "new-password-2")
    assert reviewer.url == f"{console.url}/staff/"
    [event] = events(console.app, "user.password")
    assert (event.actor, event.target) == ("李老师", "staff_user:赵老师")


def test_with_redis_unreachable_sign_in_works_and_the_lockout_still_holds(make_app, serve, new_page):
    app = make_app(redis_url="redis://127.0.0.1:1/0", console=console_settings(lockout_failures=2))
    console = LiveConsole(app, serve(app))
    console.add_user("李老师", "admin")
    console.add_user("赵老师", "reviewer")
    admin, page = new_page(), new_page()
    sign_in(admin, console.url, "李老师")
    assert admin.url == f"{console.url}/staff/"
    sign_in(page, console.url, "赵老师", "wrong-one-1")
    assert error_text(page) == "账号或密码不对，请重新输入。"
    sign_in(page, console.url, "赵老师", "wrong-one-2")
    assert "账号已锁定" in error_text(page)


def test_polling_does_not_keep_an_idle_session_alive(make_app, serve, page):
    console = live(make_app, serve, idle_minutes=0.05)  # 3 seconds
    console.add_user("李老师", "admin")
    sign_in(page, console.url, "李老师")
    poll = "fetch('/staff/', {headers: {'X-Console-Poll': '1'}, redirect: 'manual'}).then(r => r.status)"
    for _ in range(2):
        time.sleep(1)
        assert page.evaluate(poll) == 200
    time.sleep(1.8)
    assert page.evaluate(poll) == 0  # 3.8 s without a person's request: redirected to sign in (opaque)
    page.goto(f"{console.url}/staff/")
    assert page.url.startswith(f"{console.url}/staff/login")
