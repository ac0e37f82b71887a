"""A candidate's whole journey over the real webhook: signed WeChat XML in, passive replies out."""
from __future__ import annotations

import sqlite3

from sqlalchemy import event

import messages
from tests.journey import Chat


def test_subscribe_greets_and_asks_for_the_institution(chat):
    reply = chat.subscribe()
    assert "毕业证书照片采集" in reply
    assert "北京市高等教育自学考试" in reply
    assert chat.state() == "institution"


def test_happy_path_from_subscribe_to_approved(chat, roster, photo, app, fake_wechat):
    graduate = roster[0]
    chat.subscribe()
    reply = chat.say("北京市高等教育自学考试")
    assert "1 专科" in reply and "2 本科" in reply
    reply = chat.say("2")
    assert "本科" in reply and "身份证号" in reply
    reply = chat.say(f"{graduate['name']} {graduate['id_number']}")
    assert "手机号" in reply
    reply = chat.say("13800138000")
    assert "准考证号：012401234567" in reply
    assert "110101********4573" in reply
    assert graduate["id_number"] not in reply
    reply = chat.say("确认")
    assert "图像采集码" in reply and "我知道了" in reply
    reply = chat.say("我知道了")
    assert "请发送本人标准证件照" in reply
    reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert "检查通过" in reply, reply
    assert chat.state() == "payment"
    response = chat.pay(chat.pay_link(reply))
    assert response.status_code == 200
    assert "已支付" in response.get_data(as_text=True)
    assert chat.state() == "under_review"
    fake_wechat.wait_for_messages(1)
    assert any("支付成功（30元）" in text for text in chat.customer_service_texts())
    assert "审核中" in chat.say("在吗")


def review(app, *args):
    result = app.test_cli_runner().invoke(args=["review", *args])
    assert result.exit_code == 0, result.output
    return result.output


def paid_candidate(chat, graduate, photo):
    chat.walk_to_photo(graduate)
    reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert chat.pay(chat.pay_link(reply)).status_code == 200
    assert chat.state() == "under_review"


def test_approved_candidate_is_told_and_can_view_the_photo(app, chat, roster, photo, fake_wechat):
    paid_candidate(chat, roster[0], photo)
    review(app, "approve", roster[0]["id_number"])
    fake_wechat.wait_for_messages(2)
    assert any("审核通过" in text for text in chat.customer_service_texts())
    assert chat.state() == "approved"
    chat.last = chat.wechat.text(chat.openid, "查看照片")
    assert chat.last.msg_type == "image"
    assert fake_wechat.uploaded_media[chat.last.media_id] == photo("webmorph_004_03_blue_ok.jpg")


def test_rejected_candidate_reuploads_and_is_approved_without_paying_again(app, chat, roster, photo, fake_wechat):
    paid_candidate(chat, roster[0], photo)
    review(app, "reject", roster[0]["id_number"], "--reason", "背景有阴影")
    fake_wechat.wait_for_messages(2)
    assert any("背景有阴影" in text and "无需再次付费" in text for text in chat.customer_service_texts())
    assert chat.state() == "photo"
    assert "上次审核未通过：背景有阴影" in chat.say("进度")
    reply = chat.send_photo(photo("webmorph_019_03_blue_ok.jpg"))
    assert "无需再次付款" in reply and "/pay/" not in reply
    assert chat.state() == "under_review"
    review(app, "approve", roster[0]["id_number"])
    assert chat.state() == "approved"
    from sqlalchemy import func, select
    from store.models import Order
    with app.extensions["collector"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Order).where(Order.status == "paid")) == 1


def test_paying_twice_on_the_page_pays_once_and_tells_once(app, chat, roster, photo, fake_wechat):
    chat.walk_to_photo(roster[0])
    link = chat.pay_link(chat.send_photo(photo("webmorph_004_03_blue_ok.jpg")))
    assert chat.pay(link).status_code == 200
    assert chat.pay(link).status_code == 200
    fake_wechat.wait_for_messages(1)
    assert len([t for t in chat.customer_service_texts() if "支付成功" in t]) == 1


def test_a_forged_payment_link_is_a_404_that_says_what_to_do_in_chinese(app, chat):
    for response in (app.test_client().post("/pay/sandbox/forged-token"),
                     app.test_client().get("/pay/sandbox/forged-token")):
        page = response.get_data(as_text=True)
        assert response.status_code == 404
        assert "支付链接无效" in page and "进度" in page and "Not Found" not in page, page


