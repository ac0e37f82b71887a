"""Issue 13: the conversation as a slightly confused candidate walks it, through the webhook."""
from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from store.models import MatchAttempt
from tests.journey import GRADUATES

ZHANG = GRADUATES[0]


@pytest.fixture
def at_identity(chat):
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    chat.say("本科")
    return chat


@pytest.fixture
def at_phone(at_identity):
    assert "手机号" in at_identity.say(f"{ZHANG['name']} {ZHANG['id_number']}")
    return at_identity


def failed_matches(app) -> int:
    with app.extensions["collector"].db.session() as session:
        return len(session.scalars(select(MatchAttempt).where(MatchAttempt.matched.is_(False))).all())


@pytest.mark.parametrize("typed", [
    f"我叫{ZHANG['name']}，身份证{ZHANG['id_number']}",
    f"姓名：{ZHANG['name']} 身份证号：{ZHANG['id_number']}",
    f"名字是{ZHANG['name']}，身份证号码是{ZHANG['id_number']}。",
    f"身份证号{ZHANG['id_number']}，我叫{ZHANG['name']}",
])
def test_common_phrasings_of_name_and_id_number_are_understood(at_identity, typed):
    reply = at_identity.say(typed)
    assert "已在毕业生名单中找到您" in reply and "手机号" in reply, reply
    assert at_identity.state() == "phone"


@pytest.mark.parametrize("typed", [f"身份证号码 {ZHANG['id_number']}", f"你好我的身份证{ZHANG['id_number']}"])
def test_a_message_without_a_plausible_name_is_never_a_failed_match(app, at_identity, typed):
    reply = at_identity.say(typed)
    assert "无法采集" not in reply and at_identity.state() == "identity", reply
    assert failed_matches(app) == 0


def test_a_locked_out_account_is_told_before_any_phone_number(app, at_identity):
    for n in range(5):
        assert "无法采集" in at_identity.say("王五 110101199003074573")
    reply = at_identity.say(f"{ZHANG['name']} {ZHANG['id_number']}")
    assert "核对失败次数过多" in reply and "手机号" not in reply
    assert at_identity.state() == "identity"


@pytest.mark.parametrize("typed", [
    f"{ZHANG['name']} {ZHANG['id_number']}", ZHANG["id_number"], "王小明 1101011995031201", "11010119900307",
])
def test_identity_typed_again_at_the_phone_step_is_already_recorded(app, at_phone, typed, caplog):
    caplog.set_level(logging.INFO)
    reply = at_phone.say(typed)
    assert "姓名和身份证号已核对" in reply and "请输入本人11位手机号" in reply, reply
    assert "110101********4573" in reply  # what was recorded, masked
    for digits in ("19900307", "1995031201", "11010119900307"):  # never an ID number, whole or in part
        assert digits not in reply
    assert at_phone.state() == "phone"
    out = app.test_cli_runner().invoke(args=["transcript", at_phone.openid])
    assert out.exit_code == 0, out.output
    assert "19950312" not in out.output and "0119900307" not in out.output, out.output
    assert not any("19950312" in r.getMessage() or "0119900307" in r.getMessage() for r in caplog.records)


def test_a_wrong_phone_is_quoted_cut_with_an_ellipsis(at_phone):
    reply = at_phone.say("我的手机号是一三八零零一三八零零零，谢谢您")
    assert "“我的手机号是一三八零零一三八零零零,谢…”不是有效的11位手机号" in reply, reply


def test_an_id_number_typed_at_the_institution_step_is_never_echoed(at_identity, chat):
    chat.say("重新开始")
    reply = chat.say(ZHANG["id_number"])
    assert "没有找到" in reply and "19900307" not in reply and "110101********4573" in reply, reply


CLOSED = {"start": "2024-06-13T00:00:00", "end": "2024-06-15T23:59:59"}
NOT_YET = {"start": "2099-06-13T00:00:00", "end": "2099-06-15T23:59:59"}


