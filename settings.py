"""The one typed configuration object, read once from a TOML file.

The file is found through the COLLECTOR_CONFIG environment variable (a path), else `config.toml` in
the working directory; with neither, the defaults below apply (the embedded demo set-up). Nothing else
in the project reads environment variables.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rules.photo import PhotoThresholds


class ConfigError(ValueError):
    """The configuration file says something we cannot use."""


@dataclass(frozen=True)
class WeChatSettings:
    token: str = "photo-collector-token"
    appid: str = "wx0000000000000000"
    secret: str = "demo-secret"
    # 43 characters, as the official account's console generates it.
    encoding_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    api_base_url: str = "https://api.weixin.qq.com/cgi-bin/"
    max_clock_skew_seconds: int = 300
    max_body_bytes: int = 1024 * 1024
    reply_budget_seconds: float = 4.0
    # A message being worked on is claimed by its process for this long, renewed every third of it;
    # a claim whose process died runs out and WeChat's next retry runs the message.
    claim_lease_seconds: float = 3.0
    # WeChat drops the connection this long after sending a message (its documented 5 s); a reply
    # ready later goes out as a customer-service message. Only tests change it.
    answer_within_seconds: float = 5.0
    http_timeout_seconds: float = 3.0
    # WeChat web-page authorisation (OAuth 2, snsapi_base) for the payment page: where the phone is
    # sent to authorise, and the API that turns the code into an openid.
    oauth_base_url: str = "https://open.weixin.qq.com/connect/"
    sns_api_base_url: str = "https://api.weixin.qq.com/"
    # Message security mode: "safe" (only AES-encrypted requests), "compatible" (plain ones too) or
    # "plain". Empty: safe when encoding_aes_key is set, else plain. A plain request's signature does
    # not cover its body, so compatible and plain mode trust whoever holds a captured query string.
    mode: str = ""

    @property
    def message_mode(self) -> str:
        return self.mode or ("safe" if self.encoding_aes_key else "plain")


@dataclass(frozen=True)
class WindowSettings:
    start: datetime = datetime(2026, 1, 1, 0, 0)
    end: datetime = datetime(2027, 12, 31, 23, 59, 59)
    timezone: str = "Asia/Shanghai"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def aware_start(self) -> datetime:
        return self.start.replace(tzinfo=self.tz)

    def aware_end(self) -> datetime:
        return self.end.replace(tzinfo=self.tz)


@dataclass(frozen=True)
class OfficeSettings:
    name: str = "北京市高等教育自学考试"
    phone: str = "010-58691620"
    hours: str = "9:30-17:00，周一休息"


@dataclass(frozen=True)
class Level:
    number: str
    name: str


@dataclass(frozen=True)
class CollectionSettings:
    institution: str = "北京市高等教育自学考试"
    levels: tuple[Level, ...] = (Level("1", "专科"), Level("2", "本科"))
    fee_fen: int = 3000
    review_hours: int = 48
    max_failed_matches_per_hour: int = 5
    # Roster look-ups by all accounts together (0: no limit); stops enumeration by many accounts.
    max_roster_lookups_per_minute: int = 600
    max_roster_lookups_per_hour: int = 12000


@dataclass(frozen=True)
class ReviewSettings:
    claim_minutes: int = 15
    undo_seconds: int = 30
    second_review_share: float = 0.05


@dataclass(frozen=True)
class PaymentSettings:
    gateway: str = "sandbox"  # sandbox | wechatpay
    # The address candidates' phones reach this server on; links in the chat start with it.
    public_base_url: str = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class WeChatPaySettings:
    """WeChat Pay API v3, JSAPI, in WeChat-Pay-public-key mode (no platform certificate download)."""
    mchid: str = ""
    appid: str = ""  # empty: the official account's appid ([wechat] appid)
    merchant_serial_no: str = ""
    private_key_path: str = ""  # the merchant's API private key (apiclient_key.pem)
    apiv3_key: str = ""
    public_key_path: str = ""  # the WeChat Pay public key (pub_key.pem)
    public_key_id: str = ""  # PUB_KEY_ID_…, also the Wechatpay-Serial of everything WeChat Pay signs
    api_base_url: str = "https://api.mch.weixin.qq.com"
    order_expire_minutes: int = 30
    # Orders with no notification this long after they were opened are queried.
    query_after_minutes: int = 5
    max_clock_skew_seconds: int = 300
    http_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class SmsSettings:
    """Text messages. "console" writes them to the log (the embedded default); "tencent" sends
    them through Tencent Cloud SMS, whose messages are templates approved in its console."""
    provider: str = "console"  # console | tencent
    secret_id: str = ""
    secret_key: str = ""
    sdk_app_id: str = ""
    sign_name: str = ""
    region: str = "ap-guangzhou"
    endpoint: str = "sms.tencentcloudapi.com"
    scheme: str = "https"
    http_timeout_seconds: float = 5.0
    template_payment_done: str = ""
    template_approved: str = ""
    template_rejected: str = ""
    template_review_delay: str = ""
    # The support desk's "please open the account or call {1}" text, when WeChat refuses its replies.
    template_support_reply: str = ""
    # Reminder campaigns (staff/reminders.py): two parameters, the graduate's name and the window's end.
    template_reminder: str = ""
    # A verification code to the phone number a candidate types, so that verdict SMS go to a number they
    # hold (handlers/phone_code.py); one parameter, the code. Off by default.
    verify_phone: bool = False
    template_phone_code: str = ""
    code_valid_minutes: int = 10
    codes_per_hour: int = 3  # sends (the first and the resends) per account
    code_tries: int = 5  # wrong codes before a new one must be sent


# What a WeChat template message can show (notify/notices.py fills them in).
TEMPLATE_VALUES = ("title", "name", "status", "reason", "amount", "time", "next")
CLASSIC_TEMPLATE = {"first": "title", "keyword1": "name", "keyword2": "status", "keyword3": "time",
                    "remark": "next"}


def _classic(keyword2: str = "status"):
    return lambda: {**CLASSIC_TEMPLATE, "keyword2": keyword2}


@dataclass(frozen=True)
class NotificationSettings:
    """The outbox: how notifications are retried, and the WeChat template messages used once the
    candidate's 48-hour customer-service window has closed."""
    max_attempts: int = 8
    retry_base_seconds: int = 30
    retry_max_seconds: int = 3600
    # A delivery that has not finished this long after it was claimed is taken over by the sweep.
    lease_seconds: int = 120
    customer_service_window_hours: int = 48
    # Reviews this close to the promised review time are logged as a warning for staff.
    review_warning_hours: int = 6
    wechat_template_payment_done: str = ""
    wechat_template_approved: str = ""
    wechat_template_rejected: str = ""
    wechat_template_review_delay: str = ""
    # The support desk: an agent's reply WeChat refused as a customer-service message (45015/45047).
    wechat_template_support_reply: str = ""
    # Which template field shows what: {template field = one of TEMPLATE_VALUES}. The default fits
    # the classic layout; a category template (thing1, time2…) names its own fields.
    wechat_template_payment_done_fields: dict[str, str] = field(default_factory=_classic("amount"))
    wechat_template_approved_fields: dict[str, str] = field(default_factory=_classic())
    wechat_template_rejected_fields: dict[str, str] = field(default_factory=_classic("reason"))
    wechat_template_review_delay_fields: dict[str, str] = field(default_factory=_classic())
    wechat_template_support_reply_fields: dict[str, str] = field(default_factory=_classic("reason"))

    def template_fields(self, kind: str) -> dict[str, str]:
        return getattr(self, f"wechat_template_{kind}_fields", CLASSIC_TEMPLATE)


