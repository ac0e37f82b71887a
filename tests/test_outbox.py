"""The notification outbox, through the staff CLI, the jobs CLI and a real huey consumer, against the
fake WeChat API and the fake Tencent Cloud SMS.

Every test counts what the fakes accepted: each notification must arrive exactly once, whatever
failed on the way."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import event, select, update

import messages
from loadtest.cluster import terminate_connections
from settings import ConfigError
from notify.sms import ConsoleSms
from standins.sms import FakeTencentSms
from store.models import AuditEvent, Message, Notification, Order, Photo, utcnow
from tests.staff_fixtures import PHONE, ROWS, put_under_review, write_csv

PROJECT = Path(__file__).resolve().parents[1]
SMS_SECRET_ID, SMS_SECRET_KEY, SMS_APP_ID, SMS_SIGN = "AKIDtest", "sms-secret", "1400000001", "北京自考"
SMS_TEMPLATES = {"T_PAID": 2, "T_APPROVED": 1, "T_REJECTED": 2, "T_DELAY": 1}
TEMPLATE_FIELDS = ("first", "keyword1", "keyword2", "keyword3", "remark")
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def fake_sms():
    with FakeTencentSms(SMS_SECRET_ID, SMS_SECRET_KEY, SMS_APP_ID, SMS_SIGN, SMS_TEMPLATES) as fake:
        yield fake


@pytest.fixture
def outbox_app(make_app, fake_sms, tmp_path):
    """make_app with SMS through the fake Tencent Cloud and retries due at once."""
    def factory(**sections):
        config = {
            "sms": {"provider": "tencent", "secret_id": SMS_SECRET_ID, "secret_key": SMS_SECRET_KEY,
                    "sdk_app_id": SMS_APP_ID, "sign_name": SMS_SIGN, "endpoint": fake_sms.endpoint,
                    "scheme": "http", "template_payment_done": "T_PAID", "template_approved": "T_APPROVED",
                    "template_rejected": "T_REJECTED", "template_review_delay": "T_DELAY"},
            "notifications": {"retry_base_seconds": 0, "max_attempts": 4},
        }
        for name, values in sections.items():
            if isinstance(values, dict):
                config.setdefault(name, {}).update(values)
            else:
                config[name] = values
        app = make_app(**config)
        result = app.test_cli_runner().invoke(args=["roster", "import", str(write_csv(tmp_path / "r.csv", ROWS))])
        assert result.exit_code == 0, result.output
        return app
    return factory


def cli(app, *args: str):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def notifications(app) -> list[Notification]:
    with app.extensions["collector"].db.session() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def by_channel(app) -> dict[str, Notification]:
    return {row.channel: row for row in notifications(app)}


def approve(app, graduate=ROWS[0], openid="o_outbox_1") -> None:
    put_under_review(app, graduate, openid)
    cli(app, "review", "approve", graduate[1], "--by", "李老师")


# --- delivery ---------------------------------------------------------------------------------------

def test_an_approval_reaches_the_candidate_once_by_wechat_and_once_by_sms(outbox_app, fake_wechat, fake_sms):
    app = outbox_app()
    approve(app)
    assert [m["text"]["content"] for m in fake_wechat.messages_to("o_outbox_1")] == [messages.APPROVED]
    [sms] = fake_sms.sent
    assert (sms.phone, sms.template_id, sms.params) == ("+86" + PHONE, "T_APPROVED", [ROWS[0][0]])
    rows = by_channel(app)
    assert {c: (r.status, r.attempts, r.delivered_via) for c, r in rows.items()} == {
        "wechat": ("sent", 1, "custom"), "sms": ("sent", 1, "tencent")}
    assert "sent" in cli(app, "outbox", "status")


def test_a_rejection_sends_the_reason_by_sms_too(outbox_app, fake_sms):
    app = outbox_app()
    put_under_review(app, ROWS[1], "o_outbox_2")
    cli(app, "review", "reject", ROWS[1][1], "--reason", "背景不是纯色", "--by", "李老师")
    [sms] = fake_sms.sent
    assert (sms.template_id, sms.params) == ("T_REJECTED", [ROWS[1][0], "背景不是纯色"])


def test_sms_failing_then_recovering_is_delivered_exactly_once(outbox_app, fake_wechat, fake_sms):
    app = outbox_app()
    fake_sms.fail_next(2, code="LimitExceeded.PhoneNumberThirtySecondLimit")
    approve(app)
    sms_row = by_channel(app)["sms"]
    assert (sms_row.status, sms_row.attempts) == ("pending", 1)
    assert "LimitExceeded.PhoneNumberThirtySecondLimit" in sms_row.last_error
    assert "retry=1" in cli(app, "jobs", "run", "outbox")
    assert "sent=1" in cli(app, "jobs", "run", "outbox")
    assert "nothing to do" in cli(app, "jobs", "run", "outbox")  # nothing left to do
    assert len(fake_sms.sent) == 1 and fake_sms.requests == 3
    assert len(fake_wechat.messages_to("o_outbox_1")) == 1  # the sweeps never resent the WeChat message
    sms_row = by_channel(app)["sms"]
    assert (sms_row.status, sms_row.attempts, sms_row.last_error) == ("sent", 3, None)


def test_retries_wait_for_their_backoff(outbox_app, fake_sms):
    app = outbox_app(notifications={"retry_base_seconds": 600})
    fake_sms.fail_next(1, kind="http500")
    approve(app)
    sms_row = by_channel(app)["sms"]
    assert sms_row.status == "pending"
    assert timedelta(seconds=590) < sms_row.next_attempt_at - utcnow() <= timedelta(seconds=600)
    assert "nothing to do" in cli(app, "jobs", "run", "outbox")  # not due yet
    assert fake_sms.requests == 1


def test_a_permanent_failure_is_dead_at_once_and_staff_can_retry_it(outbox_app, fake_sms):
    app = outbox_app()
    fake_sms.fail_next(1, code="FailedOperation.TemplateIncorrectOrUnapproved", kind="request")
    approve(app)
    sms_row = by_channel(app)["sms"]
    assert (sms_row.status, sms_row.attempts) == ("dead", 1)
    listing = cli(app, "outbox", "list")
    assert str(sms_row.id) in listing and "TemplateIncorrectOrUnapproved" in listing
    assert "nothing to do" in cli(app, "jobs", "run", "outbox")  # the sweep leaves dead rows alone
    assert f"重新投递 1 条通知：{sms_row.id}" in cli(app, "outbox", "retry", "--all-dead", "--by", "王工")
    assert len(fake_sms.sent) == 1 and by_channel(app)["sms"].status == "sent"
    with app.extensions["collector"].db.session() as session:
        assert session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "outbox.retry")) == "王工"


def test_a_notification_gives_up_after_max_attempts(outbox_app, fake_sms):
    app = outbox_app(notifications={"max_attempts": 3})
    fake_sms.fail_next(10, kind="http500")
    approve(app)
    cli(app, "jobs", "run", "outbox")
    assert "dead=1" in cli(app, "jobs", "run", "outbox")
    cli(app, "jobs", "run", "outbox")
    sms_row = by_channel(app)["sms"]
    assert (sms_row.status, sms_row.attempts) == ("dead", 3)
    assert fake_sms.requests == 3 and fake_sms.sent == []


def test_a_wechat_failure_is_shown_in_the_transcript_until_it_is_sent(outbox_app, fake_wechat):
    app = outbox_app()
    fake_wechat.fail_next_sends(1, errcode=45009)  # API frequency limit: temporary
    approve(app)
    wechat_row = by_channel(app)["wechat"]
    assert wechat_row.status == "pending"
    with app.extensions["collector"].db.session() as session:
        assert "45009" in session.get(Message, wechat_row.message_id).delivery_error
    cli(app, "jobs", "run", "outbox")
    assert len(fake_wechat.messages_to("o_outbox_1")) == 1
    with app.extensions["collector"].db.session() as session:
        assert session.get(Message, wechat_row.message_id).delivery_error is None


# --- the 48-hour window ------------------------------------------------------------------------------

def _last_heard(app, openid: str, ago: timedelta) -> None:
    with app.extensions["collector"].db.session() as session:
        session.execute(update(Message).where(Message.openid == openid, Message.direction == "in")
                        .values(created_at=utcnow() - ago))


def test_after_48_hours_of_silence_a_template_message_is_sent(outbox_app, fake_wechat):
    app = outbox_app(notifications={"wechat_template_approved": "TPL_OK"})
    fake_wechat.add_template("TPL_OK", TEMPLATE_FIELDS)
    put_under_review(app, ROWS[0], "o_outbox_1")
    _last_heard(app, "o_outbox_1", timedelta(hours=49))
    cli(app, "review", "approve", ROWS[0][1])
    assert fake_wechat.messages_to("o_outbox_1") == []
    [template] = fake_wechat.templates_sent
    assert (template["touser"], template["template_id"]) == ("o_outbox_1", "TPL_OK")
    assert template["data"]["keyword1"] == {"value": ROWS[0][0]}
    assert by_channel(app)["wechat"].delivered_via == "template"


def test_a_category_template_gets_its_own_fields_cut_to_their_limits(outbox_app, fake_wechat):
    fields = {"thing1": "name", "phrase2": "status", "thing3": "reason", "time4": "time"}
    app = outbox_app(notifications={"wechat_template_rejected": "TPL_NEW",
                                    "wechat_template_rejected_fields": fields})
    fake_wechat.add_template("TPL_NEW", tuple(fields))
    put_under_review(app, ROWS[0], "o_outbox_1")
    _last_heard(app, "o_outbox_1", timedelta(hours=49))
    reason = "背景不是纯色，请在白墙前重新拍摄，注意光线均匀、不要有阴影"
    cli(app, "review", "reject", ROWS[0][1], "--reason", reason)
    [template] = fake_wechat.templates_sent
    data = {key: item["value"] for key, item in template["data"].items()}
    assert data["thing1"] == ROWS[0][0] and data["phrase2"] == "未通过"
    assert data["thing3"] == reason[:19] + "…"
    assert len(data["time4"]) == len("2026-11-24 14:30")
    assert by_channel(app)["wechat"].status == "sent"


def test_a_template_field_mapping_naming_an_unknown_value_stops_start_up(outbox_app):
    with pytest.raises(ConfigError, match="unknown value"):
        outbox_app(notifications={"wechat_template_approved_fields": {"thing1": "nickname"}})


def test_a_customer_service_message_refused_with_45015_falls_back_to_the_template(outbox_app, fake_wechat):
    app = outbox_app(notifications={"wechat_template_approved": "TPL_OK"})
    fake_wechat.add_template("TPL_OK", TEMPLATE_FIELDS)
    fake_wechat.fail_next_sends(1, errcode=45015)
    approve(app)
    assert len(fake_wechat.templates_sent) == 1 and fake_wechat.messages_to("o_outbox_1") == []
    assert by_channel(app)["wechat"].status == "sent"


def test_with_the_window_closed_and_no_template_the_wechat_row_is_dead_but_sms_still_goes(outbox_app, fake_sms,
                                                                                            fake_wechat):
    app = outbox_app()
    put_under_review(app, ROWS[0], "o_outbox_1")
    _last_heard(app, "o_outbox_1", timedelta(hours=49))
    cli(app, "review", "approve", ROWS[0][1])
    rows = by_channel(app)
    assert rows["wechat"].status == "dead" and "没有可用的模板消息" in rows["wechat"].last_error
    assert rows["sms"].status == "sent" and len(fake_sms.sent) == 1
    assert fake_wechat.requests == [] or all("custom/send" not in path for _, path in fake_wechat.requests)


# --- review deadlines --------------------------------------------------------------------------------

def test_a_late_review_gets_one_apology_by_wechat_and_sms(outbox_app, fake_wechat, fake_sms):
    app = outbox_app()
    entry_id = put_under_review(app, ROWS[0], "o_outbox_1")
    long_ago = utcnow() - timedelta(hours=49)
    with app.extensions["collector"].db.session() as session:
        session.execute(update(Order).where(Order.roster_entry_id == entry_id).values(paid_at=long_ago))
        session.execute(update(Photo).where(Photo.roster_entry_id == entry_id).values(created_at=long_ago))
    first = cli(app, "jobs", "run", "reviews")
    second = cli(app, "jobs", "run", "reviews")
    assert "overdue=1" in first and "apologised=1" in first
    assert "overdue=1" in second and "apologised=0" in second
    texts = [m["text"]["content"] for m in fake_wechat.messages_to("o_outbox_1")]
    assert texts == [messages.REVIEW_DELAYED.format(review_hours=48)]
    assert [(s.template_id, s.params) for s in fake_sms.sent] == [("T_DELAY", ["48"])]


def test_a_review_inside_the_promised_time_gets_nothing(outbox_app, fake_wechat, fake_sms):
    app = outbox_app()
    put_under_review(app, ROWS[0], "o_outbox_1")
    assert "overdue=0" in cli(app, "jobs", "run", "reviews")
    assert fake_wechat.sent_messages == [] and fake_sms.sent == []


# --- crashes and concurrency ---------------------------------------------------------------------------

def test_a_crash_between_commit_and_delivery_loses_nothing_and_the_queued_task_sends_nothing_twice(
        outbox_app, fake_wechat, fake_sms):
    """No consumer runs: the approval commits with its notifications and queued tasks, and nothing is
    sent. The sweep delivers; the tasks still in the queue, run afterwards, find nothing to do."""
    app = outbox_app(jobs={"immediate": False})
    approve(app)
    assert {row.status for row in notifications(app)} == {"pending"}
    assert fake_wechat.sent_messages == [] and fake_sms.sent == []
    assert "sent=2" in cli(app, "jobs", "run", "outbox")
    huey = app.extensions["collector"].jobs.huey
    queued = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        queued += 1
    assert queued == 2
    assert len(fake_wechat.messages_to("o_outbox_1")) == 1 and len(fake_sms.sent) == 1


def test_two_sweeps_at_once_send_every_notification_once(outbox_app, fake_wechat, fake_sms):
    app = outbox_app(jobs={"immediate": False})
    for index, graduate in enumerate(ROWS):
        approve(app, graduate, openid=f"o_outbox_{index}")
    assert len(notifications(app)) == 6
    config = str(app.extensions["collector"].settings.data_dir.parent / "config.toml")
    sweeps = [_flask(config, "jobs", "run", "outbox") for _ in range(2)]
    outputs = [sweep.communicate(timeout=60)[0] for sweep in sweeps]
    assert all(sweep.returncode == 0 for sweep in sweeps), outputs
    assert len(fake_wechat.sent_messages) == 3 and len(fake_sms.sent) == 3
    assert sorted(m["touser"] for m in fake_wechat.sent_messages) == [f"o_outbox_{i}" for i in range(3)]
    assert {row.status for row in notifications(app)} == {"sent"}


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_worker_killed_mid_delivery_loses_nothing_and_sends_nothing_twice(backend, outbox_app, fake_wechat,
                                                                            fake_sms, request):
    """A real consumer is killed (SIGKILL) while the SMS request is in flight at the provider. Its
    claim lapses; the next sweep delivers it. Each message arrives exactly once."""
    queue = f"test-{uuid.uuid4().hex}"
    sections = {"jobs": {"immediate": False, "queue_name": queue}, "notifications": {"lease_seconds": 1}}
    if backend == "redis":
        _redis_or_skip()
        sections["redis_url"] = REDIS_URL
        request.addfinalizer(lambda: _forget_redis_keys(queue))
    app = outbox_app(**sections)
    fake_sms.stall_next(1)
    approve(app)
    config = str(app.extensions["collector"].settings.data_dir.parent / "config.toml")
    worker = _flask(config, "jobs", "work", "--workers", "2")
    try:
        fake_sms.wait_stalled(1, timeout=30)
        _wait_until(lambda: by_channel(app)["wechat"].status == "sent", timeout=30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    fake_sms.release()
    assert fake_sms.abandoned == 1 and fake_sms.sent == []
    assert by_channel(app)["sms"].status == "sending"
    time.sleep(1.2)  # the dead worker's lease runs out
    assert "sent=1" in cli(app, "jobs", "run", "outbox")
    assert len(fake_sms.sent) == 1 and len(fake_wechat.messages_to("o_outbox_1")) == 1
    assert {row.status for row in notifications(app)} == {"sent"}


def _consumer_app(outbox_app, **notifications):
    """An app whose notifications go through a real consumer (`flask jobs work`), leases of 1 s."""
    queue = f"test-{uuid.uuid4().hex}"
    return outbox_app(jobs={"immediate": False, "queue_name": queue},
                      notifications={"lease_seconds": 1, **notifications})


def _kill_the_consumer_once(app, condition) -> None:
    """Starts a consumer and kills it (SIGKILL) once `condition()` holds, then lets its lease run out."""
    config = str(app.extensions["collector"].settings.data_dir.parent / "config.toml")
    worker = _flask(config, "jobs", "work", "--workers", "2")
    try:
        _wait_until(condition, timeout=30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    time.sleep(1.2)  # the dead worker's lease runs out


@pytest.mark.parametrize("reports, sent", [("in", 1), ("not yet in", 2), ("unreadable", 2)])
def test_an_sms_whose_worker_was_killed_before_hearing_back_is_looked_up_before_it_is_sent_again(
        reports, sent, outbox_app, fake_wechat, fake_sms, caplog):
    """Tencent sent the text, and the worker died before the answer reached it. The next attempt is in
    doubt: it finds the text in the delivery reports by its session context and sends nothing. A text
    not reported yet, or a look-up that fails, goes again (twice is better than never)."""
    app = _consumer_app(outbox_app)
    fake_sms.stall_next(1, after_accepting=True)
    fake_sms.withhold_reports(reports == "not yet in")
    approve(app)
    _kill_the_consumer_once(app, lambda: fake_sms.sent and by_channel(app)["wechat"].status == "sent")
    fake_sms.release()
    assert by_channel(app)["sms"].status == "sending"
    if reports == "unreadable":
        fake_sms.fail_next(1, kind="request", code="UnauthorizedOperation.RequestPermissionDeny")
    caplog.set_level(logging.INFO, logger="notify")
    assert "sent=1" in cli(app, "jobs", "run", "outbox")
    row = by_channel(app)["sms"]
    assert (row.status, row.attempts, fake_sms.pulls) == ("sent", 2, 0 if reports == "unreadable" else 1)
    assert [sms.session_context for sms in fake_sms.sent] == [f"notification-{row.id}"] * sent
    assert "died while sending it" in caplog.text
    assert ("not sent again" in caplog.text) == (sent == 1)
    assert ("RequestPermissionDeny" in caplog.text) == (reports == "unreadable")
    assert len(fake_wechat.messages_to("o_outbox_1")) == 1


def test_a_template_message_whose_worker_was_killed_before_hearing_back_is_dropped_by_wechat_when_repeated(
        outbox_app, fake_wechat, fake_sms):
    """The same, for a template message: the repeat carries the same client_msg_id, which WeChat sends
    once within 10 minutes."""
    app = _consumer_app(outbox_app, wechat_template_approved="TPL_OK")
    fake_wechat.add_template("TPL_OK", TEMPLATE_FIELDS)
    put_under_review(app, ROWS[0], "o_outbox_1")
    _last_heard(app, "o_outbox_1", timedelta(hours=49))
    fake_wechat.hold_answers("/cgi-bin/message/template/send")
    cli(app, "review", "approve", ROWS[0][1])
    # The SMS recorded as sent, as the SMS test waits for the other channel: else it may be in doubt too.
    _kill_the_consumer_once(app, lambda: fake_wechat.templates_sent and by_channel(app)["sms"].status == "sent")
    fake_wechat.release_answers()
    assert by_channel(app)["wechat"].status == "sending"
    assert "sent=1" in cli(app, "jobs", "run", "outbox")
    row = by_channel(app)["wechat"]
    assert (row.status, row.attempts, row.delivered_via) == ("sent", 2, "template")
    [template] = fake_wechat.templates_sent
    assert template["client_msg_id"] == f"notification-{row.id}"
    assert sum(path.endswith("/template/send") for _, path in fake_wechat.requests) == 2
    assert len(fake_sms.sent) == 1


def test_the_console_sms_log_answers_whether_a_message_went_out(tmp_path):
    provider = ConsoleSms(log_path=tmp_path / "sms.jsonl")
    started = utcnow()
    serial = provider.send(PHONE, "approved", ["张三"], session_context="notification-7")
    assert provider.find_sent(PHONE, "notification-7", started) == serial
    assert provider.find_sent(PHONE, "notification-8", started) is None
    assert provider.find_sent("13900000000", "notification-7", started) is None
    assert provider.find_sent(PHONE, "notification-7", started + timedelta(minutes=5)) is None
    assert ConsoleSms().find_sent(PHONE, "notification-7", started) is None


def _forget_redis_keys(queue: str) -> None:
    """The queue's keys and the access token kept under its name."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)


