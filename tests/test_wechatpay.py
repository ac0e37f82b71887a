"""WeChat Pay (API v3, JSAPI) through the real doors: the chat's link, the pay page reached through
WeChat OAuth, WeChat Pay's notifications over HTTP, and the periodic reconciliation."""
from __future__ import annotations

import time
from base64 import b64decode
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.hashes import SHA256
from sqlalchemy import func, select

import messages
from app import create_app
from payments.reconcile import reconcile_orders
from settings import ConfigError
from store.models import Message, Notification, Order, Refund, utcnow
from tests.journey import GRADUATES, write_config
from tests.wechatpay_fixtures import (fake_pay, keys, notify_url, open_page, page_params, pay_app,  # noqa: F401
                                      pay_link, phone, post_notification, served, trade_no, wechatpay_section)

PHOTO = "webmorph_004_03_blue_ok.jpg"
OPENID = "o_candidate_1"


def at_payment(app, fake_wechat, photo, openid: str = OPENID, graduate: dict = GRADUATES[0]):
    """A candidate whose photo passed: their chat, and the payment link the bot sent."""
    chat = phone(app, fake_wechat, openid)
    chat.walk_to_photo(graduate)
    reply = chat.send_photo(photo(PHOTO))
    assert chat.state() == "payment", reply
    return chat, pay_link(reply)


def opened_order(app, fake_wechat, photo, openid: str = OPENID) -> tuple:
    """The candidate has opened the pay page (a JSAPI order exists at WeChat Pay)."""
    chat, link = at_payment(app, fake_wechat, photo, openid)
    page = open_page(link, fake_wechat, openid)
    assert page.status_code == 200, page.text
    return chat, link, trade_no(page.text)


def orders(app) -> list[Order]:
    with app.extensions["collector"].db.session() as session:
        return list(session.scalars(select(Order).order_by(Order.id)))


def count(app, query) -> int:
    with app.extensions["collector"].db.session() as session:
        return session.scalar(query)


def payment_notices(app) -> int:
    return count(app, select(func.count()).select_from(Notification)
                 .where(Notification.kind == "payment_done", Notification.channel == "wechat"))


def reconcile(app, minutes_later: float) -> dict:
    with app.app_context():
        return reconcile_orders(app.extensions["collector"], now=utcnow() + timedelta(minutes=minutes_later))


def payment_texts(fake_wechat, openid: str = OPENID) -> list[str]:
    return [m["text"]["content"] for m in fake_wechat.messages_to(openid)
            if m.get("msgtype") == "text" and "支付成功" in m["text"]["content"]]


def refund_texts(fake_wechat, openid: str) -> list[str]:
    return [m["text"]["content"] for m in fake_wechat.messages_to(openid)
            if m.get("msgtype") == "text" and "退回" in m["text"]["content"]]


# -- the whole payment ---------------------------------------------------------------------------

def test_a_full_jsapi_payment(pay_app, served, fake_wechat, fake_pay, keys, photo):
    chat, link = at_payment(pay_app, fake_wechat, photo)
    assert link.startswith(f"{served.url}/pay/wechat/")

    page = open_page(link, fake_wechat, OPENID)
    assert page.status_code == 200
    assert any(path == "/connect/oauth2/authorize" for _, path in fake_wechat.requests)
    assert "getBrandWCPayRequest" in page.text and "¥30.00" in page.text
    params = page_params(page.text)
    assert params["appId"] == fake_pay.appid and params["signType"] == "RSA"
    signed = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    keys.merchant.public_key().verify(b64decode(params["paySign"]), signed.encode(), padding.PKCS1v15(), SHA256())

    out_trade_no = trade_no(page.text)
    remote = fake_pay.order(out_trade_no)
    assert params["package"] == f"prepay_id={remote.prepay_id}"
    assert remote.amount_total == 3000 and remote.currency == "CNY" and remote.payer_openid == OPENID
    assert remote.notify_url == f"{served.url}/pay/notify"
    assert remote.time_expire.endswith("+08:00")
    status_url = f"{link}/status"
    assert requests.get(status_url, timeout=5).json() == {"status": "pending"}

    fake_pay.pay(out_trade_no, OPENID)

    assert [d.status for d in fake_pay.notifications] == [204]
    assert chat.state() == "under_review"
    paid_by = fake_pay.order(out_trade_no).transaction_id
    assert [(o.status, o.transaction_id) for o in orders(pay_app)] == [("paid", paid_by)]
    assert requests.get(status_url, timeout=5).json() == {"status": "paid"}
    fake_wechat.wait_for_messages(1)
    assert payment_texts(fake_wechat) == ["支付成功（30元）。照片已提交人工审核，48小时内完成，结果会通知您。"]
    assert count(pay_app, select(func.count()).select_from(Message).where(
        Message.openid == OPENID, Message.direction == "out", Message.content.contains("支付成功"))) == 1
    assert "已支付" in open_page(link, fake_wechat, OPENID).text


