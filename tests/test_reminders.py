"""Reminder campaigns (issue 11) through `flask remind …`, `flask jobs …` and real huey consumers, against the
fake WeChat API and the fake Tencent Cloud SMS. Every test counts what the fakes accepted: each recipient
must be reached exactly once, on the channel WeChat's rules allow."""
from __future__ import annotations

import signal
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import func, select

from notify.throttle import Throttle
from rules.quiet import quiet_until
from standins.sms import FakeTencentSms
from store.models import (AuditEvent, Candidate, Message, Notification, Photo, ReminderCampaign, ReminderRecipient,
                          RosterEntry, utcnow)
from tests.staff_fixtures import ROWS, write_csv
from tests.test_outbox import _flask, _wait_until

SMS = ("AKIDremind", "sms-secret", "1400000002", "北京自考")
TEMPLATE_ID = "TPL_REMIND"
TEMPLATE_FIELDS = ("first", "keyword1", "keyword2", "keyword3", "remark")
REDIS_URL = "redis://127.0.0.1:6379/10"
NO_QUIET = {"quiet_start": "00:00", "quiet_end": "00:00"}
TEXT = "{姓名}同学，毕业照片采集将于{截止时间}截止，请尽快完成。"


@pytest.fixture
def fake_sms():
    with FakeTencentSms(*SMS, {"T_REMIND": 2}) as fake:
        yield fake


@pytest.fixture
def remind_app(make_app, fake_sms, fake_wechat):
    fake_wechat.add_template(TEMPLATE_ID, TEMPLATE_FIELDS)

    def factory(**sections):
        config = {
            "sms": {"provider": "tencent", "secret_id": SMS[0], "secret_key": SMS[1], "sdk_app_id": SMS[2],
                    "sign_name": SMS[3], "endpoint": fake_sms.endpoint, "scheme": "http",
                    "template_reminder": "T_REMIND"},
            "notifications": {"retry_base_seconds": 0, "max_attempts": 4},
            "reminders": {"template_id": TEMPLATE_ID, "wechat_per_second": 500.0, "sms_per_second": 500.0,
                          "throttle_prefix": f"test-throttle-{uuid.uuid4().hex}", **NO_QUIET},
        }
        for name, values in sections.items():
            if isinstance(values, dict):
                config.setdefault(name, {}).update(values)
            else:
                config[name] = values
        return make_app(**config)
    return factory


def db(app):
    return app.extensions["collector"].db


def cli(app, *args: str, ok: bool = True) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


# --- a cohort, put straight into the database ------------------------------------------------------------

def graduate(app, number: int, phone: str | None = None, level: str = "本科", openid: str | None = None,
             state: str | None = None, last_heard: timedelta | None = None, photo: str | None = None,
             idle: timedelta = timedelta(0)) -> int:
    """A roster entry (with the roster's phone), and when `openid` is given an account bound to it at
    `state`, that last wrote `last_heard` ago, with a photo of status `photo`."""
    with db(app).session() as session:
        entry = RosterEntry(name=f"测试{number}号", id_number=f"11010119900101{number:04d}", exam_number=f"E{number}",
                            level=level, major="法学", phone=phone)
        session.add(entry)
        session.flush()
        if openid:
            entry.bound_openid, entry.bound_at = openid, utcnow()
            follower(session, openid, state or "photo", last_heard, roster_entry_id=entry.id, name=entry.name,
                     level=level, photo=photo, idle=idle)
        return entry.id


def follower(session, openid: str, state: str, last_heard: timedelta | None, roster_entry_id: int | None = None,
             name: str | None = None, level: str | None = None, photo: str | None = None,
             idle: timedelta = timedelta(0)) -> None:
    person = Candidate(openid=openid, state=state, roster_entry_id=roster_entry_id, name=name, level=level,
                       created_at=utcnow() - idle, updated_at=utcnow() - idle)
    session.add(person)
    session.flush()
    if last_heard is not None:
        session.add(Message(openid=openid, direction="in", channel="webhook", msg_type="text", content="你好",
                            created_at=utcnow() - last_heard))
    if photo:
        session.add(Photo(candidate_id=person.id, roster_entry_id=roster_entry_id, sha256="cd" * 32, path="x",
                          size_bytes=1, verdict="pass" if photo != "checked" else "fail", report={}, status=photo))