def _wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def _flask(config: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, COLLECTOR_CONFIG=config, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_transcript_shows_support_what_was_sent_and_what_failed(outbox_app, fake_sms):
    app = outbox_app()
    fake_sms.fail_next(1, code="InvalidParameterValue.IncorrectPhoneNumber")
    approve(app)
    output = cli(app, "transcript", "o_outbox_1")
    assert "-- 通知（2 条，微信和短信）" in output
    assert "approved wechat 已发送（尝试 1 次，经 custom）" in output
    assert "approved sms    已放弃（尝试 1 次）" in output
    assert "IncorrectPhoneNumber" in output and PHONE not in output


def _claiming(statement: str) -> bool:
    return statement.startswith("UPDATE notifications") and "lease_until" in statement and "sent_at" not in statement


def _recording_as_sent(statement: str) -> bool:
    return statement.startswith("UPDATE notifications") and "sent_at" in statement


@pytest.mark.parametrize("cut_while, said", [(_claiming, "claiming it"), (_recording_as_sent, "recording it as sent")],
                         ids=["claiming", "recording"])
def test_a_claim_or_record_whose_connection_is_cut_is_made_again_on_a_new_one(cut_while, said, outbox_app, fake_wechat,
                                                                              fake_sms, database_url, caplog):
    """As in the cohort load test: pg_terminate_backend while a worker claims a row (it waited a minute for
    the sweep), or just after WeChat accepted the approval (unrecorded, it would be sent again once its
    lease ran out)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): SQLite has no connections to cut")
    app = outbox_app()
    engine = app.extensions["collector"].db.engine
    cut = []

    def cut_there(connection, cursor, statement, *_):
        if not cut and cut_while(statement):
            cut.append(connection.connection.driver_connection.info.backend_pid)
            assert terminate_connections(database_url, pid=cut[0]) == 1

    event.listen(engine, "before_cursor_execute", cut_there)
    caplog.set_level(logging.WARNING, logger="notify.outbox")
    try:
        approve(app)
    finally:
        event.remove(engine, "before_cursor_execute", cut_there)
    assert cut, "the statement to cut was never sent"
    assert f"{said}: the database connection was lost; doing it again" in caplog.text
    assert {c: (r.status, r.attempts) for c, r in by_channel(app).items()} == {"wechat": ("sent", 1),
                                                                               "sms": ("sent", 1)}
    assert "nothing to do" in cli(app, "jobs", "run", "outbox")
    assert [m["text"]["content"] for m in fake_wechat.messages_to("o_outbox_1")] == [messages.APPROVED]
    assert len(fake_sms.sent) == 1