def test_the_prepay_is_reused_when_the_page_is_opened_again(pay_app, fake_wechat, fake_pay, photo):
    chat, link = at_payment(pay_app, fake_wechat, photo)
    first = page_params(open_page(link, fake_wechat, OPENID).text)
    second = page_params(open_page(link, fake_wechat, OPENID).text)
    assert first["package"] == second["package"]
    assert fake_pay.requests.count(("POST", "/v3/pay/transactions/jsapi")) == 1


def test_someone_else_opening_the_link_is_told_and_nothing_is_ordered(pay_app, fake_wechat, fake_pay, photo):
    chat, link = at_payment(pay_app, fake_wechat, photo)
    page = open_page(link, fake_wechat, "o_someone_else")
    assert page.status_code == 403
    assert "此支付链接属于另一个微信号" in page.text and "getBrandWCPayRequest" not in page.text
    assert fake_pay.orders == []


def test_a_used_oauth_code_asks_to_try_again(pay_app, fake_wechat, photo):
    chat, link = at_payment(pay_app, fake_wechat, photo)
    page = open_page(link, fake_wechat, OPENID)
    replayed = requests.get(page.url, timeout=5)  # the same ?code= again (a reload)
    assert replayed.status_code == 400 and "未能确认您的微信身份" in replayed.text


# -- notifications that must be refused ----------------------------------------------------------

def forge(fake_pay, out_trade_no: str, how: str) -> tuple[dict, bytes]:
    resource = fake_pay.transaction_json(out_trade_no)
    now = int(time.time())
    if how == "bad signature":
        headers, body = fake_pay.notification("TRANSACTION.SUCCESS", "transaction", resource, "支付成功")
        return headers, body.replace(b'"summary": "', b'"summary": "x')
    if how == "wrong amount":
        resource["amount"]["total"] = 1
        return fake_pay.notification("TRANSACTION.SUCCESS", "transaction", resource, "支付成功")
    if how == "wrong serial":
        return fake_pay.notification("TRANSACTION.SUCCESS", "transaction", resource, "支付成功",
                                     serial="PUB_KEY_ID_0000000000000000000000000000000000")
    if how == "stale timestamp":
        return fake_pay.notification("TRANSACTION.SUCCESS", "transaction", resource, "支付成功", timestamp=now - 301)
    if how == "future timestamp":
        # `now` is truncated and the request takes time to arrive: a margin keeps the stamp outside the
        # 300 s skew by the time the server reads it (301 let a slow run through as fresh).
        return fake_pay.notification("TRANSACTION.SUCCESS", "transaction", resource, "支付成功", timestamp=now + 330)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["bad signature", "wrong amount", "wrong serial", "stale timestamp",
                                 "future timestamp"])
