"""The support desk's logic through its real entry points: candidates talk through the signed webhook,
agents act through staff.support (the console and `flask support` call the same functions), and what
the candidate receives is read from the fake WeChat API."""
from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select, update

import messages
from rules.identity import mask_personal_data
from settings import ConfigError, settings_from_mapping
from staff import support
from staff.review import StaffActionError
from store.models import AuditEvent, Candidate, Message, Notification, utcnow
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat, seed_roster

ZHANG = GRADUATES[0]


def blank_jpeg() -> bytes:
    """A grey 480×640 JPEG with nobody in it: the checker refuses it for the missing face, every time."""
    image = Image.new("RGB", (480, 640), (128, 128, 128))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def desk(make_app, fake_wechat):
    app = make_app(support={"idle_minutes": 5})
    seed_roster(app)
    return app


def collector(app):
    return app.extensions["collector"]


def at_photo(app, fake_wechat, openid="o_support_1", graduate=ZHANG) -> Chat:
    chat = Chat(app, simulator_for(app), fake_wechat, openid=openid)
    chat.walk_to_photo(graduate)
    return chat


def act(app, action, *args, **kwargs):
    with collector(app).db.session() as session:
        return action(session, *args, **kwargs)


def take(app, openid, agent="客服甲"):
    return act(app, support.take_over, openid, agent, collector(app).outbox)


def texts_to(fake_wechat, openid):
    return [m["text"]["content"] for m in fake_wechat.messages_to(openid) if m.get("msgtype") == "text"]


