"""The configuration file: defaults, relative paths, and clear errors."""
from __future__ import annotations

from datetime import datetime

import pytest

from settings import ConfigError, Settings, load_settings


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_config_loads_and_matches_the_notice(tmp_path):
    from pathlib import Path
    settings = load_settings(Path(__file__).resolve().parents[1] / "config.example.toml")
    assert settings.office.phone == "010-58691620"
    assert settings.collection.fee_fen == 3000
    assert [level.name for level in settings.collection.levels] == ["专科", "本科"]


def test_the_example_config_shows_the_defaults_of_notifications_and_jobs():
    from pathlib import Path
    settings = load_settings(Path(__file__).resolve().parents[1] / "config.example.toml")
    defaults = Settings()
    assert (settings.notifications, settings.jobs, settings.redis_url) == (
        defaults.notifications, defaults.jobs, defaults.redis_url)


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    settings = load_settings(write(tmp_path, 'database_url = "sqlite:///var/c.db"\ndata_dir = "var"\n'))
    assert settings.database_url == f"sqlite:///{tmp_path}/var/c.db"
    assert settings.data_dir == tmp_path / "var"


def test_wechat_pay_key_files_are_relative_to_the_config_file_too(tmp_path):
    settings = load_settings(write(tmp_path, '[wechatpay]\nprivate_key_path = "keys/apiclient_key.pem"\n'
                                             'public_key_path = "/etc/collector/pub_key.pem"\n'))
    assert settings.wechatpay.private_key_path == str(tmp_path / "keys" / "apiclient_key.pem")
    assert settings.wechatpay.public_key_path == "/etc/collector/pub_key.pem"


def test_bare_dates_cover_whole_days(tmp_path):
    settings = load_settings(write(tmp_path, "[window]\nstart = 2024-06-13\nend = 2024-06-15\n"))
    assert settings.window.start == datetime(2024, 6, 13, 0, 0)
    assert settings.window.end == datetime(2024, 6, 15, 23, 59, 59)


@pytest.mark.parametrize("text,message", [
    ("colour = 1\n", r"unknown setting\(s\) in top level: colour"),
    ("[wechat]\ntokn = 'x'\n", r"unknown setting\(s\) in wechat: tokn"),
    ("[window]\nstart = 2024-06-15\nend = 2024-06-13\n", "window.end must be after window.start"),
    ("[window]\ntimezone = 'Mars/Olympus'\n", "unknown time zone"),
    ("[collection]\nlevels = []\n", "collection.levels"),
    ("this is = = not toml", "config.toml"),
])
def test_mistakes_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_config_is_found_through_the_environment(tmp_path, monkeypatch):
    path = write(tmp_path, "[office]\nphone = '010-12345678'\n")
    monkeypatch.setenv("COLLECTOR_CONFIG", str(path))
    assert load_settings().office.phone == "010-12345678"
