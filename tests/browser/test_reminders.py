"""An admin in real Chromium composes a reminder campaign, sees how many go by each channel and the text a real
graduate would read, sends it, and watches the progress bar reach 100 % while the real "remind" task (the
one the huey consumer runs) sends through the fake WeChat API and the fake SMS at a throttled rate. A
reviewer may not open the page."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from standins.sms import FakeTencentSms
from store.models import AuditEvent
from tests.browser.conftest import LiveConsole, console_settings, shoot, sign_in
from tests.test_reminders import SMS, TEMPLATE_FIELDS, TEMPLATE_ID, graduate

TEXT = "{姓名}同学：毕业照片采集将于{截止时间}截止，请尽快完成。"


@pytest.fixture
def fake_sms():
    with FakeTencentSms(*SMS, {"T_REMIND": 2}) as fake:
        yield fake


@pytest.fixture
def reminder_console(make_app, serve, fake_wechat, fake_sms) -> LiveConsole:
    fake_wechat.add_template(TEMPLATE_ID, TEMPLATE_FIELDS)
    app = make_app(
        console=console_settings(), jobs={"immediate": False},
        sms={"provider": "tencent", "secret_id": SMS[0], "secret_key": SMS[1], "sdk_app_id": SMS[2],
             "sign_name": SMS[3], "endpoint": fake_sms.endpoint, "scheme": "http", "template_reminder": "T_REMIND"},
        reminders={"template_id": TEMPLATE_ID, "wechat_per_second": 3.0, "sms_per_second": 3.0,
                   "quiet_start": "00:00", "quiet_end": "00:00"})
    return LiveConsole(app, serve(app))


def cohort(app) -> None:
    for number in range(1, 5):  # wrote to the account an hour ago: customer-service messages
        graduate(app, number, openid=f"o_web_{number}", last_heard=timedelta(hours=1))
    for number in range(5, 7):  # silent for three days: the template message
        graduate(app, number, openid=f"o_web_{number}", last_heard=timedelta(days=3))
    for number in range(7, 9):  # never followed, a phone on the roster: SMS
        graduate(app, number, phone=f"+86139000000{number:02d}")
    graduate(app, 9)  # never followed, no phone: unreachable


class Consumer:
    """Runs the queued tasks the way `flask jobs work` does, in a thread, until stopped."""

    def __init__(self, app):
        self.huey = app.extensions["collector"].jobs.huey
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            task = self.huey.dequeue()
            if task is None:
                time.sleep(0.05)
            else:
                self.huey.execute(task)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def test_an_admin_composes_previews_sends_and_watches_the_campaign_finish(reminder_console, page, fake_wechat,
                                                                         fake_sms):
    console = reminder_console
    cohort(console.app)
    console.add_user("admin1", "admin")
    sign_in(page, console.url, "admin1")
    page.click("nav >> text=提醒")
    page.select_option("#segment", "not_approved")
    page.fill("#text", TEXT)
    page.click("#preview-button")
    page.wait_for_selector("#channel-counts")
    counts = {cell.get_attribute("data-channel"): cell.inner_text()
              for cell in page.locator("#channel-counts td").all()}
    assert counts == {"total": "9", "custom": "4", "template": "2", "sms": "2", "unreachable": "1"}
    # one real recipient's text, their name masked as in the heading above it
    assert page.inner_text("#sample-text").startswith("测**号同学：毕业照片采集将于12月31日23:59截止")
    assert "测试1号" not in page.inner_text("#preview")
    shoot(page, "reminders-compose")

    page.click("#create")
    assert "测**号同学" in page.inner_text("#sample-text")  # the campaign's page shows it again before sending
    assert "测试1号" not in page.inner_text("#preview")
    assert fake_wechat.sent_messages == [] and fake_sms.sent == []
    with Consumer(console.app):
        page.click("#send")
        page.wait_for_selector("#progress-bar")
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen.add(int(page.get_attribute("#progress-bar", "value")))
            if 100 in seen:
                break
            time.sleep(0.2)
    assert 100 in seen and any(value < 100 for value in seen), seen  # it moved while the test watched
    assert page.inner_text("#campaign-status") == "已完成"
    assert page.inner_text("#progress-counts td[data-count=sent]") == "8"
    assert page.inner_text("#progress-counts td[data-count=skipped]") == "1"
    shoot(page, "reminders-progress")
    with page.expect_download() as masked:
        page.click("#report")
    text = open(masked.value.path(), encoding="utf-8-sig").read()
    assert "139****0007" in text and "+8613900000007" not in text and "测试7号" not in text
    page.fill("input[name=reason]", "核对短信号码")
    with page.expect_download() as revealed:
        page.click("#report")
    assert "+8613900000007" in open(revealed.value.path(), encoding="utf-8-sig").read()
    with console.app.extensions["collector"].db.session() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "reminders.report_unmasked"))
    assert event.actor == "admin1" and event.reason == "核对短信号码"
    assert sorted(m["touser"] for m in fake_wechat.sent_messages) == [f"o_web_{n}" for n in range(1, 5)]
    assert sorted(t["touser"] for t in fake_wechat.templates_sent) == ["o_web_5", "o_web_6"]
    assert sorted(s.phone for s in fake_sms.sent) == ["+8613900000007", "+8613900000008"]


def test_a_reviewer_may_not_open_reminders(reminder_console, page):
    reminder_console.add_user("rev1", "reviewer")
    sign_in(page, reminder_console.url, "rev1")
    response = page.goto(f"{reminder_console.url}/staff/reminders")
    assert response.status == 403
