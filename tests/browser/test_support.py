"""The support desk in real Chromium: candidates talk through the signed webhook, an agent finds them,
reads the timeline, reveals an ID number for a reason, takes the conversation over, sees new messages
live, replies (read back from the fake WeChat API, which refuses the sixth message of a window with
45047) and the conversation goes back to the bot when the agent leaves it idle."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

import messages
from store.models import AuditEvent, Candidate, ForcedReview, utcnow
from tests.browser.conftest import LiveConsole, console_settings, shoot, sign_in
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat, seed_roster
from tests.test_support import blank_jpeg

ZHANG, LI = GRADUATES[0], GRADUATES[1]
LIVE_WITHIN_MS = 2_000


@pytest.fixture
def desk(make_app, serve, fake_wechat) -> LiveConsole:
    app = make_app(console=console_settings(), support={"idle_minutes": 5, "poll_seconds": 1.0})
    seed_roster(app)
    fake_wechat.limit_per_window(5)  # an account registered since 2023
    return LiveConsole(app, serve(app))


class Candidate_:
    """A candidate's phone: each message goes through the signed webhook and opens a new
    customer-service window at the fake WeChat API, as WeChat does."""

    def __init__(self, desk: LiveConsole, fake_wechat, openid: str, graduate: dict):
        self.chat = Chat(desk.app, simulator_for(desk.app), fake_wechat, openid=openid)
        self.fake = fake_wechat
        self.openid = openid
        self.chat.walk_to_photo(graduate)
        fake_wechat.user_wrote(openid)

    def says(self, text: str) -> str:
        reply = self.chat.say(text)
        self.fake.user_wrote(self.openid)
        return reply

    def received(self) -> list[str]:
        return self.chat.customer_service_texts()


def placeholder_fits(page, selector: str) -> bool:
    """Whether the input's placeholder, in the font the page renders it in, fits inside its box."""
    return page.evaluate("""selector => {
        const input = document.querySelector(selector), style = getComputedStyle(input);
        const context = document.createElement("canvas").getContext("2d");
        context.font = `${style.fontSize} ${style.fontFamily}`;
        const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        return context.measureText(input.placeholder).width <= room;
    }""", selector)


