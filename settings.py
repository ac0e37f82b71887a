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
    http_timeout_seconds: float = 3.0


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


@dataclass(frozen=True)
class PaymentSettings:
    gateway: str = "sandbox"
    # The address candidates' phones reach this server on; links in the chat start with it.
    public_base_url: str = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 16


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/collector.db"
    data_dir: Path = Path("var")
    secret_key: str = "change-me"
    log_level: str = "INFO"
    wechat: WeChatSettings = field(default_factory=WeChatSettings)
    window: WindowSettings = field(default_factory=WindowSettings)
    office: OfficeSettings = field(default_factory=OfficeSettings)
    collection: CollectionSettings = field(default_factory=CollectionSettings)
    payment: PaymentSettings = field(default_factory=PaymentSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    photo: PhotoThresholds = field(default_factory=PhotoThresholds)

    @property
    def photo_dir(self) -> Path:
        return self.data_dir / "photos"

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
        "wechat": _build(WeChatSettings, raw.pop("wechat", {}), "wechat"),
        "window": _build_window(raw.pop("window", {})),
        "office": _build(OfficeSettings, raw.pop("office", {}), "office"),
        "collection": _build_collection(raw.pop("collection", {})),
        "payment": _build(PaymentSettings, raw.pop("payment", {}), "payment"),
        "server": _build(ServerSettings, raw.pop("server", {}), "server"),
        "photo": _build_photo(raw.pop("photo", {})),
    }
    top = _build(Settings, raw, "top level", exclude=set(sections))
    data_dir = Path(top.data_dir)
    database_url = top.database_url
    if base_dir is not None:
        data_dir = data_dir if data_dir.is_absolute() else base_dir / data_dir
        database_url = _sqlite_relative_to(database_url, base_dir)
    return dataclasses.replace(top, data_dir=data_dir, database_url=database_url, **sections)


def _sqlite_relative_to(url: str, base_dir: Path) -> str:
    """A relative SQLite path is relative to the config file, like data_dir, not to the working directory."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return url
    path = Path(url[len(prefix):])
    return url if path.is_absolute() else prefix + str(base_dir / path)


def _build(cls, values: dict[str, Any], where: str, exclude: set[str] = frozenset()):
    known = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(sorted(unknown))}")
    return cls(**values)


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


def _build_photo(values: dict[str, Any]) -> PhotoThresholds:
    try:
        return PhotoThresholds.from_mapping(values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"photo: {exc}") from exc
