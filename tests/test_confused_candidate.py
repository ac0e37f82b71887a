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