def window_chat(make_app, window, openid="o_outside"):
    from tests.conftest import simulator_for
    app = make_app(window=window)
    wechat = simulator_for(app)
    return lambda text: wechat.text(openid, text).content, lambda: wechat.event(openid, "subscribe").content


@pytest.mark.parametrize("window,state", [(CLOSED, "已于2024年06月15日 23:59结束"), (NOT_YET, "2099年06月13日 00:00开放")])
def test_outside_the_window_every_answer_says_its_state_first(make_app, fake_wechat, window, state):
    say, subscribe = window_chat(make_app, window)
    welcome = subscribe()
    assert state in welcome.split("\n")[0], welcome
    assert "步骤" not in welcome and "上传证件照" not in welcome, welcome  # no steps that cannot be taken
    for text in ("帮助", "进度", "北京市高等教育自学考试", "查看照片", "人工"):
        reply = say(text)
        assert state in reply.split("\n")[0], (text, reply)
        assert "请输入院校名称" not in reply and "重新开始" not in reply, (text, reply)
    assert "现在可用的指令：进度" in say("帮助")
    assert "当前进度：尚未开始" in say("进度")
    assert "自助办理" not in say("人工")  # nothing can be done on one's own while the window is shut


def paid(chat, photo) -> None:
    chat.walk_to_photo(ZHANG)
    reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert chat.pay(chat.pay_link(reply)).status_code == 200
    assert chat.state() == "under_review"


def test_a_photo_sent_while_under_review_is_answered_with_what_happened(chat, photo):
    paid(chat, photo)
    reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert "这张新照片没有使用" in reply and "审核期间不能更换" in reply and "无需再次付费" in reply, reply
    assert "审核中" in reply and chat.state() == "under_review"


def test_a_failed_photo_while_paying_says_the_passing_one_can_still_be_paid(chat, photo):
    chat.walk_to_photo(ZHANG)
    assert "检查通过" in chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    reply = chat.send_photo(photo("webmorph_004_03_small.jpg"))
    assert "照片未通过检查" in reply and "已通过检查的照片仍然有效" in reply, reply
    assert chat.state() == "payment"
    assert chat.pay(chat.pay_link(reply)).status_code == 200  # the link in that reply pays for the passing one
    assert chat.state() == "under_review"


def test_a_photo_before_the_photo_step_says_it_was_not_kept(at_identity, photo):
    reply = at_identity.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert "现在还不能接收照片" in reply and "身份证号" in reply, reply


def test_a_red_background_is_named_with_the_three_allowed_colours(chat, photo):
    chat.walk_to_photo(ZHANG)
    reply = chat.send_photo(photo("cfdAF200_bg_red.jpg"))
    import re
    # The checker names the colour it measured (rules/photo/background.colour_name), then the allowed three.
    assert re.search("背景是(红|橙|粉|深红)色", reply), reply
    assert "浅蓝色" in reply and "白色" in reply and "浅灰色" in reply, reply
    assert "太深" not in reply or "其他颜色调浅了也不行" in reply, reply  # a lighter red will not do either


def test_a_file_just_under_the_size_limit_visibly_fails_it_and_says_how_to_send_the_original(chat, photo):
    import io

    from PIL import Image
    image = Image.open(io.BytesIO(photo("webmorph_004_03_blue_ok.jpg")))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=20)
    data = out.getvalue()
    assert len(data) < 30446
    data += b"\0" * (30446 - len(data))  # after the end-of-image marker: still a JPEG, 30 446 bytes
    chat.walk_to_photo(ZHANG)
    reply = chat.send_photo(data)
    assert "照片文件太小（29.7 KB），需大于 30 KB" in reply and "“原图”" in reply, reply


def test_the_notice_is_short_but_complete_and_help_carries_the_detail(at_phone):
    at_phone.say("13800138000")
    notice = at_phone.say("1")
    for rule in ("露出双耳", "不戴首饰", "不化妆", "不穿无袖", "浅蓝、白色或浅灰色", "“原图”", "我知道了"):
        assert rule in notice, rule
    assert "授权" not in notice and len(notice) < 300, notice  # the phone is typed in this chat, not authorised
    detail = at_phone.say("帮助")
    for rule in ("耳环", "吊带", "美颜", "3:4", "我知道了"):
        assert rule in detail, rule
    assert at_phone.state() == "notice"


