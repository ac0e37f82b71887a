"""Text messages behind one interface: `ConsoleSms` (the embedded default, writes them to the log) and
`TencentSms` (Tencent Cloud SMS, API 2021-01-11, through its official SDK).

A provider takes a logical template name (TEMPLATES) and the template's parameters; it either returns
the provider's serial number or raises DeliveryError, `permanent` when retrying cannot help.

Each outbox message carries its notification as the session context. When a worker died while sending
one (the outbox calls the attempt "in doubt"), the next attempt first asks the provider's own records
whether that context went out, and sends again only when it did not.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models
from tencentcloud.sms.v20210111.sms_client import SmsClient

from notify.errors import DeliveryError
from rules.identity import mask_name, mask_personal_data
from rules.phone import mask_phone, parse_mobile
from settings import Settings, SmsSettings
from store.files import private_file

log = logging.getLogger(__name__)

TEMPLATES = ("payment_done", "approved", "rejected", "review_delay", "support_reply", "reminder", "phone_code")
# Which parameter of a template is the candidate's name (notify/notices.py puts it first).
NAME_PARAMS = {"approved": 0, "rejected": 0, "reminder": 0}
CONSOLE_LOG_FILE = "sms.jsonl"
# Delivery reports are looked up from this long before the attempt in doubt began (clock skew).
IN_DOUBT_MARGIN = timedelta(minutes=1)
PULL_LIMIT = 100  # Tencent's maximum per PullSmsSendStatusByPhoneNumber request
SDK_LOGGER = "tencentcloud_sdk_common"

# Tencent Cloud error codes (whole-request `Error.Code` or per-number `SendStatusSet[].Code`) are
# "Family.Detail". These families mean the request itself is wrong and will stay wrong.
_PERMANENT_FAMILIES = frozenset({
    "AuthFailure", "UnauthorizedOperation", "InvalidParameter", "InvalidParameterValue",
    "MissingParameter", "UnsupportedOperation", "UnsupportedRegion", "FailedOperation",
    "InvalidAction", "NoSuchVersion", "ActionOffline", "NoSuchProduct",
    "ClientParamsError", "ClientError",  # raised by the SDK itself before sending
})
# Exceptions to the family rule. Running out of package balance is fixed by topping it up, so the
# outbox keeps retrying; a number on the do-not-disturb list or a country that is blocked stays so.
# A topped-up balance, or a server clock set right again, makes the next attempt work.
_TEMPORARY_CODES = frozenset({"FailedOperation.InsufficientBalanceInSmsPackage", "AuthFailure.SignatureExpire"})
_PERMANENT_CODES = frozenset({
    "LimitExceeded.AppCountryOrRegionInBlacklist",
    "LimitExceeded.PhoneNumberCountLimit",
})


class SmsProvider(Protocol):
    name: str

    def send(self, phone: str, template: str, params: list[str], session_context: str = "") -> str:
        """Sends one templated text; returns the provider's serial number. Raises DeliveryError."""

    def find_sent(self, phone: str, session_context: str, since: datetime) -> str | None:
        """The serial number of a message sent to `phone` with `session_context` since `since`, by the
        provider's records; None when they show none (not sent, or not reported yet)."""


def build_sms_provider(settings: Settings) -> SmsProvider:
    provider = settings.sms.provider
    if provider == "console":
        return ConsoleSms(log_path=settings.data_dir / CONSOLE_LOG_FILE)
    if provider == "tencent":
        return TencentSms(settings.sms)
    raise ValueError(f"unknown sms.provider {provider!r} (expected console or tencent)")


def is_permanent(code: str) -> bool:
    """Whether a Tencent Cloud error code means that sending again cannot succeed."""
    if code in _TEMPORARY_CODES:
        return False
    if code in _PERMANENT_CODES:
        return True
    # Everything not known to be permanent (throttling, InternalError, network errors, an answer
    # we could not parse) is retried; the outbox bounds the attempts.
    return code.split(".", 1)[0] in _PERMANENT_FAMILIES


def _e164(phone: str) -> str:
    number = parse_mobile(phone)
    if number is None:
        raise DeliveryError(f"not a mainland mobile number: {mask_personal_data(phone)}", permanent=True)
    return number


def _check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise DeliveryError(f"unknown SMS template {template!r}", permanent=True)


class ConsoleSms:
    """Writes each message to the log (phone, name, ID and phone numbers masked) and, with `log_path`,
    as a JSON line to that file (readable by its owner only)."""

    name = "console"

    def __init__(self, log_path: Path | None = None):
        self.log_path = log_path
        self._lock = threading.Lock()

    def send(self, phone: str, template: str, params: list[str], session_context: str = "") -> str:
        _check_template(template)
        masked = mask_phone(_e164(phone))
        shown = _masked_params(template, params)
        serial = console_serial()
        log.info("SMS %s to %s: %s (%s)", template, masked, json.dumps(shown, ensure_ascii=False), serial)
        if self.log_path is not None:
            self._append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "serial": serial,
                          "phone": masked, "template": template, "params": shown, "context": session_context})
        return serial

    def find_sent(self, phone: str, session_context: str, since: datetime) -> str | None:
        """From its own log file (without one, nothing is known and the message goes again)."""
        if self.log_path is None or not session_context:
            return None
        masked, begin = mask_phone(_e164(phone)), since - IN_DOUBT_MARGIN
        with self._lock:
            lines = self.log_path.read_text(encoding="utf-8").splitlines() if self.log_path.exists() else []
        for line in reversed(lines):
            record = json.loads(line)
            if (record.get("context") == session_context and record["phone"] == masked
                    and datetime.fromisoformat(record["at"]) >= begin):
                return record["serial"]
        return None

    def _append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with private_file(self.log_path, "a") as file:
                file.write(line)