def mixed_cohort(app) -> dict[str, int]:
    """Inside the window, outside it, no account but a phone, neither."""
    return {
        "inside": graduate(app, 1, openid="o_inside", last_heard=timedelta(hours=2)),
        "outside": graduate(app, 2, openid="o_outside", last_heard=timedelta(hours=72)),
        "sms_only": graduate(app, 3, phone="+8613900000003"),
        "nobody": graduate(app, 4),
    }


def campaign_id(output: str) -> int:
    return int(output.split("提醒活动 ")[1].split(" ")[0])


def recipients(app, campaign: int) -> list[ReminderRecipient]:
    with db(app).session() as session:
        return list(session.scalars(select(ReminderRecipient).where(ReminderRecipient.campaign_id == campaign)))


def campaign_status(app, campaign: int) -> str:
    with db(app).session() as session:
        return session.get(ReminderCampaign, campaign).status


# --- channels --------------------------------------------------------------------------------------------

def test_a_mixed_cohort_is_reached_once_each_on_the_channel_wechat_allows(remind_app, fake_wechat, fake_sms):
    app = remind_app(jobs={"immediate": True})
    mixed_cohort(app)
    created = cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT, "--by", "张老师")
    assert "共 4 人：客服消息 1，模板消息 1，短信 1，无法送达 1" in created
    assert "预览（测**号）：测**号同学，毕业照片采集将于12月31日23:59截止" in created
    assert "测试1号" not in created  # the name masked on the screen; the message itself carries it (below)
    number = campaign_id(created)
    assert fake_wechat.sent_messages == [] and fake_sms.sent == []  # nothing before `send`

    cli(app, "remind", "send", str(number), "--by", "张老师")
    cli(app, "remind", "send", str(number), "--by", "张老师")  # a second click changes nothing
    cli(app, "jobs", "run", "reminders")  # nor does the periodic job

    assert [m["text"]["content"] for m in fake_wechat.messages_to("o_inside")] == [
        "测试1号同学，毕业照片采集将于12月31日23:59截止，请尽快完成。"]
    assert fake_wechat.messages_to("o_outside") == []
    assert [t["touser"] for t in fake_wechat.templates_sent] == ["o_outside"]
    assert fake_wechat.templates_sent[0]["data"]["keyword1"]["value"] == "测试2号"
    assert [(s.phone, s.params) for s in fake_sms.sent] == [("+8613900000003", ["测试3号", "12月31日23:59"])]
    status = cli(app, "remind", "status", str(number))
    assert "已完成，100%" in status
    assert "计划 3，已发送 3，失败 0，等待 0，跳过 1" in status
    assert "跳过（未关注公众号且没有手机号）：1" in status
    assert campaign_status(app, number) == "done"
    with db(app).session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action.in_(["reminders.create", "reminders.send"]))) == 2


def test_a_reminder_sent_as_customer_service_counts_against_the_support_desk_s_quota(remind_app, fake_wechat):
    from staff import support

    app = remind_app(jobs={"immediate": True})
    graduate(app, 1, openid="o_shared_quota", last_heard=timedelta(minutes=5))
    number = campaign_id(cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT))
    cli(app, "remind", "send", str(number))
    assert len(fake_wechat.messages_to("o_shared_quota")) == 1
    with db(app).session() as session:
        window = support.window(session, "o_shared_quota", app.extensions["collector"].settings)
    assert (window.used, window.left) == (1, window.limit - 1)


def test_45047_from_wechat_moves_that_recipient_to_the_next_channel(remind_app, fake_wechat, fake_sms):
    app = remind_app(jobs={"immediate": True})
    graduate(app, 1, openid="o_quota", last_heard=timedelta(minutes=5))
    graduate(app, 2, openid="o_quota_sms", last_heard=timedelta(minutes=5), phone="+8613900000002")
    fake_wechat.limit_per_window(0)  # the window's quota is used up: every customer-service message gets 45047
    number = campaign_id(cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT))
    cli(app, "remind", "send", str(number))
    assert fake_wechat.sent_messages == []
    assert sorted(t["touser"] for t in fake_wechat.templates_sent) == ["o_quota", "o_quota_sms"]
    assert fake_sms.sent == []