@dataclass(frozen=True)
class JobsSettings:
    """Background work on huey: SqliteHuey in <data_dir>/<huey_file>, or RedisHuey when redis_url is set."""
    immediate: bool = False  # run tasks at once, in the caller (tests)
    workers: int = 2
    huey_file: str = "huey.db"
    queue_name: str = "photo-collector"
    sweep_every_minutes: int = 1
    # A slow photo check still unapplied this long after its message (its process died) is redone.
    lost_work_after_minutes: int = 5
    orders_every_minutes: int = 5
    reviews_every_minutes: int = 30


@dataclass(frozen=True)
class ConsoleSettings:
    """The staff console under /staff/ (console/)."""
    # Session cookies carry the Secure flag: the console must be served over HTTPS. Only the demo on
    # plain http://127.0.0.1 turns it off.
    secure_cookies: bool = True
    # A session unused this long is signed out.
    idle_minutes: float = 30
    # This many failed sign-ins in a row lock the account for lockout_minutes.
    lockout_failures: int = 5
    lockout_minutes: int = 15
    # Flask-Limiter limits on failed sign-ins, per account name and per client address.
    account_failure_limit: str = "10 per 15 minutes"
    address_failure_limit: str = "30 per 15 minutes"
    # Keys of the rate-limit counters in Redis (when redis_url is set).
    rate_limit_prefix: str = "photo-collector-console"