def test_a_forged_notification_is_refused_and_changes_nothing(pay_app, served, fake_wechat, fake_pay, photo, how):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)
    fake_pay.lost_notifications = True
    fake_pay.pay(out_trade_no, OPENID)  # paid at WeChat Pay; only the forgery reaches us

    response = post_notification(notify_url(served), *forge(fake_pay, out_trade_no, how))

    assert 400 <= response.status_code < 500
    assert response.json()["code"] == "FAIL" and response.json()["message"]
    assert [o.status for o in orders(pay_app)] == ["pending"]
    assert chat.state() == "payment" and payment_notices(pay_app) == 0
    assert ("GET", "/v3/certificates") not in fake_pay.requests


def test_a_notification_for_an_unknown_order_is_refused(pay_app, served, fake_pay, fake_wechat, photo):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)
    resource = {**fake_pay.transaction_json(out_trade_no), "trade_state": "SUCCESS", "transaction_id": "4200X",
                "out_trade_no": "PC20261124000000NOSUCHORDER"}
    response = post_notification(notify_url(served), *fake_pay.notification(
        "TRANSACTION.SUCCESS", "transaction", resource, "支付成功"))
    assert response.status_code == 400 and response.json() == {"code": "FAIL", "message": "unknown out_trade_no"}


# -- repeated, lost and late notifications -------------------------------------------------------

def test_the_same_notification_ten_times_at_once_pays_once_and_tells_once(pay_app, served, fake_wechat, fake_pay,
                                                                          photo):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)
    fake_pay.lost_notifications = True
    headers, body = fake_pay.pay(out_trade_no, OPENID)

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda _: post_notification(notify_url(served), headers, body).status_code,
                                 range(10)))

    assert statuses == [204] * 10
    assert [o.status for o in orders(pay_app)] == ["paid"]
    assert chat.state() == "under_review"
    assert payment_notices(pay_app) == 1
    fake_wechat.wait_for_messages(1)
    time.sleep(0.2)
    assert len(payment_texts(fake_wechat)) == 1


def test_a_lost_notification_is_recovered_by_reconciliation(pay_app, fake_wechat, fake_pay, photo):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)
    fake_pay.lost_notifications = True
    fake_pay.pay(out_trade_no, OPENID)
    assert [o.status for o in orders(pay_app)] == ["pending"]

    assert reconcile(pay_app, minutes_later=1) == {}  # too early: the notification may still come
    assert reconcile(pay_app, minutes_later=6) == {"paid": 1}

    assert [o.status for o in orders(pay_app)] == ["paid"]
    assert orders(pay_app)[0].transaction_id == fake_pay.order(out_trade_no).transaction_id
    assert chat.state() == "under_review"
    fake_wechat.wait_for_messages(1)
    assert len(payment_texts(fake_wechat)) == 1
    assert reconcile(pay_app, minutes_later=12) == {}


def test_an_unpaid_expired_order_is_closed_at_wechat_pay_and_here(pay_app, fake_wechat, fake_pay, photo):
    chat, link, out_trade_no = opened_order(pay_app, fake_wechat, photo)

    assert reconcile(pay_app, minutes_later=10) == {"waiting": 1}
    assert fake_pay.order(out_trade_no).trade_state == "NOTPAY"
    assert reconcile(pay_app, minutes_later=31) == {"closed": 1}

    assert fake_pay.order(out_trade_no).trade_state == "CLOSED"
    [order] = orders(pay_app)
    assert order.status == "closed" and order.closed_at is not None and order.queried_at is not None
    assert "此订单已关闭" in open_page(link, fake_wechat, OPENID).text
    new_link = pay_link(chat.say("进度"))
    assert new_link != link
    assert trade_no(open_page(new_link, fake_wechat, OPENID).text) != out_trade_no


def test_an_order_never_opened_is_closed_here_once_expired(pay_app, fake_wechat, fake_pay, photo):
    at_payment(pay_app, fake_wechat, photo)
    assert reconcile(pay_app, minutes_later=10) == {"waiting": 1}
    assert reconcile(pay_app, minutes_later=31) == {"closed": 1}
    assert [o.status for o in orders(pay_app)] == ["closed"] and fake_pay.orders == []


# -- double payment ------------------------------------------------------------------------------