def test_a_payment_that_fails_mid_way_says_so_in_chinese_and_the_next_press_pays_once(app, chat, roster, photo,
                                                                                        fake_wechat):
    chat.walk_to_photo(roster[0])
    link = chat.pay_link(chat.send_photo(photo("webmorph_004_03_blue_ok.jpg")))
    engine = app.extensions["collector"].db.engine

    def disk_fails(connection, cursor, statement, *_):
        if statement.startswith("UPDATE orders"):
            raise sqlite3.OperationalError("disk I/O error")  # the database failing as the payment is stored

    event.listen(engine, "before_cursor_execute", disk_fails)
    try:
        response = chat.pay(link)
    finally:
        event.remove(engine, "before_cursor_execute", disk_fails)
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "系统繁忙" in page and "刷新本页" in page and "Internal Server Error" not in page, page
    assert chat.state() == "payment"  # nothing of the failed press was kept
    assert "已支付" in chat.pay(link).get_data(as_text=True)
    assert chat.state() == "under_review"
    fake_wechat.wait_for_messages(1)
    assert len([t for t in chat.customer_service_texts() if "支付成功" in t]) == 1


def test_a_new_photo_while_paying_replaces_the_old_one(chat, roster, photo):
    chat.walk_to_photo(roster[0])
    first = chat.pay_link(chat.send_photo(photo("webmorph_004_03_blue_ok.jpg")))
    second = chat.pay_link(chat.send_photo(photo("webmorph_019_03_blue_ok.jpg")))
    assert first == second  # the same pending order, not a second one
    assert chat.state() == "payment"
    assert "/pay/sandbox/" in chat.say("怎么付款")


def test_a_replaced_order_cannot_be_paid_from_its_old_page(app, chat, roster, fake_wechat, photo):
    chat.walk_to_photo(roster[0])
    old_link = chat.pay_link(chat.send_photo(photo("webmorph_004_03_blue_ok.jpg")))
    assert app.test_cli_runner().invoke(args=["unbind", roster[0]["id_number"], "--by", "staff"]).exit_code == 0
    other = Chat(app, chat.wechat, fake_wechat, openid="o_other_account")
    other.walk_to_photo(roster[0])
    new_link = other.pay_link(other.send_photo(photo("webmorph_004_03_blue_ok.jpg")))
    assert new_link != old_link
    page = chat.pay(old_link)
    assert page.status_code == 200 and messages.PAY_PAGE["ended"] in page.get_data(as_text=True)
    assert other.state() == "payment"
    assert other.pay(new_link).status_code == 200 and other.state() == "under_review"


def test_restart_after_payment_is_refused(chat, roster, photo):
    paid_candidate(chat, roster[0], photo)
    assert "您已付款，不能重新开始" in chat.say("重新开始")
    assert chat.state() == "under_review"


def test_slow_photo_is_answered_at_once_and_the_verdict_follows(make_app, fake_wechat, photo):
    app = make_app(wechat={"reply_budget_seconds": 0.3})
    from tests.conftest import simulator_for
    from tests.journey import Chat, seed_roster
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_slow")
    graduate = seed_roster(app)[0]
    chat.walk_to_photo(graduate)
    reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"), delay=1.0)
    assert "正在检查" in reply
    messages = fake_wechat.wait_for_messages(1, timeout=15)
    assert "检查通过" in messages[-1]["text"]["content"]
    assert "/pay/sandbox/" in messages[-1]["text"]["content"]
    assert chat.state() == "payment"


def test_before_the_window_opens(make_app, fake_wechat):
    app = make_app(window={"start": "2099-06-13T00:00:00", "end": "2099-06-15T23:59:59"})
    from tests.conftest import simulator_for
    wechat = simulator_for(app)
    reply = wechat.event("o_early", "subscribe").content
    assert "2099年06月13日 00:00开放" in reply
    assert "2099年06月13日 00:00开放" in wechat.text("o_early", "北京市高等教育自学考试").content
    assert "当前进度" in wechat.text("o_early", "进度").content


def test_after_the_window_closes(make_app, fake_wechat):
    app = make_app(window={"start": "2024-06-13T00:00:00", "end": "2024-06-15T23:59:59"})
    from tests.conftest import simulator_for
    wechat = simulator_for(app)
    reply = wechat.text("o_late", "北京市高等教育自学考试").content
    assert "已于2024年06月15日 23:59结束" in reply and "010-58691620" in reply
    assert "当前进度" in wechat.text("o_late", "进度").content
    assert "还没有审核通过的照片" in wechat.text("o_late", "查看照片").content


def test_ten_simultaneous_presses_of_pay_pay_once_and_tell_once(app, chat, roster, photo, fake_wechat):
    from concurrent.futures import ThreadPoolExecutor
    chat.walk_to_photo(roster[0])
    link = chat.pay_link(chat.send_photo(photo("webmorph_004_03_blue_ok.jpg")))
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda _: app.test_client().post(link).status_code, range(10)))
    assert statuses == [200] * 10
    # Customer-service messages are sent before the page answers, so all of them have arrived by now.
    assert len([t for t in chat.customer_service_texts() if "支付成功" in t]) == 1
    assert chat.state() == "under_review"