def test_an_agent_finds_reads_takes_over_replies_until_45047_and_the_bot_takes_back(desk, fake_wechat, page):
    zhang = Candidate_(desk, fake_wechat, "o_desk_zhang", ZHANG)
    Candidate_(desk, fake_wechat, "o_desk_li", LI)
    zhang.says("我的身份证 11010119900307 对吗")  # part of an ID number, in the wrong step
    desk.add_user("客服甲", "support")
    sign_in(page, desk.url, "客服甲")

    # search by part of the name, then by the masked ID number with the name
    page.goto(f"{desk.url}/staff/support")
    assert placeholder_fits(page, "#search input[name=q]")
    assert "110101********4573 张三" in page.inner_text("#search-hint")
    page.fill("#search input[name=q]", "张")
    page.click("#search button[type=submit]")
    hits = page.inner_text("#hits")
    assert "张三" in hits and "110101********4573" in hits and "李四" not in hits
    assert ZHANG["id_number"] not in page.content()
    page.fill("#search input[name=q]", "110101********4573 张三")
    page.click("#search button[type=submit]")
    assert page.locator("#hits tbody tr").count() == 1
    shoot(page, "support-search")
    page.click("#hits a:has-text('打开')")
    page.wait_for_selector("#timeline")

    # the timeline, masked (also the partial ID number the candidate typed)
    timeline = page.inner_text("#timeline")
    assert "110101**********" not in timeline and "110101********" in timeline and "19900307" not in timeline
    assert "步骤：阅读须知 → 上传照片" in timeline
    assert page.inner_text("#id-number") == "110101********4573"

    # reveal: a reason is required, and the view is audited
    page.click("#reveal button")
    assert "请说明" in page.inner_text(".error")
    page.fill("#reveal input[name=reason]", "考生来电核对身份")
    page.click("#reveal button")
    page.wait_for_selector("#take")
    assert page.inner_text("#id-number") == ZHANG["id_number"]
    with desk.app.extensions["collector"].db.read() as session:
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "support.unmasked_view")).all()
    assert [(row.actor, row.target, row.reason) for row in audit] == [
        ("客服甲", "openid:o_desk_zhang", "考生来电核对身份")]

    # take over: the candidate is told once
    page.click("#take button")
    page.wait_for_selector("#reply textarea")
    assert zhang.received() == [messages.AGENT_TOOK_OVER]

    # a message through the webhook appears on the open page without a reload; the bot stays silent
    page.evaluate("window.notReloaded = true")
    assert zhang.says("照片总是说背景不对") in ("", "success")
    page.wait_for_selector("#timeline li.ev-in:has-text('照片总是说背景不对')", timeout=LIVE_WITHIN_MS)
    assert page.evaluate("window.notReloaded") is True
    assert zhang.received() == [messages.AGENT_TOOK_OVER]
    assert page.inner_text("#replies-left") == "5"

    # five replies in this window reach the fake WeChat API as customer-service messages
    for number in range(1, 6):
        page.fill("#reply textarea[name=text]", f"第{number}次回复：请换白色背景")
        page.click("#reply button[type=submit]")
        page.wait_for_selector("#reply textarea")
    assert zhang.received()[1:] == [f"第{n}次回复：请换白色背景" for n in range(1, 6)]
    assert page.inner_text("#replies-left") == "0"
    # a canned reply fills the box with the candidate's name; the sixth is refused by WeChat with 45047
    page.click(".canned-reply:has-text('照片要求')")
    assert page.input_value("#reply textarea[name=text]").startswith("张三您好")
    page.click("#reply button[type=submit]")
    page.wait_for_selector("#limit-hit")
    assert "45047" in page.inner_text("#limit-hit") and "短信" in page.inner_text("#limit-hit")
    assert page.is_visible("#sms-form button")
    assert len(zhang.received()) == 6
    shoot(page, "support-candidate")
    page.click("#sms-form button")
    page.wait_for_selector("#timeline li.ev-notice:has-text('短信')")

    # left idle: the periodic job hands the conversation back; the page shows it live
    with desk.app.extensions["collector"].db.session() as session:
        session.execute(update(Candidate).where(Candidate.openid == zhang.openid)
                        .values(agent_active_at=utcnow() - timedelta(minutes=6)))
    assert desk.app.extensions["collector"].jobs.run("support") == {"handed_back": 1}
    page.wait_for_selector("#status:has-text('机器人正在自动回复')", timeout=LIVE_WITHIN_MS)
    # WeChat would refuse a sixth message in this window, so the bot's next answer says it instead
    assert len(zhang.received()) == 6
    answer = zhang.says("帮助")
    assert answer.startswith(messages.HANDED_BACK_NOTE) and "照片" in answer  # the bot again, from the photo step
    assert not zhang.says("帮助").startswith(messages.HANDED_BACK_NOTE)  # told once


def test_two_agents_cannot_take_the_same_conversation(desk, fake_wechat, page, new_page):
    li = Candidate_(desk, fake_wechat, "o_desk_li", LI)
    assert "客服接手时会在这里告诉您" in li.says("人工")
    desk.add_user("客服甲", "support")
    desk.add_user("客服乙", "support")
    other = new_page()
    for agent, tab in (("客服甲", page), ("客服乙", other)):
        sign_in(tab, desk.url, agent)
        tab.goto(f"{desk.url}/staff/support")
        assert "李四" in tab.inner_text("#queue")
        tab.click("#queue a:has-text('打开')")
        tab.wait_for_selector("#take button")
    page.goto(f"{desk.url}/staff/support")
    shoot(page, "support-desk")
    page.click("#queue a:has-text('打开')")
    page.click("#take button")
    page.wait_for_selector("#reply textarea")
    other.click("#take button")
    other.wait_for_selector(".error")
    assert "客服甲 已接手这个对话" in other.inner_text(".error")
    assert other.locator("#reply textarea").count() == 0
    with desk.app.extensions["collector"].db.read() as session:
        assert session.scalar(select(Candidate.agent).where(Candidate.openid == li.openid)) == "客服甲"
    assert li.chat.customer_service_texts() == [messages.AGENT_TOOK_OVER]


def test_a_reviewer_cannot_open_the_support_desk(desk, page):
    desk.add_user("审核员", "reviewer")
    sign_in(page, desk.url, "审核员")
    response = page.goto(f"{desk.url}/staff/support")
    assert response.status == 403
    response = page.goto(f"{desk.url}/staff/support/photo/1/thumb")
    assert response.status == 403