def test_a_payment_for_an_unbound_account_is_refunded_exactly_once(pay_app, served, fake_wechat, fake_pay, photo):
    graduate = GRADUATES[0]
    # The first WeChat account opens its pay page, then staff free the graduate for a second account.
    first, first_link, first_no = opened_order(pay_app, fake_wechat, photo, openid="o_first_account")
    result = pay_app.test_cli_runner().invoke(args=["unbind", graduate["id_number"], "--by", "staff"])
    assert result.exit_code == 0, result.output
    second, second_link, second_no = opened_order(pay_app, fake_wechat, photo, openid="o_second_account")
    assert second_no != first_no

    fake_pay.pay(second_no, "o_second_account")
    assert second.state() == "under_review"
    fake_pay.pay(first_no, "o_first_account")  # the old page, still open, is paid too

    assert [d.status for d in fake_pay.notifications] == [204, 204]
    assert {o.out_trade_no: o.status for o in orders(pay_app)} == {first_no: "closed", second_no: "paid"}
    assert payment_notices(pay_app) == 1
    [refund] = fake_pay.refunds
    assert (refund.out_trade_no, refund.amount_refund, refund.status) == (first_no, 3000, "PROCESSING")

    reconcile(pay_app, minutes_later=6)
    reconcile(pay_app, minutes_later=12)
    assert len(fake_pay.refunds) == 1 and fake_pay.refund_requests == 1

    fake_pay.refund_success(refund.out_refund_no)
    assert fake_pay.notifications[-1].status == 204
    with pay_app.extensions["collector"].db.session() as session:
        [row] = session.scalars(select(Refund))
        assert (row.out_refund_no, row.status, row.refund_id) == (refund.out_refund_no, "success", refund.refund_id)
        assert row.finished_at is not None and row.last_error is None
    assert len(payment_texts(fake_wechat, "o_second_account")) == 1
    assert payment_texts(fake_wechat, "o_first_account") == []
    # Told once, when the money arrived; the refund's success adds nothing.
    assert refund_texts(fake_wechat, "o_first_account") == [messages.ENDED_ORDER_REFUNDING.format(fee="30")]
    fake_pay.refund_success(refund.out_refund_no)  # WeChat Pay repeats the notification
    assert len(refund_texts(fake_wechat, "o_first_account")) == 1


def test_a_lost_refund_notification_is_recovered_by_querying_the_refund(pay_app, served, fake_wechat, fake_pay,
                                                                       photo):
    first, first_link, first_no = opened_order(pay_app, fake_wechat, photo, openid="o_first_account")
    pay_app.test_cli_runner().invoke(args=["unbind", GRADUATES[0]["id_number"], "--by", "staff"])
    second, second_link, second_no = opened_order(pay_app, fake_wechat, photo, openid="o_second_account")
    fake_pay.pay(first_no, "o_first_account")
    fake_pay.pay(second_no, "o_second_account")
    [refund] = fake_pay.refunds
    assert refund.out_trade_no == first_no
    assert reconcile(pay_app, minutes_later=1) == {}  # too soon to ask
    fake_pay.refund_success(refund.out_refund_no, notify=False)  # the notification never arrives
    assert reconcile(pay_app, minutes_later=6) == {"refunds_success": 1}
    assert reconcile(pay_app, minutes_later=12) == {}
    with pay_app.extensions["collector"].db.session() as session:
        [row] = session.scalars(select(Refund))
        assert (row.status, row.refund_id) == ("success", refund.refund_id)
    assert refund_texts(fake_wechat, "o_first_account") == [messages.ENDED_ORDER_REFUNDING.format(fee="30")]
    assert refund_texts(fake_wechat, "o_second_account") == []