def console_serial() -> str:
    """A serial for a console-sent SMS that the log's masking leaves whole: a random hex string now and
    then holds eleven digits in a row, which would be masked like a phone number in the very line that
    names the serial."""
    while True:
        serial = f"console-{uuid.uuid4().hex}"
        if mask_personal_data(serial) == serial:
            return serial


def _masked_params(template: str, params: list[str]) -> list[str]:
    shown = [mask_personal_data(str(param)) for param in params]
    name_at = NAME_PARAMS.get(template)
    if name_at is not None and name_at < len(shown):
        shown[name_at] = mask_name(str(params[name_at]))
    return shown


class TencentSms:
    """Tencent Cloud SMS (SendSms, 2021-01-11). One SDK client per thread: the SDK keeps a
    requests.Session, which is not meant to be shared between threads."""

    name = "tencent"

    def __init__(self, settings: SmsSettings):
        self.settings = settings
        self._local = threading.local()
        # At DEBUG the SDK logs whole requests and responses, numbers and signatures included.
        logging.getLogger(SDK_LOGGER).setLevel(max(logging.INFO, logging.getLogger(SDK_LOGGER).level))

    def send(self, phone: str, template: str, params: list[str], session_context: str = "") -> str:
        _check_template(template)
        template_id = getattr(self.settings, f"template_{template}")
        if not template_id:
            raise DeliveryError(f"no Tencent Cloud template id configured for {template!r} "
                                f"(sms.template_{template})", permanent=True)
        number = _e164(phone)
        request = models.SendSmsRequest()
        request.PhoneNumberSet = [number]
        request.SmsSdkAppId = self.settings.sdk_app_id
        request.SignName = self.settings.sign_name
        request.TemplateId = template_id
        request.TemplateParamSet = [str(param) for param in params]
        request.SessionContext = session_context
        try:
            response = self._client().SendSms(request)
        except TencentCloudSDKException as exc:
            detail = mask_personal_data(f"{exc.code}: {exc.message} (RequestId {exc.requestId})")
            raise DeliveryError(f"Tencent Cloud SMS: {detail}", permanent=is_permanent(exc.code or "")) from exc
        return _serial_of(response, number)

    def find_sent(self, phone: str, session_context: str, since: datetime) -> str | None:
        """From the delivery reports (PullSmsSendStatusByPhoneNumber). A report arrives once the carrier
        confirms, usually within seconds; a message sent but not yet reported is not found."""
        request = models.PullSmsSendStatusByPhoneNumberRequest()
        request.BeginTime = int((since - IN_DOUBT_MARGIN).timestamp())
        request.EndTime = int(datetime.now(timezone.utc).timestamp()) + 1
        request.Offset = 0  # Tencent: always 0
        request.Limit = PULL_LIMIT
        request.PhoneNumber = _e164(phone)
        request.SmsSdkAppId = self.settings.sdk_app_id
        try:
            response = self._client().PullSmsSendStatusByPhoneNumber(request)
        except TencentCloudSDKException as exc:
            detail = mask_personal_data(f"{exc.code}: {exc.message} (RequestId {exc.requestId})")
            raise DeliveryError(f"Tencent Cloud SMS delivery reports: {detail}") from exc
        for report in response.PullSmsSendStatusSet or []:
            if report.SessionContext == session_context and report.ReportStatus == "SUCCESS":
                return report.SerialNo
        return None

    def _client(self) -> SmsClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def _new_client(self) -> SmsClient:
        s = self.settings
        # HttpProfile's `protocol` argument becomes its `scheme`, which decides http:// vs https://.
        # The timeout goes to requests as is, so fractions of a second work (int() would turn 0.5 into 0).
        http = HttpProfile(protocol=s.scheme, endpoint=s.endpoint, reqTimeout=s.http_timeout_seconds)
        return SmsClient(Credential(s.secret_id, s.secret_key), s.region, ClientProfile(httpProfile=http))


def _serial_of(response: models.SendSmsResponse, number: str) -> str:
    statuses = response.SendStatusSet or []
    if not statuses:
        raise DeliveryError(f"Tencent Cloud SMS answered without a send status (RequestId {response.RequestId})")
    status = statuses[0]
    code = status.Code or ""
    if code != "Ok":
        detail = mask_personal_data(f"{code}: {status.Message} (RequestId {response.RequestId})")
        raise DeliveryError(f"Tencent Cloud SMS to {mask_phone(number)}: {detail}", permanent=is_permanent(code))
    return status.SerialNo


class SmsChannel:
    """The outbox's SMS channel: a parcel's template and parameters, through the configured provider."""

    def __init__(self, provider: SmsProvider):
        self.provider = provider

    def deliver(self, parcel) -> str:
        send_once(self.provider, parcel, parcel.payload["template"], list(parcel.payload["params"]))
        return self.provider.name


def send_once(provider: SmsProvider, parcel, template: str, params: list[str]) -> None:
    """Sends the parcel's text unless its attempt is in doubt and the provider shows it went out.
    If the provider cannot be asked, the text goes again: twice is better than never."""
    context = parcel.provider_key
    if parcel.in_doubt_since is not None:
        try:
            serial = provider.find_sent(parcel.phone, context, parcel.in_doubt_since)
        except DeliveryError as exc:
            log.warning("notification %s: could not ask %s whether it was sent (%s); sending it again",
                        parcel.id, provider.name, exc)
            serial = None
        if serial is not None:
            log.info("notification %s: %s already sent it (%s) before its worker died; not sent again",
                     parcel.id, provider.name, serial)
            return
    provider.send(parcel.phone, template, params, session_context=context)