def test_without_a_template_45047_falls_through_to_sms_and_without_a_phone_it_is_unreachable(
        remind_app, fake_wechat, fake_sms):
    app = remind_app(jobs={"immediate": True}, reminders={"template_id": ""})
    graduate(app, 1, openid="o_a", last_heard=timedelta(minutes=5), phone="+8613900000001")
    graduate(app, 2, openid="o_b", last_heard=timedelta(minutes=5))
    fake_wechat.limit_per_window(0)
    number = campaign_id(cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT))
    cli(app, "remind", "send", str(number))
    assert [s.phone for s in fake_sms.sent] == ["+8613900000001"]
    assert fake_wechat.sent_messages == [] and fake_wechat.templates_sent == []
    status = cli(app, "remind", "status", str(number))
    assert "已发送 1，失败 1" in status and "客服消息被拒绝（45047）" in status


# --- quiet hours, pause, cancel ------------------------------------------------------------------------

def test_quiet_hours_defer_the_campaign_and_it_resumes_by_itself_after_them(remind_app, fake_wechat, fake_sms):
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    quiet = {"quiet_start": (now - timedelta(hours=1)).strftime("%H:%M"),
             "quiet_end": (now + timedelta(hours=1)).strftime("%H:%M")}
    app = remind_app(jobs={"immediate": True}, reminders=quiet)
    mixed_cohort(app)
    number = campaign_id(cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT))
    cli(app, "remind", "send", str(number))
    cli(app, "jobs", "run", "reminders")
    assert fake_wechat.sent_messages == [] and fake_wechat.templates_sent == [] and fake_sms.sent == []
    assert "静默时段" in cli(app, "remind", "status", str(number))
    assert campaign_status(app, number) == "sending"
    # The quiet hours are over (the same database, configured without them): the periodic job carries on.
    later = remind_app(jobs={"immediate": True})
    cli(later, "jobs", "run", "reminders")
    assert len(fake_wechat.sent_messages) == 1 and len(fake_wechat.templates_sent) == 1 and len(fake_sms.sent) == 1
    assert campaign_status(later, number) == "done"


def test_quiet_hours_across_midnight():
    tz = ZoneInfo("Asia/Shanghai")
    at = lambda h, m=0: datetime(2026, 6, 13, h, m, tzinfo=tz)  # noqa: E731
    assert quiet_until(at(22), "21:00", "08:00", tz) == datetime(2026, 6, 14, 8, 0, tzinfo=tz)
    assert quiet_until(at(3), "21:00", "08:00", tz) == at(8)
    assert quiet_until(at(8), "21:00", "08:00", tz) is None
    assert quiet_until(at(20, 59), "21:00", "08:00", tz) is None
    assert quiet_until(at(12, 30), "12:00", "14:00", tz) == at(14)
    assert quiet_until(at(12), "00:00", "00:00", tz) is None


def test_pause_resume_and_cancel(remind_app, fake_wechat, fake_sms):
    app = remind_app(jobs={"immediate": False})
    for number in range(1, 4):
        graduate(app, number, phone=f"+86139000000{number:02d}")
    campaign = campaign_id(cli(app, "remind", "create", "--segment", "never_started", "--text", TEXT))
    assert "不能暂停" in cli(app, "remind", "pause", str(campaign), ok=False)
    cli(app, "remind", "send", str(campaign))
    cli(app, "remind", "pause", str(campaign))
    cli(app, "jobs", "run", "reminders")
    _run_queued(app)
    assert fake_sms.sent == []
    assert "已暂停" in cli(app, "remind", "status", str(campaign))
    cli(app, "remind", "resume", str(campaign))
    _run_queued(app)
    assert sorted(s.phone for s in fake_sms.sent) == [f"+86139000000{n:02d}" for n in range(1, 4)]
    assert "不能取消" in cli(app, "remind", "cancel", str(campaign), ok=False)