def test_a_refused_photo_shows_as_a_thumbnail_and_the_agent_sends_it_to_review(desk, fake_wechat, page):
    zhang = Candidate_(desk, fake_wechat, "o_desk_photo", ZHANG)
    zhang.chat.send_photo(blank_jpeg())
    assert zhang.chat.state() == "photo"
    desk.add_user("客服甲", "support")
    sign_in(page, desk.url, "客服甲")
    page.goto(f"{desk.url}/staff/support/c/{zhang.openid}")
    thumb = page.locator("#timeline img.thumb")
    assert thumb.count() == 1
    page.wait_for_function("document.querySelector('#timeline img.thumb').naturalWidth > 0")
    assert "自动检查：未通过：" in page.inner_text("#timeline") and "face.count" in page.inner_text("#timeline")
    page.click("#actions summary")
    page.fill("#actions input[name=why]", "背景是浅灰色，符合要求")
    page.click("#actions button:has-text('照片转人工审核')")
    page.wait_for_selector(".notice:has-text('照片已转人工审核')")
    assert zhang.chat.state() == "payment"  # not paid yet: the photo joins the queue once they pay
    with desk.app.extensions["collector"].db.read() as session:
        forced = session.scalar(select(ForcedReview))
    assert (forced.sent_by, forced.why) == ("客服甲", "客服 客服甲：背景是浅灰色，符合要求")
    assert "照片转人工审核" in page.inner_text("#timeline")


def test_a_photo_sent_to_an_agent_is_kept_and_shown_without_a_bot_answer(desk, fake_wechat, page):
    zhang = Candidate_(desk, fake_wechat, "o_desk_held_photo", ZHANG)
    desk.add_user("客服甲", "support")
    sign_in(page, desk.url, "客服甲")
    page.goto(f"{desk.url}/staff/support/c/{zhang.openid}")
    page.click("#take button")
    page.wait_for_selector("#reply textarea")
    assert zhang.chat.send_photo(blank_jpeg()) in ("", "success")
    page.wait_for_selector("#timeline img.thumb", timeout=LIVE_WITHIN_MS)
    page.wait_for_function("document.querySelector('#timeline img.thumb').naturalWidth > 0")
    assert "客服接手期间收到" in page.inner_text("#timeline")
    assert zhang.chat.state() == "photo" and zhang.received() == [messages.AGENT_TOOK_OVER]


def test_an_admin_edits_the_canned_replies_and_agents_get_them_filled_in(desk, fake_wechat, page, new_page):
    zhang = Candidate_(desk, fake_wechat, "o_desk_canned", ZHANG)
    desk.add_user("管理员", "admin")
    sign_in(page, desk.url, "管理员")
    page.goto(f"{desk.url}/staff/support/canned")
    assert page.locator("#canned tbody tr").count() == len(messages.CANNED_REPLIES)
    page.fill("#new-canned input[name=title]", "坏占位符")
    page.fill("#new-canned textarea[name=text]", "{phone}")
    page.click("#new-canned button")
    assert "占位符" in page.inner_text(".error")
    page.fill("#new-canned input[name=title]", "补交材料")
    page.fill("#new-canned textarea[name=text]", "{name}您好，请在{deadline}前补交，电话{office_phone}。")
    page.click("#new-canned button")
    page.wait_for_selector(".notice:has-text('补交材料')")
    phone_call = page.locator("#canned tr[data-title='电话咨询']")
    phone_call.locator("select[name=active]").select_option("0")
    phone_call.locator("button").click()
    page.wait_for_selector(".notice:has-text('电话咨询')")
    assert page.locator("#canned tr.off[data-title='电话咨询']").count() == 1
    shoot(page, "support-canned")

    desk.add_user("客服甲", "support")
    agent = new_page()
    sign_in(agent, desk.url, "客服甲")
    agent.goto(f"{desk.url}/staff/support/c/{zhang.openid}")
    agent.click("#take button")
    agent.click(".canned-reply:has-text('补交材料')")
    assert agent.locator(".canned-reply:has-text('电话咨询')").count() == 0  # retired
    filled = agent.input_value("#reply textarea[name=text]")
    assert filled.startswith("张三您好，请在") and "010-58691620" in filled and "{" not in filled
    assert agent.goto(f"{desk.url}/staff/support/canned").status == 403