def test_a_refund_wechat_pay_refuses_stays_pending_and_the_job_retries_it(pay_app, fake_wechat, fake_pay, photo):
    first, first_link, first_no = opened_order(pay_app, fake_wechat, photo, openid="o_first_account")
    pay_app.test_cli_runner().invoke(args=["unbind", GRADUATES[0]["id_number"], "--by", "staff"])
    second, second_link, second_no = opened_order(pay_app, fake_wechat, photo, openid="o_second_account")
    fake_pay.fail_next_refunds(1)
    fake_pay.pay(first_no, "o_first_account")  # closed by the unbind: refunded, and the refund fails once
    fake_pay.pay(second_no, "o_second_account")

    assert [d.status for d in fake_pay.notifications] == [204, 204]
    assert fake_pay.refunds == [] and fake_pay.refund_requests == 1
    with pay_app.extensions["collector"].db.session() as session:
        [row] = session.scalars(select(Refund))
        assert row.status == "pending" and "SYSTEM_ERROR" in row.last_error and row.requested_at is None

    assert reconcile(pay_app, minutes_later=6) == {"refunds_requested": 1}
    assert [r.out_trade_no for r in fake_pay.refunds] == [first_no]
    with pay_app.extensions["collector"].db.session() as session:
        [row] = session.scalars(select(Refund))
        assert row.status == "processing" and row.last_error is None and row.refund_id
    assert reconcile(pay_app, minutes_later=12) == {"refunds_processing": 1}  # asked about, not requested again
    assert fake_pay.refund_requests == 2


# -- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"mchid": ""}, "lacks: mchid"),
    ({"apiv3_key": "short"}, "apiv3_key"),
    ({"public_key_id": "3775B6A45ACD588826D15E583A95F5DD"}, "public_key_id"),
    ({"private_key_path": "/nonexistent/apiclient_key.pem"}, "cannot read"),
])
def test_incomplete_wechatpay_config_stops_start_up(tmp_path, keys, fake_pay, fake_wechat, database_url, change,
                                                    message):
    from tests.conftest import AES_KEY, APPID, SECRET, TOKEN
    config = write_config(tmp_path, database_url=database_url, api_base_url=fake_wechat.base_url, token=TOKEN,
                          appid=APPID, secret=SECRET, aes_key=AES_KEY,
                          sections={"payment": {"gateway": "wechatpay"},
                                    "wechatpay": wechatpay_section(tmp_path, keys, fake_pay, **change)})
    with pytest.raises(ConfigError, match=message):
        create_app(config)


def test_an_unknown_gateway_stops_start_up(tmp_path, fake_wechat, database_url):
    from tests.conftest import AES_KEY, APPID, SECRET, TOKEN
    config = write_config(tmp_path, database_url=database_url, api_base_url=fake_wechat.base_url, token=TOKEN,
                          appid=APPID, secret=SECRET, aes_key=AES_KEY, sections={"payment": {"gateway": "alipay"}})
    with pytest.raises(ConfigError, match="sandbox"):
        create_app(config)


def test_the_sandbox_pages_are_not_served_with_wechatpay(pay_app, fake_wechat, photo):
    chat, link = at_payment(pay_app, fake_wechat, photo)
    token = link.rsplit("/", 1)[1]
    assert pay_app.test_client().post(f"/pay/sandbox/{token}").status_code == 404
    assert [o.status for o in orders(pay_app)] == ["pending"]


def test_the_orders_job_runs_from_the_cli(pay_app, fake_wechat, fake_pay, photo):
    at_payment(pay_app, fake_wechat, photo)
    result = pay_app.test_cli_runner().invoke(args=["jobs", "run", "orders"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("orders:")  # nothing yet: the order is younger than query_after_minutes
    assert "paid" not in result.output and "closed" not in result.output


def test_a_damaged_wechatpay_link_is_a_chinese_page_and_the_status_poll_stays_plain(pay_app):
    page = pay_app.test_client().get("/pay/wechat/damaged-token?code=any")
    assert page.status_code == 404 and "支付链接无效" in page.get_data(as_text=True)
    poll = pay_app.test_client().get("/pay/wechat/damaged-token/status")  # read by the page's script
    assert poll.status_code == 404 and "支付链接无效" not in poll.get_data(as_text=True)