def test_a_cancelled_campaign_sends_nothing_more(remind_app, fake_sms):
    app = remind_app(jobs={"immediate": False})
    graduate(app, 1, phone="+8613900000001")
    campaign = campaign_id(cli(app, "remind", "create", "--segment", "never_started", "--text", TEXT))
    cli(app, "remind", "send", str(campaign))
    cli(app, "remind", "cancel", str(campaign))
    _run_queued(app)
    cli(app, "jobs", "run", "outbox")
    assert fake_sms.sent == [] and campaign_status(app, campaign) == "cancelled"


def test_a_campaign_set_for_later_waits_for_its_time(remind_app, fake_sms):
    app = remind_app(jobs={"immediate": True})
    graduate(app, 1, phone="+8613900000001")
    later = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    campaign = campaign_id(cli(app, "remind", "create", "--segment", "never_started", "--text", TEXT, "--at", later))
    assert "将于" in cli(app, "remind", "send", str(campaign))
    cli(app, "jobs", "run", "reminders")
    assert fake_sms.sent == [] and campaign_status(app, campaign) == "scheduled"
    with db(app).session() as session:  # the time has come
        session.get(ReminderCampaign, campaign).send_at = utcnow() - timedelta(seconds=1)
    cli(app, "jobs", "run", "reminders")
    assert len(fake_sms.sent) == 1 and campaign_status(app, campaign) == "done"


def _run_queued(app) -> None:
    huey = app.extensions["collector"].jobs.huey
    while (task := huey.dequeue()) is not None:
        huey.execute(task)


# --- segments ------------------------------------------------------------------------------------------

def test_segments_are_counted_live_with_the_level_filter(remind_app):
    app = remind_app()
    graduate(app, 1)  # never started
    graduate(app, 2, level="专科", phone="+8613900000002")  # never started, 专科
    graduate(app, 3, openid="o_failed", state="photo", photo="checked", last_heard=timedelta(hours=1))
    graduate(app, 4, openid="o_unpaid", state="payment", photo="submitted", last_heard=timedelta(hours=1))
    graduate(app, 5, openid="o_rejected", state="photo", photo="rejected", last_heard=timedelta(days=3))
    graduate(app, 6, openid="o_approved", state="approved", photo="approved", last_heard=timedelta(days=3))
    graduate(app, 7, openid="o_stuck", state="notice", last_heard=timedelta(days=2), idle=timedelta(hours=30))
    with db(app).session() as session:
        follower(session, "o_anonymous", "identity", timedelta(minutes=1))
    rows = {line.split()[0]: line.split()[2:] for line in cli(app, "remind", "segments").splitlines()[1:]}
    assert rows["never_started"] == ["2", "0", "0", "1", "1"]
    assert rows["not_identified"] == ["1", "1", "0", "0", "0"]
    assert rows["stuck"][0] == "1"
    assert rows["photo_failed"][0] == rows["unpaid"][0] == rows["rejected"][0] == "1"
    assert rows["rejected"][1:] == ["0", "1", "0", "0"]  # outside the window: the template message
    assert rows["not_approved"][0] == "6"
    by_level = {line.split()[0]: line.split()[2] for line in cli(app, "remind", "segments", "--level", "专科")
                .splitlines()[1:]}
    assert by_level["never_started"] == "1" and by_level["not_approved"] == "1"


def test_an_uploaded_list_of_id_numbers_is_a_segment(remind_app, tmp_path, fake_sms):
    app = remind_app(jobs={"immediate": True})
    cli(app, "roster", "import", str(write_csv(tmp_path / "r.csv", [row + [p] for row, p in zip(
        ROWS, ["13900000001", "", "13900000003"])], header=["姓名", "身份证号", "准考证号", "学历层次", "专业", "手机号"])))
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{ROWS[0][1]}\n{ROWS[2][1]}，110101199001010000\n")
    refused = cli(app, "remind", "create", "--segment", "id_list", "--text", TEXT, "--ids-file", str(ids), ok=False)
    assert "1 个身份证号无效" in refused
    ids.write_text(f"{ROWS[0][1]}\n{ROWS[2][1]}\n")
    created = cli(app, "remind", "create", "--segment", "id_list", "--text", TEXT, "--ids-file", str(ids))
    assert "共 2 人" in created and "短信 2" in created
    cli(app, "remind", "send", str(campaign_id(created)))
    assert sorted(s.phone for s in fake_sms.sent) == ["+8613900000001", "+8613900000003"]


