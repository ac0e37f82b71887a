"""Each step's validation, the commands that work anywhere, the window, binding and rate limits."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from store.models import MatchAttempt, Message, RosterEntry
from tests.journey import Chat


@pytest.fixture
def at_institution(chat):
    chat.subscribe()
    return chat


@pytest.fixture
def at_identity(at_institution):
    at_institution.say("北京市高等教育自学考试")
    at_institution.say("本科")
    return at_institution


@pytest.fixture
def at_phone(at_identity, roster):
    at_identity.say(f"{roster[0]['name']} {roster[0]['id_number']}")
    return at_identity


def test_any_first_message_gets_the_welcome(chat):
    reply = chat.say("你好")
    assert "毕业证书照片采集" in reply and "请输入院校名称" in reply
    assert chat.state() == "institution"


def test_typing_the_institution_first_skips_a_round_trip(chat):
    reply = chat.say("北京市高等教育自学考试")
    assert "1 专科" in reply
    assert chat.state() == "level"


@pytest.mark.parametrize("school", ["北京大学", "北京工商大学", "首都师范大学", "北京XX学院"])
def test_a_school_name_gets_the_notice_warning(at_institution, school):
    reply = at_institution.say(school)
    assert "请不要输入您毕业学校的名称" in reply
    assert "北京市高等教育自学考试" in reply
    assert at_institution.state() == "institution"


@pytest.mark.parametrize("typed", ["北京市高等教育自学考试", " 北京市 高等教育 自学考试 ", "“北京市高等教育自学考试”。"])
def test_the_institution_name_is_accepted_with_spaces_and_punctuation(at_institution, typed):
    assert "1 专科" in at_institution.say(typed)


def test_something_else_is_not_found(at_institution):
    reply = at_institution.say("自考")
    assert "没有找到" in reply and "北京市高等教育自学考试" in reply


@pytest.mark.parametrize("answer,level", [("1", "专科"), ("２", "本科"), ("本科", "本科"), ("专科", "专科")])
def test_level_by_number_or_name(at_institution, answer, level):
    at_institution.say("北京市高等教育自学考试")
    assert f"学历层次：{level}" in at_institution.say(answer)
    assert at_institution.state() == "identity"


def test_unknown_level_lists_the_choices(at_institution):
    at_institution.say("北京市高等教育自学考试")
    reply = at_institution.say("3")
    assert "没有这个选项" in reply and "1 专科" in reply


@pytest.mark.parametrize("typed", [
    "张三 110101199003074573", "张三，110101199003074573", "110101199003074573 张三",
    "张三110101199003074573", "张三 １１０１０１１９９００３０７４５７３", "张三\n110101199003074573",
])
def test_name_and_id_in_one_message_any_separator(at_identity, typed):
    assert "手机号" in at_identity.say(typed)


def test_name_then_id_in_two_messages(at_identity):
    assert "请再输入18位身份证号" in at_identity.say("张三")
    assert "手机号" in at_identity.say("110101199003074573")


def test_id_then_name_in_two_messages(at_identity):
    reply = at_identity.say("110101199003074573")
    assert "请再输入本人姓名" in reply and "110101********4573" in reply
    assert "手机号" in at_identity.say("张三")


def test_lowercase_x_check_character_is_accepted_and_compared_upper_case(app, at_identity):
    reply = at_identity.say("张三 11010119900307002x")  # valid, but not on the roster
    assert "身份证号 110101********002X" in reply, reply


@pytest.mark.parametrize("typed,expected", [
    ("张三 11010119900307457", "应为18位，您输入了17位"),
    ("张三 1101011990030745733", "应为18位，您输入了19位"),
    ("张三 110101199003074574", "校验不通过"),
    ("张三 110101199013074571", "出生日期不正确"),
    ("张三 110101203001014571", "出生日期不正确"),
    ("张三 990101199003074573", "省份代码"),
    ("Zhang 110101199003074573", "姓名只能是汉字"),
    ("张 110101199003074573", "2到30个汉字"),
])
def test_each_identity_error_says_what_is_wrong(at_identity, typed, expected):
    reply = at_identity.say(typed)
    assert expected in reply, reply
    assert at_identity.state() == "identity"


def test_minority_names_with_a_middle_dot(app, chat, roster):
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    chat.say("本科")
    assert "手机号" in chat.say(f"阿依古丽•买买提 {roster[2]['id_number']}")
    card = chat.say("13912345678")
    assert "阿依古丽·买买提" in card and "手机号：13912345678" in card


@pytest.mark.parametrize("typed", ["1380013800", "23800138000", "138-0013-800a", "电话"])
def test_invalid_phone_numbers(at_phone, typed):
    assert "不是有效的11位手机号" in at_phone.say(typed)
    assert at_phone.state() == "phone"


@pytest.mark.parametrize("typed", ["13800138000", "+86 138 0013 8000", "138-0013-8000", "１３８００１３８０００"])
def test_phone_formats_are_accepted_and_stored_in_e164(at_phone, app, typed):
    assert "请认真核对" in at_phone.say(typed)
    from store.queries import find_candidate
    with app.extensions["collector"].db.session() as session:
        assert find_candidate(session, at_phone.openid).phone == "+8613800138000"


def test_no_roster_match_is_said_at_once_with_what_was_compared(at_identity):
    reply = at_identity.say("王五 110101199003074573")  # no phone number asked for first
    assert "无法采集" in reply and "010-58691620" in reply and "周一休息" in reply
    assert "姓名 王五" in reply and "身份证号 110101********4573" in reply and "学历层次 本科" in reply
    assert "199003" not in reply and "手机号" not in reply
    assert at_identity.state() == "identity"


def test_wrong_level_is_named_and_switched_in_one_reply(app, at_institution, roster):
    at_institution.say("北京市高等教育自学考试")
    at_institution.say("专科")  # 张三 is on the roster as 本科
    reply = at_institution.say(f"{roster[0]['name']} {roster[0]['id_number']}")
    assert "学历层次是“本科”" in reply and "不是您选择的“专科”" in reply and "无法采集" not in reply, reply
    assert at_institution.state() == "identity"
    assert "手机号" in at_institution.say("本科")  # no restart, no typing name and ID number again
    assert at_institution.state() == "phone"
    assert "学历层次：本科" in at_institution.say("13800138000")
    with app.extensions["collector"].db.session() as session:  # the wrong level was no failed match
        assert not session.scalars(select(MatchAttempt).where(MatchAttempt.matched.is_(False))).all()


def test_five_failed_matches_an_hour_then_refused_even_when_right(at_identity, roster):
    for _ in range(5):
        assert "无法采集" in at_identity.say("王五 110101199003074573")
    reply = at_identity.say(f"{roster[0]['name']} {roster[0]['id_number']}")
    assert "核对失败次数过多" in reply and "分钟后再试" in reply and "手机号" not in reply


def test_confirm_card_then_modify_goes_back_to_identity(at_phone):
    card = at_phone.say("13800138000")
    assert "姓名：张三" in card and "准考证号：012401234567" in card and "专业：汉语言文学" in card
    assert "110101********4573" in card and "手机号：13800138000" in card  # a typo in the number shows here
    reply = at_phone.say("2")
    assert "请输入本人姓名和身份证号" in reply
    assert at_phone.state() == "identity"


def test_confirm_needs_one_or_two(at_phone):
    at_phone.say("13800138000")
    assert "请回复 1 确认信息" in at_phone.say("嗯")


def test_notice_needs_acknowledging(at_phone):
    at_phone.say("13800138000")
    assert "图像采集码" in at_phone.say("1")
    assert "我知道了" in at_phone.say("好吧")
    assert at_phone.state() == "notice"


def test_another_account_cannot_use_a_bound_id_number(app, chat, roster, wechat, fake_wechat):
    chat.walk_to_photo(roster[0])
    other = Chat(app, wechat, fake_wechat, openid="o_someone_else")
    other.subscribe()
    other.say("北京市高等教育自学考试")
    other.say("本科")
    reply = other.say(f"{roster[0]['name']} {roster[0]['id_number']}")
    assert "已在另一个微信号上采集" in reply and "切勿帮他人采集" in reply
    assert other.state() == "identity"
    with app.extensions["collector"].db.session() as session:
        entry = session.scalar(select(RosterEntry).where(RosterEntry.id_number == roster[0]["id_number"]))
        assert entry.bound_openid == chat.openid


def test_text_in_the_photo_step_asks_for_a_photo(chat, roster):
    chat.walk_to_photo(roster[0])
    assert "需要发送照片" in chat.say("照片在哪发")


def test_an_image_where_text_is_expected_gets_the_step_help(at_identity, photo):
    reply = at_identity.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert "身份证号" in reply
    assert at_identity.state() == "identity"


def test_voice_messages_are_not_understood_but_answered(chat):
    chat.subscribe()
    reply = chat.wechat.voice(chat.openid, "MEDIA_VOICE_1").content
    assert "只能识别文字和图片" in reply


def test_help_explains_the_current_step(at_identity):
    reply = at_identity.say("帮助")
    assert "姓名和18位身份证号" in reply and "重新开始" in reply


def test_progress_names_the_step(at_identity):
    assert "当前进度：填写姓名和身份证号" in at_identity.say("进度")


def test_restart_before_payment_frees_the_binding(app, chat, roster):
    chat.walk_to_photo(roster[0])
    reply = chat.say("重新开始")
    assert "已重新开始" in reply and chat.state() == "institution"
    with app.extensions["collector"].db.session() as session:
        entry = session.scalar(select(RosterEntry).where(RosterEntry.id_number == roster[0]["id_number"]))
        assert entry.bound_openid is None


def test_human_marks_the_conversation(app, at_identity):
    reply = at_identity.say("人工")
    assert "已转给人工客服" in reply and "尽快回复" not in reply  # no promise of a reply the desk may not send
    from store.queries import find_candidate
    with app.extensions["collector"].db.session() as session:
        assert find_candidate(session, at_identity.openid).human_requested_at is not None


def test_photo_failures_are_listed_and_the_step_stays(chat, roster, photo):
    chat.walk_to_photo(roster[0])
    reply = chat.send_photo(photo("webmorph_004_03_small.jpg"))
    assert "照片未通过检查" in reply and "1." in reply
    assert chat.state() == "photo"


def test_an_unreadable_upload_is_answered_not_crashed(chat, roster):
    chat.walk_to_photo(roster[0])
    reply = chat.send_photo(b"this is not an image at all" * 2000)
    assert "照片未通过检查" in reply
    assert chat.state() == "photo"


def test_an_expired_media_id_asks_to_send_again(chat, roster):
    chat.walk_to_photo(roster[0])
    chat.last = chat.wechat.image(chat.openid, "NO_SUCH_MEDIA")
    assert "照片接收失败" in chat.last.content
    assert chat.state() == "photo"


def test_every_message_in_and_out_is_in_the_transcript(app, at_identity):
    with app.extensions["collector"].db.session() as session:
        rows = session.scalars(select(Message).where(Message.openid == at_identity.openid)
                               .order_by(Message.id)).all()
    assert [row.direction for row in rows] == ["in", "out"] * 3
    assert [(row.state_before, row.state_after) for row in rows if row.direction == "in"] == [
        ("welcome", "institution"), ("institution", "level"), ("level", "identity")]
    assert rows[3].content.startswith("已找到")


def test_a_huge_upload_is_refused_with_its_size_and_nothing_stored(app, chat, roster):
    chat.walk_to_photo(roster[0])
    reply = chat.send_photo(b"\xff\xd8\xff\xe0" + b"\0" * (21 * 1024 * 1024))
    assert "超过20MB" in reply
    assert chat.state() == "photo"
    photos_dir = app.config["SETTINGS"].photo_dir
    assert not photos_dir.exists() or not any(p.is_file() for p in photos_dir.rglob("*"))


def test_an_expired_access_token_is_refreshed_and_the_photo_still_arrives(chat, roster, photo, fake_wechat):
    chat.walk_to_photo(roster[0])
    chat.send_photo(photo("webmorph_004_03_small.jpg"))
    fetches = fake_wechat.token_fetches
    fake_wechat.expire_tokens()
    assert "检查通过" in chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert fake_wechat.token_fetches == fetches + 1


def test_two_quick_messages_of_one_candidate_each_see_the_other(app, at_identity):
    """Name and ID number typed in quick succession arrive together; neither may be lost."""
    from concurrent.futures import ThreadPoolExecutor
    from tests.conftest import simulator_for
    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(pool.map(lambda text: simulator_for(app).text(at_identity.openid, text).content,
                                ["张三", "110101199003074573"]))
    assert any("手机号" in reply for reply in replies), replies
    assert at_identity.state() == "phone"
