"""The review console in real Chromium: candidates reach the queue through the webhook with labelled
photos, reviewers work it with the keyboard, and what the candidate receives is read from the fake
WeChat API. Skipped (with the reason) without chromium or without the labelled photos."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

import messages
from store.models import Photo, RejectReason, utcnow
from tests.browser.conftest import LiveConsole, console_settings, shoot, sign_in
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat, seed_roster

COMPLIANT = ["webmorph_004_03_blue_ok.jpg", "webmorph_019_03_blue_ok.jpg", "cfdAF211_blue_ok.jpg"]
REFUSED_BACKGROUND = "cfdAF211_bg_beige.jpg"  # a beige background the checker refuses (background.color)
GRACE = 30


@pytest.fixture
def review_console(make_app, serve) -> LiveConsole:
    app = make_app(console=console_settings(), review={"undo_seconds": GRACE, "second_review_share": 0.0})
    return LiveConsole(app, serve(app))


@pytest.fixture
def candidates(review_console, fake_wechat, photo):
    """candidates(n) → n graduates who walked the conversation, sent a compliant photo and paid."""
    app = review_console.app
    seed_roster(app)
    wechat = simulator_for(app)

    def make(count: int) -> list[Chat]:
        chats = []
        for index, (graduate, name) in enumerate(zip(GRADUATES[:count], COMPLIANT)):
            chat = Chat(app, wechat, fake_wechat, openid=f"o_review_browser_{index}")
            chat.walk_to_photo(graduate)
            chat.pay(chat.pay_link(chat.send_photo(photo(name))))
            assert chat.state() == "under_review"
            chats.append(chat)
        return chats
    return make


def deliver_after_grace(app) -> None:
    """The outbox sweep as it runs once the undo period is over."""
    app.extensions["collector"].outbox.sweep(utcnow() + timedelta(seconds=GRACE + 1))


def photo_id_of(page) -> int:
    return int(re.search(r"/staff/review/photo/(\d+)$", page.url).group(1))


def wait_for_photo(page, other_than: int | None = None) -> int:
    page.wait_for_url(re.compile(r"/staff/review/photo/\d+$"))
    if other_than is not None:
        page.wait_for_function(f"!location.pathname.endsWith('/photo/{other_than}')")
    page.wait_for_selector("#approve")
    return photo_id_of(page)


def texts_to(fake_wechat, openid: str) -> list[str]:
    return [m["text"]["content"] for m in fake_wechat.messages_to(openid) if m.get("msgtype") == "text"]


def test_a_reviewer_works_the_queue_with_the_keyboard_and_the_candidate_gets_the_preset_reason(
        review_console, candidates, page, fake_wechat):
    chats = candidates(3)
    review_console.add_user("审核员甲", "reviewer")
    sign_in(page, review_console.url, "审核员甲")
    page.goto(f"{review_console.url}/staff/review")
    rows = page.locator("#queue tbody tr")
    assert rows.count() == 3
    assert "张三" in page.inner_text("#queue") and "110101********4573" in page.inner_text("#queue")
    assert "110101199003074573" not in page.content()
    shoot(page, "review-queue")

    page.keyboard.press("n")
    first = wait_for_photo(page)
    assert page.locator("#photo").evaluate("img => img.complete && img.naturalWidth > 0")
    assert "准考证号" in page.inner_text(".record")
    shoot(page, "review-photo")
    page.keyboard.press("e")  # the checker's annotated picture, drawn on demand
    page.wait_for_function("document.getElementById('explain').naturalWidth > 0", timeout=30_000)
    assert page.locator("#explain").is_visible()
    page.keyboard.press("e")
    page.keyboard.press("a")
    second = wait_for_photo(page, other_than=first)
    assert "刚才" in page.inner_text("#undo-form")
    page.keyboard.press("a")
    third = wait_for_photo(page, other_than=second)
    with review_console.app.extensions["collector"].db.session() as session:
        blurry = session.scalar(select(RejectReason).where(RejectReason.code == "blurry"))
        position = [r.code for r in session.scalars(select(RejectReason).where(RejectReason.active.is_(True))
                                                    .order_by(RejectReason.position, RejectReason.id))].index("blurry")
        blurry_text = blurry.text
    page.keyboard.press(str(position + 1))
    page.keyboard.press("r")
    page.wait_for_url(re.compile(r"/staff/review$"))
    assert "审核队列已空" in page.inner_text("main")

    with review_console.app.extensions["collector"].db.session() as session:
        statuses = {p.id: p.status for p in session.scalars(select(Photo).where(Photo.id.in_([first, second, third])))}
        owners = {p.id: p.candidate_id for p in session.scalars(select(Photo).where(Photo.id.in_([first, second, third])))}
    assert statuses == {first: "approved", second: "approved", third: "rejected"}
    rejected_chat = next(chat for chat in chats if _candidate_id(review_console.app, chat.openid) == owners[third])
    assert messages.REJECTED.format(reason=blurry_text) not in texts_to(fake_wechat, rejected_chat.openid)
    deliver_after_grace(review_console.app)
    assert messages.REJECTED.format(reason=blurry_text) in texts_to(fake_wechat, rejected_chat.openid)
    assert rejected_chat.state() == "photo"
    approved = [chat for chat in chats if chat is not rejected_chat]
    assert all(messages.APPROVED in texts_to(fake_wechat, chat.openid) for chat in approved)


def _candidate_id(app, openid: str) -> int:
    from store.queries import find_candidate
    with app.extensions["collector"].db.session() as session:
        return find_candidate(session, openid).id


def test_undo_inside_the_grace_period_means_nothing_is_sent(review_console, candidates, page, fake_wechat):
    [chat] = candidates(1)
    review_console.add_user("审核员甲", "reviewer")
    sign_in(page, review_console.url, "审核员甲")
    page.goto(f"{review_console.url}/staff/review/next")
    photo_id = wait_for_photo(page)
    page.keyboard.press("a")
    page.wait_for_url(re.compile(r"/staff/review$"))
    assert chat.state() == "approved"
    page.keyboard.press("u")
    page.wait_for_url(re.compile(rf"/staff/review/photo/{photo_id}$"))
    assert "已撤销" in page.inner_text("main")
    assert chat.state() == "under_review"
    deliver_after_grace(review_console.app)
    assert messages.APPROVED not in texts_to(fake_wechat, chat.openid)
    assert page.locator("#approve").is_visible()  # the photo is back in this reviewer's hands


def test_a_refused_photo_sent_to_review_is_accepted_with_the_wrong_rule_marked(
        review_console, page, new_page, fake_wechat, photo):
    app = review_console.app
    seed_roster(app)
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_review_forced")
    chat.walk_to_photo(GRADUATES[0])
    refusal = chat.send_photo(photo(REFUSED_BACKGROUND))
    assert chat.state() == "photo", refusal
    with app.extensions["collector"].db.session() as session:
        photo_id = session.scalar(select(Photo.id).where(Photo.status == "checked"))
    result = app.test_cli_runner().invoke(args=["review", "force", str(photo_id), "--why", "米色背景人工看合格",
                                                "--by", "客服小李"])
    assert result.exit_code == 0, result.output
    assert chat.state() == "payment"  # not paid yet: the photo waits for the payment
    assert messages.SENT_TO_REVIEW_PAY_FIRST.format(fee="30", review_hours=48) in texts_to(fake_wechat, chat.openid)
    chat.pay(chat.pay_link(_pay_text(chat)))
    assert chat.state() == "under_review"

    review_console.add_user("审核员甲", "reviewer")
    sign_in(page, review_console.url, "审核员甲")
    page.goto(f"{review_console.url}/staff/review/next")
    assert wait_for_photo(page) == photo_id
    assert "自动检查拒绝了这张照片" in page.inner_text(".refusal")
    assert "background.color" in page.inner_text(".findings")
    page.keyboard.press("a")  # refused: approving needs the wrong rule marked
    page.wait_for_url(re.compile(rf"/staff/review/photo/{photo_id}$"))
    assert "判断错误" in page.inner_text("main")
    page.check("input[name=wrong_rule][value='background.color']")
    page.click("#approve")
    page.wait_for_url(re.compile(r"/staff/review$"))
    deliver_after_grace(app)
    assert messages.APPROVED in texts_to(fake_wechat, chat.openid)

    review_console.add_user("管理员", "admin")
    admin = new_page()
    sign_in(admin, review_console.url, "管理员")
    admin.goto(f"{review_console.url}/staff/review/overrides")
    listed = admin.inner_text("#overrides")
    assert "张三" in listed and "background.color" in listed and "客服小李" in listed and "审核员甲" in listed


def _pay_text(chat: Chat) -> str:
    """The candidate does what the message says: replies 缴费 and gets the payment link."""
    return chat.say("缴费")


def test_two_reviewers_in_two_browsers_never_get_the_same_photo(review_console, candidates, page, new_page):
    candidates(2)
    review_console.add_user("审核员甲", "reviewer")
    review_console.add_user("审核员乙", "reviewer")
    other = new_page()
    sign_in(page, review_console.url, "审核员甲")
    sign_in(other, review_console.url, "审核员乙")
    page.goto(f"{review_console.url}/staff/review/next")
    other.goto(f"{review_console.url}/staff/review/next")
    mine, theirs = wait_for_photo(page), wait_for_photo(other)
    assert mine != theirs
    other.goto(f"{review_console.url}/staff/review/photo/{mine}")
    assert "正由 审核员甲 审核" in other.inner_text("main")
    assert other.locator("#approve").count() == 0
    page.goto(f"{review_console.url}/staff/review/next")  # 甲's own photo again, not 乙's
    assert wait_for_photo(page) == mine


def test_a_support_account_cannot_review_or_approve(review_console, candidates, page):
    candidates(1)
    review_console.add_user("客服小李", "support")
    sign_in(page, review_console.url, "客服小李")
    with review_console.app.extensions["collector"].db.session() as session:
        photo_id = session.scalar(select(Photo.id).where(Photo.status == "submitted"))
    assert page.goto(f"{review_console.url}/staff/review").status == 403
    assert page.goto(f"{review_console.url}/staff/review/photo/{photo_id}/image").status == 403
    page.goto(f"{review_console.url}/staff/")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(f"{review_console.url}/staff/review/photo/{photo_id}/approve",
                                 form={"csrf_token": token}, headers={"Referer": f"{review_console.url}/staff/"})
    assert response.status == 403
    with review_console.app.extensions["collector"].db.session() as session:
        assert session.get(Photo, photo_id).status == "submitted"


def test_an_admin_edits_the_preset_reasons_and_a_reviewer_may_not(review_console, page, new_page):
    review_console.add_user("管理员", "admin")
    review_console.add_user("审核员甲", "reviewer")
    sign_in(page, review_console.url, "管理员")
    page.goto(f"{review_console.url}/staff/review/reasons")
    row = page.locator("#reasons tbody tr", has_text="blurry")
    row.locator("textarea[name=text]").fill("照片不清楚：请对焦后重拍。")
    row.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/staff/review/reasons$"))
    assert "已保存原因" in page.inner_text("main")
    page.fill("#new-reason input[name=code]", "hat")
    page.fill("#new-reason input[name=label]", "戴帽子")
    page.fill("#new-reason textarea[name=text]", "请摘下帽子后重新拍摄。")
    page.click("#new-reason button[type=submit]")
    page.wait_for_url(re.compile(r"/staff/review/reasons$"))
    with review_console.app.extensions["collector"].db.session() as session:
        texts = {r.code: r.text for r in session.scalars(select(RejectReason))}
    assert texts["blurry"] == "照片不清楚：请对焦后重拍。" and texts["hat"] == "请摘下帽子后重新拍摄。"
    shoot(page, "review-reasons")
    page.goto(f"{review_console.url}/staff/review/quality")
    assert "审核员" in page.inner_text("#figures")

    reviewer = new_page()
    sign_in(reviewer, review_console.url, "审核员甲")
    assert reviewer.goto(f"{review_console.url}/staff/review/reasons").status == 403
    assert reviewer.goto(f"{review_console.url}/staff/review/overrides").status == 403


def test_a_drawn_approval_is_checked_blind_by_another_reviewer_and_the_disagreement_listed(
        make_app, serve, fake_wechat, photo, page, new_page):
    app = make_app(console=console_settings(), review={"undo_seconds": GRACE, "second_review_share": 1.0})
    live = LiveConsole(app, serve(app))
    seed_roster(app)
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_review_second")
    chat.walk_to_photo(GRADUATES[0])
    chat.pay(chat.pay_link(chat.send_photo(photo(COMPLIANT[0]))))
    for name, role in (("审核员甲", "reviewer"), ("审核员乙", "reviewer"), ("管理员", "admin")):
        live.add_user(name, role)
    sign_in(page, live.url, "审核员甲")
    page.goto(f"{live.url}/staff/review/next")
    photo_id = wait_for_photo(page)
    page.keyboard.press("a")
    page.wait_for_url(re.compile(r"/staff/review$"))

    second = new_page()
    sign_in(second, live.url, "审核员乙")
    second.goto(f"{live.url}/staff/review/next")
    assert wait_for_photo(second) == photo_id
    screen = second.inner_text("main")
    assert "盲审" in screen and "审核员甲" not in screen and "已通过" not in screen
    second.keyboard.press("1")
    second.keyboard.press("r")
    second.wait_for_url(re.compile(r"/staff/review$"))
    assert chat.state() == "approved"  # the second look changes nothing for the candidate

    admin = new_page()
    sign_in(admin, live.url, "管理员")
    admin.goto(f"{live.url}/staff/review/quality")
    listed = admin.inner_text("#disagreements")
    assert "张三" in listed and "审核员甲：通过" in listed and "审核员乙：不通过" in listed
    assert "100.0%" in admin.inner_text("#figures")
    shoot(admin, "review-quality")