def test_the_roster_phone_column_is_optional_and_checked(remind_app, tmp_path):
    app = remind_app()
    header = ["姓名", "身份证号", "准考证号", "学历层次", "专业", "手机号"]
    output = cli(app, "roster", "import", str(write_csv(tmp_path / "p.csv", [
        ROWS[0] + ["139 0000 0001"], ROWS[1] + ["12345"], ROWS[2] + [""]], header=header)))
    assert "手机号不是有效的11位手机号码" in output
    cli(app, "roster", "import", str(write_csv(tmp_path / "plain.csv", ROWS)))  # no column: phones stay
    with db(app).session() as session:
        phones = dict(session.execute(select(RosterEntry.id_number, RosterEntry.phone)).all())
    assert phones == {ROWS[0][1]: "+8613900000001", ROWS[1][1]: None, ROWS[2][1]: None}


def test_bad_input_is_refused_before_anything_is_created(remind_app):
    app = remind_app()
    assert "不认识的占位符：{电话}" in cli(app, "remind", "create", "--segment", "never_started", "--text",
                                        "请致电{电话}", ok=False)
    assert "学历层次应为" in cli(app, "remind", "create", "--segment", "never_started", "--text", "x",
                             "--level", "硕士", ok=False)
    assert "没有编号为 99" in cli(app, "remind", "send", "99", ok=False)
    with db(app).session() as session:
        assert session.scalar(select(func.count()).select_from(ReminderCampaign)) == 0


# --- the delivery report -------------------------------------------------------------------------------

def test_the_report_is_masked_unless_revealed_with_a_reason(remind_app, tmp_path, fake_sms):
    app = remind_app(jobs={"immediate": True})
    mixed_cohort(app)
    number = campaign_id(cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT))
    cli(app, "remind", "send", str(number))
    masked = tmp_path / "masked.csv"
    cli(app, "remind", "report", str(number), "--out", str(masked), "--by", "张老师")
    text = masked.read_text(encoding="utf-8-sig")
    assert "110101199001010003" not in text and "13900000003" not in text and "测试3号" not in text
    assert "139****0003" in text and "短信" in text and "已发送" in text and "无法送达" in text
    full = tmp_path / "full.csv"
    cli(app, "remind", "report", str(number), "--out", str(full), "--reveal", "核对短信号码", "--by", "张老师")
    assert "110101199001010003" in full.read_text(encoding="utf-8-sig")
    with db(app).session() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "reminders.report_unmasked"))
    assert event.actor == "张老师" and event.reason == "核对短信号码"


# --- the shared throttle ---------------------------------------------------------------------------------

def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return client


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_the_token_bucket_lets_a_burst_of_its_rate_through_then_makes_everyone_wait(backend, remind_app):
    app = remind_app()
    client = _redis_or_skip() if backend == "redis" else None
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    first, second = Throttle(db(app), client, prefix), Throttle(db(app), client, prefix)  # two workers
    assert [first.try_take("sms", 2.0), second.try_take("sms", 2.0)] == [0.0, 0.0]
    assert first.try_take("sms", 2.0) > 0 and second.try_take("sms", 2.0) > 0
    assert first.try_take("wechat", 2.0) == 0.0  # each channel has its own bucket
    if client is not None:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)


# --- crashes and concurrency -------------------------------------------------------------------------------

def _consumer_app(remind_app, backend: str, request, **reminders):
    queue = f"test-remind-{uuid.uuid4().hex}"
    sections = {"jobs": {"immediate": False, "queue_name": queue}, "notifications": {"lease_seconds": 1},
                "reminders": {"lease_seconds": 2.0, **reminders}}
    if backend == "redis":
        client = _redis_or_skip()
        sections["redis_url"] = REDIS_URL
        request.addfinalizer(lambda: [client.delete(k) for k in client.scan_iter(match=f"*{queue}*")])
    return remind_app(**sections)


def _kill(worker) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)


def _cohort_for_consumers(app, size: int) -> tuple[list[str], list[str]]:
    """Half inside the window (customer-service messages), half SMS only."""
    openids, phones = [], []
    for number in range(1, size + 1):
        if number % 2:
            openids.append(f"o_many_{number}")
            graduate(app, number, openid=openids[-1], last_heard=timedelta(minutes=10))
        else:
            phones.append(f"+86139000{number:05d}")
            graduate(app, number, phone=phones[-1])
    return openids, phones