@dataclass(frozen=True)
class SupportSettings:
    """The support desk (staff/support.py, /staff/support)."""
    # "desk": agents take conversations over in the console. "wechat_kf": 人工 hands the conversation to
    # WeChat's own customer-service system (a transfer_customer_service passive reply).
    mode: str = "desk"
    # A taken-over conversation nobody touched this long goes back to the bot (the `support` job).
    idle_minutes: int = 30
    # Customer-service messages WeChat accepts per candidate message (45047 after that).
    replies_per_window: int = 5
    # Suggested as stuck: no progress at one step for this long, or this many photo refusals in a row.
    stuck_hours: int = 24
    stuck_photo_failures: int = 3
    # How often the agent's page asks for new messages.
    poll_seconds: float = 1.0


# What a reminder's WeChat template message can show (staff/reminders.py fills them in).
REMINDER_TEMPLATE_VALUES = ("title", "name", "text", "deadline", "next")


@dataclass(frozen=True)
class RemindersSettings:
    """Reminder campaigns (staff/reminders.py, `flask remind`, /staff/reminders)."""
    # Nothing is sent from quiet_start to quiet_end (local time, [window] timezone); campaigns wait.
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    # Messages per second, for all workers together (a token bucket in Redis, else in the database).
    wechat_per_second: float = 20.0
    sms_per_second: float = 10.0
    # The worker driving a campaign holds it this long, renewing as it goes; a dead one's is taken over.
    lease_seconds: float = 30.0
    # The "stuck" segment's default: no progress at one step for this many hours.
    stuck_hours: int = 24
    # The WeChat template message used when the customer-service window is closed; empty: none.
    template_id: str = ""
    template_fields: dict[str, str] = field(default_factory=lambda: {
        "first": "title", "keyword1": "name", "keyword2": "text", "keyword3": "deadline", "remark": "next"})
    # Keys of the shared token buckets in Redis.
    throttle_prefix: str = "photo-collector-throttle"


@dataclass(frozen=True)
class HandoverSettings:
    """Hand-over of approved photos to the exam office (staff/handover.py)."""
    # What names each photo in the zip: "exam_number" (准考证号) or "id_number" (身份证号).
    file_key: str = "exam_number"
    # Also put a copy normalised to the office's 480×640 JPEG in a second folder of the zip.
    normalised_copy: bool = False


@dataclass(frozen=True)
class PrivacySettings:
    """Keys for personal data at rest (store/crypto.py). Never stored in the database: here, in key_file
    (a TOML file with the same three settings) or in the file named by COLLECTOR_KEY_FILE."""
    # Key id = base64 of 32 random bytes (AES-256). Old ids stay here, readable, until `flask keys rotate` is done.
    keys: dict[str, str] = field(default_factory=dict)
    # The id new data is encrypted with.
    active_key: str = ""
    # The HMAC-SHA256 key of lookup columns (base64); it does not rotate with active_key.
    lookup_key: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class RetentionSettings:
    """How long personal data lives after the graduate's photo was handed over (or, for those never
    handed over, after the collection window closed). 0 keeps that kind forever."""
    photos_days: int = 90
    transcripts_days: int = 90
    payments_days: int = 365
    every_minutes: int = 60


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 16
    # Photo checks running at once in one process (each decodes and measures one photo).
    photo_checks_at_once: int = 2
    # A dependency that is down (Redis, the job queue) is logged once per this many seconds.
    outage_log_every_seconds: float = 60.0
    # `flask serve`: "waitress" (one process, `threads` threads: the demo) or "gunicorn" (`workers`
    # processes: production; `flask serve --prod` picks it whatever this says).
    engine: str = "waitress"
    # gunicorn: worker processes (0: the CPU count), worker class ("sync" measured fastest for
    # this workload; "gthread" with `threads` threads each), seconds a worker may spend on one request
    # before it is replaced (far above WeChat's 5 s: a photo step waits up to the reply budget).
    workers: int = 0
    worker_class: str = "sync"
    timeout_seconds: int = 30
    # Reverse proxies in front (nginx: 1) whose X-Forwarded-For/-Proto are trusted, so sign-in limits
    # and the audit log see the client's address, not the proxy's. 0: requests come straight in.
    trusted_proxies: int = 0