def test_a_phone_number_at_the_identity_step_is_asked_for_later(app, at_identity):
    reply = at_identity.say("13800138000")
    assert "手机号下一步再填" in reply and "应为18位" not in reply, reply
    assert at_identity.state() == "identity" and failed_matches(app) == 0


def test_name_and_id_number_at_the_level_step_ask_for_the_level_first(chat):
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    reply = chat.say(f"{ZHANG['name']} {ZHANG['id_number']}")
    assert "请先选择学历层次" in reply and "2 本科" in reply and "19900307" not in reply, reply
    assert chat.state() == "level"


@pytest.mark.parametrize("typed", ["我的手机号是13800138000", f"{ZHANG['name']} 13800138000", "手机：138 0013 8000。"])
def test_a_phone_number_inside_a_sentence_is_taken(at_phone, typed):
    card = at_phone.say(typed)
    assert "请认真核对" in card and "手机号：13800138000" in card, card


def test_after_the_other_level_is_offered_the_same_level_again_is_not_a_switch(at_identity, chat):
    chat.say("重新开始")
    chat.say("北京市高等教育自学考试")
    chat.say("专科")
    assert "学历层次是“本科”" in chat.say(f"{ZHANG['name']} {ZHANG['id_number']}")
    assert "学历层次是“本科”" not in chat.say("专科")  # 专科 again: not a switch, read as identity input
    assert chat.state() == "identity"


def test_partial_id_numbers_of_14_digits_or_more_are_masked_in_log_lines():
    from app import MaskPersonalData
    record = logging.LogRecord("handlers.phone", logging.WARNING, __file__, 1, "typed %s and %s",
                               ("王小明 1101011995031201", "11010119900307"), None)
    MaskPersonalData().filter(record)
    line = record.getMessage()
    assert "1995031201" not in line and "19900307" not in line and "110101" in line, line


def test_a_hand_back_after_the_window_closed_says_so_not_the_step(make_app, fake_wechat):
    """Two processes on one database: the conversation starts in the window, the desk hands it back after."""
    from staff import support
    from tests.conftest import simulator_for
    from tests.journey import Chat, seed_roster
    open_app = make_app()
    seed_roster(open_app)
    chat = Chat(open_app, simulator_for(open_app), fake_wechat, openid="o_late_hand_back")
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    desk = open_app.extensions["collector"]
    with desk.db.session() as session:
        support.take_over(session, chat.openid, "客服甲", desk.outbox)
    closed_app = make_app(window=CLOSED)
    closed = closed_app.extensions["collector"]
    with closed.db.session() as session:
        support.hand_back(session, chat.openid, "客服甲", closed.outbox, closed_app.config["SETTINGS"])
    fake_wechat.wait_for_messages(2)
    back = [m["text"]["content"] for m in fake_wechat.messages_to(chat.openid) if "回到了自助办理" in m["text"]["content"]]
    assert back and "已于2024年06月15日 23:59结束" in back[0] and "学历层次" not in back[0], back


def test_a_second_passing_photo_while_paying_says_it_replaced_the_first(chat, photo):
    chat.walk_to_photo(ZHANG)
    first = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert "替换" not in first
    second = chat.send_photo(photo("webmorph_019_03_blue_ok.jpg"))
    assert "新照片已替换您之前发送的照片" in second and "/pay/sandbox/" in second, second


def test_name_id_and_phone_in_one_message_match_and_the_phone_is_asked_for_in_its_step(at_identity):
    reply = at_identity.say(f"{ZHANG['name']} {ZHANG['id_number']} 13800138000")
    assert "已在毕业生名单中找到您" in reply, reply
    assert "请认真核对" in at_identity.say("13800138000")