def _assert_each_once(fake_wechat, fake_sms, openids, phones) -> None:
    assert sorted(m["touser"] for m in fake_wechat.sent_messages) == sorted(openids)
    assert sorted(s.phone for s in fake_sms.sent) == sorted(phones)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_consumer_killed_mid_campaign_and_restarted_reaches_everyone_exactly_once(
        backend, remind_app, fake_wechat, fake_sms, request):
    # Buckets of 2: after the first two SMS (a burst) the next waits half a second, time to stall it.
    app = _consumer_app(remind_app, backend, request, sms_per_second=2.0, wechat_per_second=2.0)
    openids, phones = _cohort_for_consumers(app, 12)
    config = str(app.extensions["collector"].settings.data_dir.parent / "config.toml")
    number = campaign_id(cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT))
    worker = _flask(config, "jobs", "work", "--workers", "2")
    try:
        cli(app, "remind", "send", str(number))
        fake_sms.wait_for(2, timeout=30)
        fake_sms.stall_next(1)  # the next SMS is in flight at the provider when the consumer dies
        fake_sms.wait_stalled(1, timeout=30)
    finally:
        _kill(worker)
    fake_sms.release()
    assert fake_sms.abandoned == 1
    sent_before = len(fake_sms.sent) + len(fake_wechat.sent_messages)
    assert 0 < sent_before < len(openids) + len(phones)
    restarted = _flask(config, "jobs", "work", "--workers", "2")
    try:
        _wait_until(lambda: campaign_status(app, number) == "done", timeout=60)
    finally:
        _kill(restarted)
    _assert_each_once(fake_wechat, fake_sms, openids, phones)
    with db(app).session() as session:
        assert set(session.scalars(select(Notification.status))) == {"sent"}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_two_consumers_at_once_still_reach_everyone_once(backend, remind_app, fake_wechat, fake_sms, request):
    app = _consumer_app(remind_app, backend, request, sms_per_second=20.0, wechat_per_second=20.0,
                        lease_seconds=0.5)  # short leases: the two consumers keep taking the campaign over
    openids, phones = _cohort_for_consumers(app, 20)
    config = str(app.extensions["collector"].settings.data_dir.parent / "config.toml")
    number = campaign_id(cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT))
    workers = [_flask(config, "jobs", "work", "--workers", "2") for _ in range(2)]
    try:
        cli(app, "remind", "send", str(number))
        cli(app, "remind", "send", str(number))
        _wait_until(lambda: campaign_status(app, number) == "done", timeout=60)
    finally:
        for worker in workers:
            _kill(worker)
    _assert_each_once(fake_wechat, fake_sms, openids, phones)


def test_a_window_whose_quota_is_used_up_gets_the_template_without_trying(remind_app, fake_wechat, fake_sms):
    """WeChat takes 5 customer-service messages per candidate message: after 5 sent since the last one,
    the reminder goes as a template message at once (the fake has no limit here, so only our count decides)."""
    app = remind_app(jobs={"immediate": True})
    graduate(app, 1, openid="o_full", last_heard=timedelta(minutes=30))
    graduate(app, 2, openid="o_room", last_heard=timedelta(minutes=30))
    with db(app).session() as session:
        for openid, count in (("o_full", 5), ("o_room", 4)):
            for index in range(count):
                session.add(Notification(dedupe_key=f"earlier:{openid}:{index}", kind="reply", channel="wechat",
                                         openid=openid, payload={"text": "x"}, status="sent", delivered_via="custom",
                                         sent_at=utcnow(), next_attempt_at=utcnow(), created_at=utcnow()))
    created = cli(app, "remind", "create", "--segment", "not_approved", "--text", TEXT)
    assert "客服消息 1，模板消息 1" in created  # the preview already knows
    cli(app, "remind", "send", str(campaign_id(created)))
    assert [m["touser"] for m in fake_wechat.sent_messages] == ["o_room"]
    assert [t["touser"] for t in fake_wechat.templates_sent] == ["o_full"]
