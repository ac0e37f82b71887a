"""SMS providers: Tencent Cloud SMS through the official SDK against the local fake, and the console provider."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from notify.errors import DeliveryError
from notify.sms import ConsoleSms, TencentSms, build_sms_provider, console_serial, is_permanent
from rules.identity import mask_personal_data
from settings import Settings, SmsSettings, settings_from_mapping
from standins.sms import FakeTencentSms

SECRET_ID = "AKIDfakeSecretId0000000000000000"
SECRET_KEY = "fakeSecretKey0000000000000000000"
APP_ID = "1400006666"
SIGN = "北京自考"
TEMPLATES = {"payment_done": "100001", "approved": "100002", "rejected": "100003", "review_delay": "100004"}
PARAM_COUNTS = {"100001": 2, "100002": 1, "100003": 2, "100004": 1}
PHONE = "13800138000"


@pytest.fixture
def fake():
    with FakeTencentSms(SECRET_ID, SECRET_KEY, APP_ID, SIGN, PARAM_COUNTS) as server:
        yield server


def sms_settings(fake: FakeTencentSms, **changes) -> SmsSettings:
    settings = SmsSettings(provider="tencent", secret_id=SECRET_ID, secret_key=SECRET_KEY, sdk_app_id=APP_ID,
                           sign_name=SIGN, endpoint=fake.endpoint, scheme="http", http_timeout_seconds=3.0,
                           **{f"template_{name}": template_id for name, template_id in TEMPLATES.items()})
    return replace(settings, **changes)


def send_error(provider, phone=PHONE, template="approved", params=("张三",)) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        provider.send(phone, template, list(params))
    return caught.value


# --- Tencent Cloud SMS ---------------------------------------------------------------------------

@pytest.mark.parametrize("phone", ["13800138000", "+8613800138000"])
def test_a_sent_message_returns_its_serial_and_reaches_the_fake(fake, phone):
    serial = TencentSms(sms_settings(fake)).send(phone, "rejected", ["张三", "背景不是白色"])

    [sent] = fake.wait_for(1)
    assert serial == sent.serial_no and serial.startswith("2433:")
    assert sent.phone == "+8613800138000"
    assert sent.template_id == "100003"
    assert sent.params == ["张三", "背景不是白色"]
    assert sent.sign_name == SIGN


def test_one_provider_sends_many_messages_over_its_connection(fake):
    provider = TencentSms(sms_settings(fake))
    serials = [provider.send(PHONE, "approved", [f"考生{i}"]) for i in range(3)]
    assert len(set(serials)) == 3
    assert [sent.params for sent in fake.sent] == [["考生0"], ["考生1"], ["考生2"]]


def test_a_wrong_secret_key_is_a_permanent_signature_failure(fake):
    error = send_error(TencentSms(sms_settings(fake, secret_key="not-the-key")))
    assert error.permanent
    assert "AuthFailure.SignatureFailure" in str(error)
    assert fake.sent == [] and fake.requests == 1


def test_an_unknown_secret_id_is_permanent(fake):
    error = send_error(TencentSms(sms_settings(fake, secret_id="AKIDnobody")))
    assert error.permanent and "AuthFailure.SecretIdNotFound" in str(error)


def test_a_body_changed_after_signing_fails_the_signature(fake):
    provider = TencentSms(sms_settings(fake))
    connection = provider._client().request.conn
    original = connection.request

    def tampering(method, url, body=None, headers=None):
        return original(method, url, body.replace("100002", "100001"), headers)

    connection.request = tampering
    error = send_error(provider)
    assert error.permanent and "AuthFailure.SignatureFailure" in str(error)
    assert fake.sent == []


def test_a_stale_timestamp_is_refused(fake):
    fake.clock = lambda: time.time() + 301  # the fake's clock runs ahead of ours
    error = send_error(TencentSms(sms_settings(fake)))
    assert not error.permanent and "AuthFailure.SignatureExpire" in str(error)  # a clock put right helps
    fake.clock = lambda: time.time() + 295
    TencentSms(sms_settings(fake)).send(PHONE, "approved", ["张三"])
    assert len(fake.sent) == 1


def test_a_template_id_the_service_does_not_know_is_permanent(fake):
    error = send_error(TencentSms(sms_settings(fake, template_approved="999999")))
    assert error.permanent and "FailedOperation.TemplateIncorrectOrUnapproved" in str(error)
    assert fake.sent == []


def test_a_missing_template_id_is_permanent_and_sends_nothing(fake):
    error = send_error(TencentSms(sms_settings(fake, template_review_delay="")), template="review_delay",
                       params=["48"])
    assert error.permanent and "template_review_delay" in str(error)
    assert fake.requests == 0


def test_an_unknown_template_name_is_permanent(fake):
    error = send_error(TencentSms(sms_settings(fake)), template="welcome")
    assert error.permanent and fake.requests == 0


def test_a_wrong_signature_name_is_permanent(fake):
    error = send_error(TencentSms(sms_settings(fake, sign_name="别的签名")))
    assert error.permanent and "FailedOperation.SignatureIncorrectOrUnapproved" in str(error)


def test_a_wrong_parameter_count_is_permanent(fake):
    error = send_error(TencentSms(sms_settings(fake)), template="rejected", params=["张三"])
    assert error.permanent and "TemplateParamSetNotMatchApprovedTemplate" in str(error)


def test_a_wrong_region_is_permanent(fake):
    error = send_error(TencentSms(sms_settings(fake, region="ap-nanjing")))
    assert error.permanent and "UnsupportedRegion" in str(error)


def test_a_number_that_is_not_a_mainland_mobile_is_permanent_and_not_sent(fake):
    error = send_error(TencentSms(sms_settings(fake)), phone="12345")
    assert error.permanent and fake.requests == 0


def test_the_daily_limit_is_temporary_and_the_next_try_goes_through(fake):
    provider = TencentSms(sms_settings(fake))
    fake.fail_next(1, "LimitExceeded.PhoneNumberDailyLimit")
    error = send_error(provider)
    assert not error.permanent
    assert "LimitExceeded.PhoneNumberDailyLimit" in str(error)
    assert "138****8000" in str(error) and PHONE not in str(error)
    assert fake.sent == []
    provider.send(PHONE, "approved", ["张三"])
    assert len(fake.sent) == 1


def test_delivery_reports_find_a_text_by_its_session_context_and_leave_a_per_number_failure_for_the_next_send(
        fake):
    provider = TencentSms(sms_settings(fake))
    before = datetime.now(timezone.utc)
    serial = provider.send(PHONE, "approved", ["张三"], session_context="notification-7")
    fake.fail_next(1, "LimitExceeded.PhoneNumberDailyLimit")  # per number: only a SendSms can get it
    assert provider.find_sent(PHONE, "notification-7", before) == serial
    assert provider.find_sent(PHONE, "notification-8", before) is None
    assert fake.pulls == 2
    assert "LimitExceeded.PhoneNumberDailyLimit" in str(send_error(provider))


def test_a_failed_look_up_of_delivery_reports_is_a_temporary_error(fake):
    provider = TencentSms(sms_settings(fake))
    fake.fail_next(1, kind="request", code="UnauthorizedOperation.RequestPermissionDeny")
    with pytest.raises(DeliveryError, match="RequestPermissionDeny") as caught:
        provider.find_sent(PHONE, "notification-7", datetime.now(timezone.utc))
    assert not caught.value.permanent and PHONE not in str(caught.value)


@pytest.mark.parametrize("kind, code, permanent", [
    ("number", "LimitExceeded.PhoneNumberThirtySecondLimit", False),
    ("number", "InternalError.Timeout", False),
    ("request", "RequestLimitExceeded", False),
    ("request", "InternalError", False),
    ("request", "FailedOperation.InsufficientBalanceInSmsPackage", False),
    ("number", "InvalidParameterValue.IncorrectPhoneNumber", True),
    ("number", "FailedOperation.PhoneNumberInBlacklist", True),
    ("request", "FailedOperation.TemplateIncorrectOrUnapproved", True),
    ("request", "UnauthorizedOperation.SmsSdkAppIdVerifyFail", True),
    ("request", "AuthFailure.SecretIdNotFound", True),
])
def test_provider_codes_map_to_permanent_or_temporary(fake, kind, code, permanent):
    fake.fail_next(1, code, kind=kind)
    error = send_error(TencentSms(sms_settings(fake)))
    assert error.permanent is permanent
    assert code in str(error)


@pytest.mark.parametrize("kind", ["http500", "close"])
def test_a_server_error_or_dropped_connection_is_temporary(fake, kind):
    fake.fail_next(1, kind=kind)
    error = send_error(TencentSms(sms_settings(fake)))
    assert not error.permanent
    assert fake.sent == []


def test_a_stopped_service_is_temporary_even_on_a_kept_alive_connection(fake):
    provider = TencentSms(sms_settings(fake))
    provider.send(PHONE, "approved", ["张三"])
    fake.stop()
    error = send_error(provider)
    assert not error.permanent and "ClientNetworkError" in str(error)


def test_a_stalled_request_is_sent_once_released(fake):
    provider = TencentSms(sms_settings(fake))
    fake.stall_next()
    results = []
    sender = threading.Thread(target=lambda: results.append(provider.send(PHONE, "approved", ["张三"])))
    sender.start()
    fake.wait_stalled(1)
    assert fake.sent == []
    fake.release()
    sender.join(5)
    assert [sent.serial_no for sent in fake.sent] == results and len(results) == 1
    assert fake.abandoned == 0


def test_a_request_whose_client_gave_up_is_not_counted_as_sent(fake):
    provider = TencentSms(sms_settings(fake, http_timeout_seconds=0.3))
    fake.stall_next()
    error = send_error(provider)  # the client times out while the fake holds the request
    assert not error.permanent
    fake.wait_stalled(1)
    fake.release()
    assert fake.abandoned == 1
    assert fake.sent == []


def test_error_codes_outside_the_known_families_are_retried():
    assert not is_permanent("ClientNetworkError")
    assert not is_permanent("ServerNetworkError")
    assert not is_permanent("JSONDecodeError")
    assert is_permanent("ClientError")
    assert is_permanent("InvalidParameter")
    assert not is_permanent("LimitExceeded.AppDailyLimit")
    assert is_permanent("LimitExceeded.AppCountryOrRegionInBlacklist")


# --- console provider ----------------------------------------------------------------------------

def test_console_serials_survive_the_log_masking_that_hides_phone_numbers():
    # About one random hex serial in seventy (1.5 % of 20 000 drawn) holds a run the masking takes for a phone.
    assert all(mask_personal_data(serial) == serial for serial in (console_serial() for _ in range(2000)))


def test_console_logs_the_message_with_phone_and_name_masked(tmp_path, caplog):
    log_path = tmp_path / "out" / "sms.jsonl"
    provider = ConsoleSms(log_path=log_path)
    with caplog.at_level(logging.INFO, logger="notify.sms"):
        serial = provider.send("+8613800138000", "rejected", ["王小明", "号码 13900139000 不清楚"])

    assert re.fullmatch(r"console-[0-9a-f]{32}", serial)
    [record] = [r for r in caplog.records if r.name == "notify.sms"]
    line = record.getMessage()
    assert "138****8000" in line and "rejected" in line and "王*明" in line and serial in line
    assert "13800138000" not in line and "13900139000" not in line and "王小明" not in line
    [written] = [json.loads(text) for text in log_path.read_text(encoding="utf-8").splitlines()]
    assert written["serial"] == serial
    assert written["phone"] == "138****8000"
    assert written["template"] == "rejected"
    assert written["params"] == ["王*明", "号码 139****9000 不清楚"]
    assert "王小明" not in log_path.read_text(encoding="utf-8")
    assert log_path.stat().st_mode & 0o777 == 0o600


def test_console_appends_one_line_per_message_and_works_without_a_file(tmp_path):
    log_path = tmp_path / "sms.jsonl"
    provider = ConsoleSms(log_path)
    provider.send(PHONE, "approved", ["张三"])
    provider.send(PHONE, "review_delay", ["48"])
    assert [json.loads(line)["template"] for line in log_path.read_text().splitlines()] == ["approved", "review_delay"]
    assert ConsoleSms().send(PHONE, "approved", ["张三"]).startswith("console-")


def test_console_refuses_what_the_real_provider_would(tmp_path):
    provider = ConsoleSms(tmp_path / "sms.jsonl")
    assert send_error(provider, phone="010-58691620").permanent
    assert send_error(provider, template="welcome").permanent
    assert not (tmp_path / "sms.jsonl").exists()


# --- configuration -------------------------------------------------------------------------------

def test_build_sms_provider_picks_by_config(tmp_path):
    console = build_sms_provider(Settings(data_dir=tmp_path))
    assert isinstance(console, ConsoleSms) and console.name == "console"
    assert console.log_path == tmp_path / "sms.jsonl"
    tencent = build_sms_provider(settings_from_mapping({"sms": {"provider": "tencent", "secret_id": "x"}}))
    assert isinstance(tencent, TencentSms) and tencent.name == "tencent"
    assert tencent.settings.secret_id == "x"
    with pytest.raises(ValueError, match="aliyun"):
        build_sms_provider(Settings(sms=SmsSettings(provider="aliyun")))


def test_the_example_config_documents_every_sms_setting_with_its_default():
    text = (Path(__file__).resolve().parents[1] / "config.example.toml").read_text(encoding="utf-8")
    block = text.split("# [sms]\n", 1)[1].split("\n\n", 1)[0]
    settings_lines = [line[2:] for line in block.splitlines() if re.match(r"# [a-z_]+ = ", line)]
    documented = tomllib.loads("\n".join(settings_lines))
    assert documented == {name: getattr(SmsSettings(), name) for name in SmsSettings.__dataclass_fields__}


def test_a_request_from_a_killed_process_is_not_counted_as_sent(fake):
    script = ("import json, sys; from notify.sms import TencentSms; from settings import SmsSettings; "
              "TencentSms(SmsSettings(**json.loads(sys.argv[1]))).send('13800138000', 'approved', ['张三'])")
    fields = {name: getattr(sms_settings(fake), name) for name in SmsSettings.__dataclass_fields__}
    fake.stall_next()
    worker = subprocess.Popen([sys.executable, "-c", script, json.dumps(fields)],
                              cwd=Path(__file__).resolve().parents[1])
    try:
        fake.wait_stalled(1, timeout=30)
    finally:
        worker.kill()
        worker.wait(10)
    fake.release()
    assert fake.abandoned == 1
    assert fake.sent == []
