"""[sms] verify_phone: an SMS code to the number typed, through the real Tencent Cloud client to its local
fake, before the confirm card (issue 13)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from standins.sms import FakeTencentSms
from store.models import PhoneCode
from store.queries import find_candidate
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat, seed_roster

SECRET_ID, SECRET_KEY, APP_ID, SIGN = "AKIDtest", "sms-secret", "1400000001", "北京自考"
ZHANG = GRADUATES[0]


@pytest.fixture
def fake_sms():
    with FakeTencentSms(SECRET_ID, SECRET_KEY, APP_ID, SIGN, {"T_CODE": 1}) as fake:
        yield fake


@pytest.fixture
def code_app(make_app, fake_sms):
    def factory(**sms):
        app = make_app(sms={"provider": "tencent", "secret_id": SECRET_ID, "secret_key": SECRET_KEY,
                            "sdk_app_id": APP_ID, "sign_name": SIGN, "endpoint": fake_sms.endpoint, "scheme": "http",
                            "template_phone_code": "T_CODE", "verify_phone": True, **sms})
        seed_roster(app)
        return app
    return factory


def at_phone(app, fake_wechat) -> Chat:
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_code")
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    chat.say("本科")
    assert "手机号" in chat.say(f"{ZHANG['name']} {ZHANG['id_number']}")
    return chat


def codes(fake_sms, count):
    return [sms.params[0] for sms in fake_sms.wait_for(count)]


def stored_phone(app, openid):
    with app.extensions["collector"].db.session() as session:
        return find_candidate(session, openid).phone


def test_the_code_sent_to_the_number_confirms_it_and_the_card_shows_it(code_app, fake_wechat, fake_sms):
    app = code_app()
    chat = at_phone(app, fake_wechat)
    reply = chat.say("13912345678")
    assert "验证码已发送到139****5678" in reply and "重发" in reply, reply
    [sent] = fake_sms.wait_for(1)
    assert sent.phone == "+8613912345678" and sent.template_id == "T_CODE" and len(sent.params[0]) == 6
    assert chat.state() == "phone" and stored_phone(app, chat.openid) is None  # not the candidate's yet
    assert "6位验证码" in chat.say("帮助") and "重发" in chat.last.content
    wrong = "000000" if sent.params[0] != "000000" else "111111"
    assert "验证码不对" in chat.say(wrong) and "还可以试4次" in chat.last.content
    card = chat.say(sent.params[0])
    assert "请认真核对" in card and "手机号：13912345678" in card, card
    assert stored_phone(app, chat.openid) == "+8613912345678"  # verdict SMS go to this number
    with app.extensions["collector"].db.session() as session:  # only a keyed hash of the code is stored
        row = session.scalars(select(PhoneCode)).one()
        assert sent.params[0] not in row.code_hash and row.used_at is not None


def test_a_resend_replaces_the_code_and_is_limited(code_app, fake_wechat, fake_sms):
    app = code_app(codes_per_hour=2)
    chat = at_phone(app, fake_wechat)
    chat.say("13912345678")
    assert "验证码已发送" in chat.say("重发")
    first, second = codes(fake_sms, 2)
    limited = chat.say("重发")
    assert "验证码发送次数过多" in limited and "60分钟后" in limited, limited
    assert len(fake_sms.sent) == 2
    if first != second:
        assert "验证码不对" in chat.say(first)  # the resend made the first code void
    assert "请认真核对" in chat.say(second)


def test_a_code_expires_and_a_wrong_one_tried_too_often_is_void(code_app, fake_wechat, fake_sms):
    app = code_app(code_tries=2)
    chat = at_phone(app, fake_wechat)
    chat.say("13912345678")
    [code] = codes(fake_sms, 1)
    wrong = "000000" if code != "000000" else "111111"
    chat.say(wrong)
    assert "输错次数过多" in chat.say(wrong)
    assert "输错次数过多" in chat.say(code)  # even the right code, once void
    chat.say("重发")
    code = codes(fake_sms, 2)[1]
    with app.extensions["collector"].db.session() as session:
        for row in session.scalars(select(PhoneCode)):
            row.expires_at -= timedelta(minutes=11)
    assert "验证码已过期" in chat.say(code)
    assert chat.state() == "phone"


def test_without_verify_phone_the_number_is_taken_as_typed(make_app, fake_wechat, fake_sms):
    app = make_app()
    seed_roster(app)
    chat = at_phone(app, fake_wechat)
    assert "请认真核对" in chat.say("13912345678")
    assert fake_sms.sent == []


def test_verify_phone_with_tencent_needs_the_code_template(make_app, fake_sms):
    from settings import ConfigError
    with pytest.raises(ConfigError, match="template_phone_code"):
        make_app(sms={"provider": "tencent", "secret_id": SECRET_ID, "secret_key": SECRET_KEY, "sdk_app_id": APP_ID,
                      "sign_name": SIGN, "endpoint": fake_sms.endpoint, "scheme": "http", "verify_phone": True})
