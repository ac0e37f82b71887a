"""An order belongs to the collection it was opened for: after 重新开始 or a staff unbind its pay link is
closed, money that still arrives for it goes back (told once, nobody moved), and no other account rides
on it. Through the chat, the pay pages, WeChat Pay's notifications and the `orders` job."""
from __future__ import annotations

import time

from sqlalchemy import func, select

import messages
from store.models import Notification, Refund
from tests.journey import GRADUATES, Chat
from tests.test_wechatpay import OPENID, PHOTO, count, opened_order, orders, payment_notices, reconcile
from tests.wechatpay_fixtures import (fake_pay, keys, notify_url, open_page, pay_app, pay_link,  # noqa: F401
                                      phone, post_notification, served, trade_no)

GRADUATE = GRADUATES[0]


def ended_texts(fake_wechat, openid: str) -> list[str]:
    return [m["text"]["content"] for m in fake_wechat.messages_to(openid)
            if m.get("msgtype") == "text" and "已作废" in m["text"]["content"]]


def refund_rows(app) -> list[Refund]:
    with app.extensions["collector"].db.session() as session:
        return list(session.scalars(select(Refund).order_by(Refund.id)))


# -- the sandbox -------------------------------------------------------------------------------------

def test_after_restart_the_old_sandbox_link_is_closed_and_pressing_pay_pays_nothing(app, chat, roster, photo,
                                                                                    fake_wechat):
    chat.walk_to_photo(GRADUATE)
    old_link = chat.pay_link(chat.send_photo(photo(PHOTO)))
    assert "已重新开始" in chat.say("重新开始")

    page = app.test_client().get(old_link).get_data(as_text=True)
    assert messages.PAY_PAGE["ended"] in page and "<form" not in page
    pressed = chat.pay(old_link)

    assert pressed.status_code == 200 and messages.PAY_PAGE["ended"] in pressed.get_data(as_text=True)
    assert [(o.status, o.closed_reason, o.transaction_id) for o in orders(app)] == [("closed", "restart", None)]
    assert chat.state() == "institution"
    assert payment_notices(app) == 0 and refund_rows(app) == []
    assert not any("支付成功" in text for text in chat.customer_service_texts())


def test_after_restart_the_same_account_collects_again_with_a_new_link(app, chat, roster, photo):
    chat.walk_to_photo(GRADUATE)
    old_link = chat.pay_link(chat.send_photo(photo(PHOTO)))
    chat.say("重新开始")
    chat.pay(old_link)

    chat.say("北京市高等教育自学考试")  # the institution step is where restart left it
    chat.say(GRADUATE["level"])
    chat.say(f"{GRADUATE['name']} {GRADUATE['id_number']}")
    chat.say("13800138000")
    chat.say("1")
    chat.say("我知道了")
    new_link = chat.pay_link(chat.send_photo(photo(PHOTO)))

    assert new_link != old_link
    assert chat.pay(new_link).status_code == 200 and chat.state() == "under_review"
    assert [o.status for o in orders(app)] == ["closed", "paid"]


def test_another_account_binding_the_graduate_after_a_restart_must_pay(app, chat, roster, photo, fake_wechat):
    chat.walk_to_photo(GRADUATE)
    old_link = chat.pay_link(chat.send_photo(photo(PHOTO)))
    chat.say("重新开始")
    chat.pay(old_link)  # pays nothing

    other = Chat(app, chat.wechat, fake_wechat, openid="o_other_account")
    other.walk_to_photo(GRADUATE)
    reply = other.send_photo(photo(PHOTO))

    assert other.state() == "payment", reply
    assert other.pay(other.pay_link(reply)).status_code == 200 and other.state() == "under_review"
    assert chat.state() == "institution"


def test_a_staff_unbind_closes_the_old_accounts_sandbox_link(app, chat, roster, photo):
    chat.walk_to_photo(GRADUATE)
    old_link = chat.pay_link(chat.send_photo(photo(PHOTO)))
    result = app.test_cli_runner().invoke(args=["unbind", GRADUATE["id_number"], "--by", "staff"])
    assert result.exit_code == 0, result.output

    assert messages.PAY_PAGE["ended"] in chat.pay(old_link).get_data(as_text=True)
    assert [(o.status, o.closed_reason) for o in orders(app)] == [("closed", "unbind")]
    assert chat.state() == "welcome" and payment_notices(app) == 0


def test_a_photo_checked_while_the_candidate_restarts_opens_no_order(app, chat, roster, photo, fake_wechat):
    from concurrent.futures import ThreadPoolExecutor
    from tests.conftest import simulator_for
    chat.walk_to_photo(GRADUATE)
    with ThreadPoolExecutor(max_workers=1) as pool:
        media_id = fake_wechat.add_media(photo(PHOTO), content_type="image/jpeg", filename="p.jpg", delay=1.5)
        checking = pool.submit(lambda: simulator_for(app).image(chat.openid, media_id))
        time.sleep(0.5)  # the download is under way and holds no lock
        assert "已重新开始" in chat.say("重新开始")
        reply = checking.result(timeout=30)

    # The verdict answers with the step the candidate is now at, not an error, and opens no order.
    assert reply.status == 200 and "请一字不差地输入院校名称" in reply.content, reply.content
    assert orders(app) == [] and chat.state() == "institution"