@dataclass(frozen=True)
class RedisSettings:
    """Every Redis call gives up after these timeouts; after a failure Redis is left alone for
    retry_after_seconds (the access token comes from the database, deliveries wait for the sweep)."""
    socket_timeout_seconds: float = 0.5
    connect_timeout_seconds: float = 0.5
    retry_after_seconds: float = 5.0


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/collector.db"
    data_dir: Path = Path("var")
    secret_key: str = "change-me"
    log_level: str = "INFO"
    # Empty: background jobs and the shared WeChat access token live in SQLite/the database.
    # "redis://127.0.0.1:6379/0": both live in Redis.
    redis_url: str = ""
    wechat: WeChatSettings = field(default_factory=WeChatSettings)
    window: WindowSettings = field(default_factory=WindowSettings)
    office: OfficeSettings = field(default_factory=OfficeSettings)
    collection: CollectionSettings = field(default_factory=CollectionSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    payment: PaymentSettings = field(default_factory=PaymentSettings)
    wechatpay: WeChatPaySettings = field(default_factory=WeChatPaySettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    handover: HandoverSettings = field(default_factory=HandoverSettings)
    support: SupportSettings = field(default_factory=SupportSettings)
    reminders: RemindersSettings = field(default_factory=RemindersSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    photo: PhotoThresholds = field(default_factory=PhotoThresholds)

    @property
    def photo_dir(self) -> Path:
        return self.data_dir / "photos"

    @property
    def huey_path(self) -> Path:
        return self.data_dir / self.jobs.huey_file

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def find_config_path(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    env_path = os.environ.get("COLLECTOR_CONFIG")
    if env_path:
        return Path(env_path)
    local = Path.cwd() / "config.toml"
    return local if local.exists() else None


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    config_path = find_config_path(path)
    if config_path is None:
        return Settings()
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {config_path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: {exc}") from exc
    return settings_from_mapping(raw, base_dir=config_path.parent)


def settings_from_mapping(raw: dict[str, Any], base_dir: Path | None = None) -> Settings:
    raw = dict(raw)
    sections = {
        "wechat": _build_wechat(raw.pop("wechat", {})),
        "window": _build_window(raw.pop("window", {})),
        "office": _build(OfficeSettings, raw.pop("office", {}), "office"),
        "collection": _build_collection(raw.pop("collection", {})),
        "review": _build_review(raw.pop("review", {})),
        "payment": _build(PaymentSettings, raw.pop("payment", {}), "payment"),
        "wechatpay": _build(WeChatPaySettings, raw.pop("wechatpay", {}), "wechatpay"),
        "sms": _build_sms(raw.pop("sms", {})),
        "notifications": _build_notifications(raw.pop("notifications", {})),
        "jobs": _build(JobsSettings, raw.pop("jobs", {}), "jobs"),
        "server": _build(ServerSettings, raw.pop("server", {}), "server"),
        "redis": _build(RedisSettings, raw.pop("redis", {}), "redis"),
        "handover": _build_handover(raw.pop("handover", {})),
        "console": _build(ConsoleSettings, raw.pop("console", {}), "console"),
        "support": _build_support(raw.pop("support", {})),
        "reminders": _build_reminders(raw.pop("reminders", {})),
        "photo": _build_photo(raw.pop("photo", {})),
        "retention": _build_retention(raw.pop("retention", {})),
    }
    sections["privacy"] = _build_privacy(raw.pop("privacy", {}), base_dir)
    top = _build(Settings, raw, "top level", exclude=set(sections))
    data_dir = Path(top.data_dir)
    database_url = top.database_url
    if base_dir is not None:
        data_dir = _relative_to(base_dir, data_dir)
        database_url = _sqlite_relative_to(database_url, base_dir)
        sections["wechatpay"] = _key_paths_relative_to(sections["wechatpay"], base_dir)
    return dataclasses.replace(top, data_dir=data_dir, database_url=database_url, **sections)


def _build_privacy(values: dict[str, Any], base_dir: Path | None) -> PrivacySettings:
    """The config's keys, then a key file's (COLLECTOR_KEY_FILE, else key_file) on top; each key 32 bytes."""
    privacy = _build(PrivacySettings, values, "privacy")
    key_file = os.environ.get("COLLECTOR_KEY_FILE") or privacy.key_file
    if key_file:
        path = _relative_to(base_dir, Path(key_file)) if base_dir is not None else Path(key_file)
        try:
            extra = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"privacy.key_file {path}: {exc}") from exc
        merged = _build(PrivacySettings, extra, f"key file {path}", exclude={"key_file"})
        privacy = dataclasses.replace(privacy, key_file=str(path), keys={**privacy.keys, **merged.keys},
                                      active_key=merged.active_key or privacy.active_key,
                                      lookup_key=merged.lookup_key or privacy.lookup_key)
    for key_id, value in {**privacy.keys, "lookup_key": privacy.lookup_key}.items():
        if value and len(_base64_or_empty(value)) != 32:
            raise ConfigError(f"privacy key {key_id!r} must be base64 of 32 random bytes")
    if privacy.active_key and privacy.active_key not in privacy.keys:
        raise ConfigError(f"privacy.active_key {privacy.active_key!r} is not among privacy.keys")
    if privacy.keys and not privacy.active_key:
        raise ConfigError("privacy.active_key must name one of privacy.keys")
    return privacy


def _base64_or_empty(value: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _build_retention(values: dict[str, Any]) -> RetentionSettings:
    retention = _build(RetentionSettings, values, "retention")
    if min(retention.photos_days, retention.transcripts_days, retention.payments_days) < 0 or retention.every_minutes < 1:
        raise ConfigError("retention: days must be 0 (keep) or more, every_minutes at least 1")
    return retention


def _relative_to(base_dir: Path, path: Path) -> Path:
    """A relative path in the config file is relative to the file, not to the working directory."""
    return path if path.is_absolute() else base_dir / path


def _key_paths_relative_to(wechatpay: "WeChatPaySettings", base_dir: Path) -> "WeChatPaySettings":
    def resolve(path: str) -> str:
        return str(_relative_to(base_dir, Path(path))) if path else path
    return dataclasses.replace(wechatpay, private_key_path=resolve(wechatpay.private_key_path),
                               public_key_path=resolve(wechatpay.public_key_path))


def _sqlite_relative_to(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return url
    return prefix + str(_relative_to(base_dir, Path(url[len(prefix):])))


def _build(cls, values: dict[str, Any], where: str, exclude: set[str] = frozenset()):
    known = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(sorted(unknown))}")
    return cls(**values)


WECHAT_MODES = ("safe", "compatible", "plain")


def _build_wechat(values: dict[str, Any]) -> WeChatSettings:
    wechat = _build(WeChatSettings, values, "wechat")
    if wechat.mode and wechat.mode not in WECHAT_MODES:
        raise ConfigError(f'wechat.mode must be "safe", "compatible" or "plain", not {wechat.mode!r}')
    if wechat.message_mode != "plain" and len(wechat.encoding_aes_key) != 43:
        raise ConfigError(f"wechat.mode {wechat.message_mode!r} needs a 43-character encoding_aes_key")
    return wechat


HANDOVER_FILE_KEYS = ("exam_number", "id_number")


def _build_handover(values: dict[str, Any]) -> HandoverSettings:
    handover = _build(HandoverSettings, values, "handover")
    if handover.file_key not in HANDOVER_FILE_KEYS:
        raise ConfigError(f'handover.file_key must be "exam_number" or "id_number", not {handover.file_key!r}')
    return handover


def _build_window(values: dict[str, Any]) -> WindowSettings:
    values = dict(values)
    for key in ("start", "end"):
        if key in values:
            values[key] = _as_naive_datetime(values[key], key)
    window = _build(WindowSettings, values, "window")
    try:
        window.tz
    except Exception as exc:  # ZoneInfoNotFoundError and friends
        raise ConfigError(f"unknown time zone in window: {window.timezone}") from exc
    if window.end <= window.start:
        raise ConfigError("window.end must be after window.start")
    return window


def _as_naive_datetime(value: Any, key: str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=None)
    if hasattr(value, "year") and not isinstance(value, time):
        # A bare TOML date: the start of that day, or for `end` its last second.
        day_time = time(23, 59, 59) if key == "end" else time(0, 0)
        return datetime.combine(value, day_time)
    raise ConfigError(f"window.{key} must be a date or a date-time")


def _build_collection(values: dict[str, Any]) -> CollectionSettings:
    values = dict(values)
    if "levels" in values:
        levels = values["levels"]
        if not levels or not all(isinstance(name, str) and name for name in levels):
            raise ConfigError("collection.levels must be a non-empty list of names")
        values["levels"] = tuple(Level(str(i), name) for i, name in enumerate(levels, start=1))
    return _build(CollectionSettings, values, "collection")


def _build_sms(values: dict[str, Any]) -> SmsSettings:
    sms = _build(SmsSettings, values, "sms")
    if sms.verify_phone and sms.provider == "tencent" and not sms.template_phone_code:
        raise ConfigError("sms.verify_phone needs sms.template_phone_code (a template with one parameter, the code)")
    if sms.code_valid_minutes < 1 or sms.codes_per_hour < 1 or sms.code_tries < 1:
        raise ConfigError("sms.code_valid_minutes, codes_per_hour and code_tries must be at least 1")
    return sms


def _build_support(values: dict[str, Any]) -> SupportSettings:
    support = _build(SupportSettings, values, "support")
    if support.mode not in ("desk", "wechat_kf"):
        raise ConfigError('support.mode must be "desk" or "wechat_kf"')
    if support.idle_minutes < 1 or support.replies_per_window < 1 or support.poll_seconds <= 0:
        raise ConfigError("support.idle_minutes and support.replies_per_window must be at least 1")
    return support


def _build_reminders(values: dict[str, Any]) -> RemindersSettings:
    reminders = _build(RemindersSettings, values, "reminders")
    for key in ("quiet_start", "quiet_end"):
        try:
            time.fromisoformat(getattr(reminders, key))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'reminders.{key} must be a time such as "21:00"') from exc
    if reminders.wechat_per_second <= 0 or reminders.sms_per_second <= 0 or reminders.lease_seconds <= 0:
        raise ConfigError("reminders.wechat_per_second, sms_per_second and lease_seconds must be above 0")
    unknown = set(reminders.template_fields.values()) - set(REMINDER_TEMPLATE_VALUES)
    if not reminders.template_fields or unknown:
        raise ConfigError(f"reminders.template_fields: values must be among {', '.join(REMINDER_TEMPLATE_VALUES)}")
    return reminders


def _build_review(values: dict[str, Any]) -> ReviewSettings:
    review = _build(ReviewSettings, values, "review")
    if not 0 <= review.second_review_share <= 1:
        raise ConfigError("review.second_review_share must be between 0 and 1")
    if review.claim_minutes < 1 or review.undo_seconds < 0:
        raise ConfigError("review.claim_minutes must be at least 1 and review.undo_seconds not negative")
    return review


def _build_notifications(values: dict[str, Any]) -> NotificationSettings:
    notifications = _build(NotificationSettings, values, "notifications")
    for item in dataclasses.fields(NotificationSettings):
        if not item.name.endswith("_fields"):
            continue
        mapping = getattr(notifications, item.name)
        if not isinstance(mapping, dict) or not mapping:
            raise ConfigError(f"notifications.{item.name} must be a table of template field = value")
        unknown = {value for value in mapping.values() if value not in TEMPLATE_VALUES}
        if unknown:
            raise ConfigError(f"notifications.{item.name}: unknown value(s) {', '.join(sorted(map(str, unknown)))}; "
                              f"choose from {', '.join(TEMPLATE_VALUES)}")
    return notifications


def _build_photo(values: dict[str, Any]) -> PhotoThresholds:
    try:
        return PhotoThresholds.from_mapping(values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"photo: {exc}") from exc