def test_a_taken_over_conversation_is_stored_but_not_answered_and_the_candidate_is_told_once(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    take(desk, chat.openid)
    take(desk, chat.openid)  # the same agent again: nothing new
    assert texts_to(fake_wechat, chat.openid) == [messages.AGENT_TOOK_OVER]

    assert chat.say("我的照片一直不通过") in ("", "success")
    assert chat.say("帮助") in ("", "success")  # commands too: the agent answers now
    with collector(desk).db.session() as session:
        last = session.scalars(select(Message).where(Message.openid == chat.openid).order_by(Message.id.desc())
                               .limit(3)).all()
    assert [m.direction for m in last] == ["in", "in", "out"]  # the two messages stored, no bot reply after them
    assert last[1].content == "我的照片一直不通过"
    assert texts_to(fake_wechat, chat.openid) == [messages.AGENT_TOOK_OVER]


def test_two_agents_cannot_hold_one_conversation(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    take(desk, chat.openid, "客服甲")
    with pytest.raises(StaffActionError, match="客服甲 已接手"):
        take(desk, chat.openid, "客服乙")
    with pytest.raises(StaffActionError, match="客服甲 正在处理"):
        act(desk, support.reply, chat.openid, "客服乙", "您好", collector(desk).outbox)


def test_replies_go_out_as_customer_service_messages_and_the_sixth_in_a_window_meets_45047(desk, fake_wechat):
    fake_wechat.limit_per_window(5)
    chat = at_photo(desk, fake_wechat)
    fake_wechat.user_wrote(chat.openid)
    take(desk, chat.openid)  # the notice to the candidate is the window's first message
    for number in range(1, 5):
        act(desk, support.reply, chat.openid, "客服甲", f"第{number}条回复", collector(desk).outbox)
    with collector(desk).db.read() as session:
        assert support.window(session, chat.openid, collector(desk).settings).left == 0
    assert texts_to(fake_wechat, chat.openid)[1:] == [f"第{n}条回复" for n in range(1, 5)]

    refused = act(desk, support.reply, chat.openid, "客服甲", "第5条回复", collector(desk).outbox)
    with collector(desk).db.read() as session:
        row = session.get(Notification, refused)
        assert row.status == "dead" and "45047" in row.last_error
        window = support.window(session, chat.openid, collector(desk).settings)
        assert window.refused_45047 and window.left == 0

    chat.say("好的")  # a new message from the candidate opens a new window
    fake_wechat.user_wrote(chat.openid)
    with collector(desk).db.read() as session:
        assert support.window(session, chat.openid, collector(desk).settings).left == 5
    act(desk, support.reply, chat.openid, "客服甲", "收到", collector(desk).outbox)
    assert texts_to(fake_wechat, chat.openid)[-1] == "收到"


def test_an_sms_goes_out_when_wechat_refuses(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    take(desk, chat.openid)
    sms_id = act(desk, support.sms, chat.openid, "客服甲", collector(desk).outbox, collector(desk).settings)
    with collector(desk).db.read() as session:
        row = session.get(Notification, sms_id)
        assert (row.channel, row.status, row.payload["template"]) == ("sms", "sent", "support_reply")
        assert session.scalar(select(Notification).where(Notification.dedupe_key.like("support_sms:%:wechat"))) is None


def test_an_idle_takeover_goes_back_to_the_bot_through_the_periodic_job(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    take(desk, chat.openid)
    assert collector(desk).jobs.run("support") == {"handed_back": 0}
    with collector(desk).db.session() as session:
        session.execute(update(Candidate).where(Candidate.openid == chat.openid)
                        .values(agent_active_at=utcnow() - timedelta(minutes=6)))
    assert collector(desk).jobs.run("support") == {"handed_back": 1}
    back = texts_to(fake_wechat, chat.openid)[-1]
    assert back.startswith("人工客服已结束，您回到了自助办理。") and "照片" in back
    assert "照片" in chat.say("帮助")  # the bot answers again, from the photo step
    assert chat.state() == "photo"
    with collector(desk).db.read() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target == f"openid:{chat.openid}")).all()
    assert actions == ["support.take", "support.hand_back"]


def test_the_human_command_queues_the_candidate_and_promises_nothing_it_cannot_keep(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    reply = chat.say("人工")
    assert "尽快回复" not in reply and "客服接手时会在这里告诉您" in reply
    with collector(desk).db.read() as session:
        waiting = support.queue(session)
    assert [(item.openid, item.why) for item in waiting] == [(chat.openid, "人工")]
    act(desk, support.resolve, chat.openid, "客服甲", collector(desk).outbox, collector(desk).settings)
    with collector(desk).db.read() as session:
        assert support.queue(session) == []


def test_wechat_kf_mode_hands_the_conversation_to_wechat_customer_service(make_app, fake_wechat):
    app = make_app(support={"mode": "wechat_kf"})
    reply = simulator_for(app).text("o_kf_1", "人工")
    assert "<MsgType><![CDATA[transfer_customer_service]]></MsgType>" in reply.body.decode()
    with collector(app).db.read() as session:
        assert session.scalar(select(Candidate.human_requested_at).where(Candidate.openid == "o_kf_1")) is None


def test_search_by_part_of_a_name_masked_id_and_name_phone_exam_number_and_openid(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    with collector(desk).db.read() as session:
        by = {text: [(hit.name, hit.openid) for hit in support.search(session, text)]
              for text in ("张", "110101********4573 张三", "13800138000", ZHANG["exam_number"], chat.openid,
                           ZHANG["id_number"], "阿依古丽")}
    for text in ("张", "110101********4573 张三", "13800138000", ZHANG["exam_number"], chat.openid, ZHANG["id_number"]):
        assert by[text] == [("张三", chat.openid)], text
    assert by["阿依古丽"] == [("阿依古丽·买买提", None)]  # on the roster, not yet in the chat
    with collector(desk).db.read() as session, pytest.raises(StaffActionError):
        support.search(session, "")


def test_the_timeline_masks_id_numbers_even_partial_ones_typed_in_the_wrong_step(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    chat.say("11010119900307")
    with collector(desk).db.read() as session:
        file = support.candidate_file(session, chat.openid, collector(desk).settings)
    shown = [mask_personal_data(event.text) for event in file.events]
    assert "110101********" in shown
    assert not any("19900307" in text for text in shown)
    assert any(event.kind == "state" for event in file.events)
    assert file.candidate.state == "photo" and file.state_since is not None


def test_agent_actions_are_audited_and_refused_before_changing_anything(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    outbox = collector(desk).outbox
    with pytest.raises(StaffActionError, match="11位手机号"):
        act(desk, support.correct_phone, chat.openid, "12345", "客服甲", outbox)
    act(desk, support.correct_phone, chat.openid, "13900139000", "客服甲", outbox)
    with pytest.raises(StaffActionError, match="不能退回"):
        act(desk, support.send_back, chat.openid, "photo", "客服甲", outbox)
    with pytest.raises(StaffActionError, match="原因"):
        act(desk, support.reveal, chat.openid, "客服甲", " ")
    act(desk, support.reveal, chat.openid, "客服甲", "考生来电核对")
    old = act(desk, support.unbind, chat.openid, "客服甲")
    assert old == chat.openid and chat.state() == "welcome"
    with collector(desk).db.read() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.actor == "客服甲").order_by(AuditEvent.id)).all()
        assert [row.action for row in rows] == ["support.phone", "support.unmasked_view", "roster.unbind"]
        assert rows[0].detail == "138****8000 → 139****9000" and rows[1].reason == "考生来电核对"


def test_canned_replies_fill_their_placeholders_and_admins_edit_them(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    with collector(desk).db.session() as session:
        rows = support.canned_replies(session)
        assert [row.title for row in rows] == [title for title, _ in messages.CANNED_REPLIES]
        candidate = session.scalar(select(Candidate).where(Candidate.openid == chat.openid))
        filled = support.fill("{name}您好，请致电{office_phone}，截止{deadline}", candidate, collector(desk).settings)
        assert filled.startswith("张三您好，请致电010-") and "{" not in filled
        with pytest.raises(StaffActionError, match="占位符"):
            support.save_canned_reply(session, "管理员", "坏的", "{phone}")
        support.save_canned_reply(session, "管理员", "新的", "{name}，已收到。")
        assert [row.title for row in support.canned_replies(session)][-1] == "新的"


def test_the_support_settings_are_checked():
    with pytest.raises(ConfigError, match="support.mode"):
        settings_from_mapping({"support": {"mode": "robot"}})
    assert settings_from_mapping({}).support.replies_per_window == 5


def test_of_two_agents_taking_at_the_same_moment_exactly_one_wins(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def attempt(agent: str) -> None:
        barrier.wait()
        try:
            take(desk, chat.openid, agent)
            outcomes[agent] = "took"
        except StaffActionError as exc:
            outcomes[agent] = str(exc)

    threads = [threading.Thread(target=attempt, args=(agent,)) for agent in ("客服甲", "客服乙")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    winners = [agent for agent, outcome in outcomes.items() if outcome == "took"]
    assert len(winners) == 1, outcomes
    loser = ({"客服甲", "客服乙"} - set(winners)).pop()
    assert outcomes[loser] == f"{winners[0]} 已接手这个对话"
    assert texts_to(fake_wechat, chat.openid) == [messages.AGENT_TOOK_OVER]


def test_stuck_candidates_are_suggested_after_hours_without_progress(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    settings = collector(desk).settings
    with collector(desk).db.read() as session:
        assert support.stuck(session, settings) == []
        later = support.stuck(session, settings, now=utcnow() + timedelta(hours=settings.support.stuck_hours + 1))
    assert [(item.openid, item.state) for item in later] == [(chat.openid, "photo")]
    assert "超过24小时没有进展" in later[0].why
    chat.say("人工")  # asked for a human: in the queue, no longer a suggestion
    with collector(desk).db.read() as session:
        assert support.stuck(session, settings, now=utcnow() + timedelta(hours=25)) == []


def test_the_same_photo_refusal_three_times_is_suggested(desk, fake_wechat):
    chat = at_photo(desk, fake_wechat)
    for _ in range(3):
        chat.send_photo(blank_jpeg())
    assert chat.state() == "photo"
    with collector(desk).db.read() as session:
        found = support.stuck(session, collector(desk).settings)
        file = support.candidate_file(session, chat.openid, collector(desk).settings)
    assert [item.openid for item in found] == [chat.openid]
    assert found[0].why.startswith("照片连续3次因同一问题（") and "face.count" in found[0].why
    photos = [event for event in file.events if event.photo_id and event.kind == "in"]
    assert len(photos) == 3 and "自动检查：未通过：" in photos[0].text and "face.count" in photos[0].text


def test_with_a_template_configured_a_reply_wechat_refuses_goes_out_as_a_template_message(make_app, fake_wechat):
    app = make_app(notifications={"wechat_template_support_reply": "tpl_support"})
    seed_roster(app)
    fake_wechat.add_template("tpl_support", ("first", "keyword1", "keyword2", "keyword3", "remark"))
    fake_wechat.limit_per_window(5)
    chat = at_photo(app, fake_wechat)
    take(app, chat.openid)
    chat.say("在吗")
    fake_wechat.user_wrote(chat.openid)
    for number in range(1, 7):
        act(app, support.reply, chat.openid, "客服甲", f"第{number}条：" + "请换白色背景的照片。" * 10, collector(app).outbox)
    assert len(texts_to(fake_wechat, chat.openid)) == 6  # the take-over notice and five replies
    sent = fake_wechat.templates_sent[-1]
    assert sent["touser"] == chat.openid and sent["template_id"] == "tpl_support"
    assert sent["data"]["keyword1"]["value"] == "张三" and sent["data"]["keyword2"]["value"].startswith("第6条：")
    with collector(app).db.read() as session:
        file = support.candidate_file(session, chat.openid, collector(app).settings)
    assert [event.detail for event in file.events if event.kind == "out"][-1] == "模板消息"