# -- WeChat Pay --------------------------------------------------------------------------------------

def test_a_payment_arriving_for_an_order_closed_by_restart_is_refunded_once_and_told_once(
        pay_app, served, fake_wechat, fake_pay, photo):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)
    assert "已重新开始" in chat.say("重新开始")
    assert messages.WECHATPAY_PAGE["ended"] in open_page(link, fake_wechat, OPENID).text

    headers, body = fake_pay.pay(out_trade_no, OPENID)  # the page was still open in WeChat Pay's window
    again = post_notification(notify_url(served), headers, body)  # WeChat Pay repeats it

    assert [d.status for d in fake_pay.notifications] == [204] and again.status_code == 204
    [order] = orders(pay_app)
    assert (order.status, order.closed_reason) == ("closed", "restart")
    assert order.transaction_id == fake_pay.order(out_trade_no).transaction_id
    [refund] = fake_pay.refunds
    assert (refund.out_trade_no, refund.amount_refund) == (out_trade_no, 3000) and fake_pay.refund_requests == 1
    assert chat.state() == "institution" and payment_notices(pay_app) == 0
    fake_wechat.wait_for_messages(1)
    time.sleep(0.2)
    assert ended_texts(fake_wechat, OPENID) == [messages.ENDED_ORDER_REFUNDING.format(fee="30")]
    assert messages.WECHATPAY_PAGE["ended_paid"] in open_page(link, fake_wechat, OPENID).text

    # Nothing left to close or refund; the refund WeChat Pay accepted is only asked about.
    assert reconcile(pay_app, minutes_later=6) == {"refunds_processing": 1}
    fake_pay.refund_success(refund.out_refund_no)
    fake_pay.refund_success(refund.out_refund_no)
    assert [r.status for r in refund_rows(pay_app)] == ["success"]
    assert fake_pay.refund_requests == 1
    time.sleep(0.2)
    assert len(ended_texts(fake_wechat, OPENID)) == 1 and not any(
        "重复支付" in m["text"]["content"] for m in fake_wechat.messages_to(OPENID) if m.get("msgtype") == "text")

    # Another account binding the same graduate rides on nothing: it is asked to pay.
    other = phone(pay_app, fake_wechat, "o_other_account")
    other.walk_to_photo(GRADUATE)
    reply = other.send_photo(photo(PHOTO))
    assert other.state() == "payment" and pay_link(reply)
    assert chat.state() == "institution"


def test_the_orders_job_closes_a_restarted_order_at_wechat_pay(pay_app, fake_wechat, fake_pay, photo):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)
    chat.say("重新开始")
    assert fake_pay.order(out_trade_no).trade_state == "NOTPAY"

    assert reconcile(pay_app, minutes_later=0) == {"closed": 1}  # at once: no waiting for a notification

    assert fake_pay.order(out_trade_no).trade_state == "CLOSED"
    [order] = orders(pay_app)
    assert order.status == "closed" and order.closed_reason == "restart" and order.closed_at is not None
    assert reconcile(pay_app, minutes_later=1) == {}


def test_a_restarted_order_never_opened_at_wechat_pay_is_closed_once(pay_app, fake_wechat, fake_pay, photo):
    chat = phone(pay_app, fake_wechat, OPENID)
    chat.walk_to_photo(GRADUATE)
    link = pay_link(chat.send_photo(photo(PHOTO)))
    chat.say("重新开始")

    assert reconcile(pay_app, minutes_later=0) == {"closed": 1}
    assert reconcile(pay_app, minutes_later=1) == {}
    page = open_page(link, fake_wechat, OPENID)
    assert messages.WECHATPAY_PAGE["ended"] in page.text and fake_pay.orders == []


def test_a_lost_notification_for_a_restarted_order_is_found_and_refunded_by_the_job(pay_app, fake_wechat,
                                                                                   fake_pay, photo):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)
    chat.say("重新开始")
    fake_pay.lost_notifications = True
    fake_pay.pay(out_trade_no, OPENID)

    assert reconcile(pay_app, minutes_later=0) == {"refunding": 1}
    assert reconcile(pay_app, minutes_later=6) == {"refunds_processing": 1}

    assert [r.out_trade_no for r in fake_pay.refunds] == [out_trade_no] and fake_pay.refund_requests == 1
    assert chat.state() == "institution" and payment_notices(pay_app) == 0
    assert count(pay_app, select(func.count()).select_from(Notification)
                 .where(Notification.openid == OPENID, Notification.kind == "refunded")) == 1
    [order] = orders(pay_app)
    assert order.status == "closed" and order.transaction_id is not None
