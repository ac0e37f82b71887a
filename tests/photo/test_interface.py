"""The library's contract: thresholds, report shape, messages, thread safety, the config section."""
from __future__ import annotations

import dataclasses
import json
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import messages
import rules.photo
from rules.photo import Finding, PhotoThresholds, Report, check
from rules.photo.report import RULE_ORDER, finding

from .conftest import jpeg

CONFIG_EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_exports():
    for name in ("check", "warm_up", "Report", "Finding", "PhotoThresholds"):
        assert hasattr(rules.photo, name)


def test_thresholds_are_frozen_with_defaults():
    t = PhotoThresholds()
    assert t.min_file_bytes == 30 * 1024 and (t.min_width, t.min_height) == (480, 640)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.min_width = 1  # type: ignore[misc]


def test_from_mapping_overrides_and_converts():
    t = PhotoThresholds.from_mapping({"min_width": 600, "max_yaw_degrees": 8})
    assert t.min_width == 600 and t.max_yaw_degrees == 8.0 and isinstance(t.max_yaw_degrees, float)
    assert t.min_height == PhotoThresholds().min_height


def test_from_mapping_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown photo threshold.*min_witdh"):
        PhotoThresholds.from_mapping({"min_witdh": 600})


@pytest.mark.parametrize("value", ["600", True, 1.5, None])
def test_from_mapping_rejects_wrong_types(value):
    with pytest.raises(TypeError, match="min_width"):
        PhotoThresholds.from_mapping({"min_width": value})


def test_the_example_config_lists_every_threshold_with_its_default():
    section = tomllib.loads(CONFIG_EXAMPLE.read_text(encoding="utf-8"))["photo"]
    assert section.keys() == {f.name for f in dataclasses.fields(PhotoThresholds)}
    assert PhotoThresholds.from_mapping(section) == PhotoThresholds()


def test_every_rule_and_sub_case_has_a_message():
    keys = set(messages.PHOTO_RULES)
    for rule in RULE_ORDER:
        assert any(k == rule or k.startswith(rule + ".") for k in keys), rule
    for key, text in messages.PHOTO_RULES.items():
        assert any(key == r or key.startswith(r + ".") for r in RULE_ORDER), key
        assert text.endswith("。") and len(text) < 120, key
        text.format(value="1", threshold="2", colour="红色", low="42%", high="70%")  # only known fields


def test_finding_formats_message_with_shown_values():
    f = finding("file.size", 1000, 30720, shown_value="1 KB", shown_threshold="30 KB")
    assert isinstance(f, Finding)
    assert "1 KB" in f.message and "30 KB" in f.message
    assert (f.value, f.threshold) == (1000, 30720)


def test_report_to_dict_is_json(read):
    report = check(read("london129_teeth.jpg"))
    assert isinstance(report, Report)
    data = json.loads(json.dumps(report.to_dict(), ensure_ascii=False))
    assert data["verdict"] == "fail"
    assert data["failures"][0].keys() == {"rule", "message", "value", "threshold", "margin"}
    assert isinstance(data["metrics"]["face.mouth_open"], float)
    assert data["unsure"] == []


def test_beauty_app_in_exif_is_a_hint_not_a_failure(compliant):
    exif = compliant.getexif()
    exif[0x0131] = "Meitu 10.2"
    report = check(jpeg(compliant, exif=exif.tobytes()))
    assert report.verdict == "pass"
    beauty = [h for h in report.hints if h.code == "beauty_app"]
    assert beauty and beauty[0].value == "Meitu 10.2" and "Meitu" in beauty[0].message


def test_thresholds_are_honoured(compliant):
    strict = PhotoThresholds(min_width=800, min_height=1000)
    report = check(jpeg(compliant), strict)
    assert [f.rule for f in report.failures] == ["image.resolution"]
    assert report.failures[0].threshold == "800×1000"


def test_rule_that_raises_is_contained(monkeypatch, compliant):
    from rules.photo import checker

    def broken(photo):
        raise RuntimeError("boom")

    monkeypatch.setattr(checker, "CONTENT_RULES", checker.CONTENT_RULES + (broken,))
    report = check(jpeg(compliant))
    assert report.verdict == "pass"
    assert report.metrics["rule_errors"] == ["broken"]


def test_check_is_thread_safe(read):
    names = ["webmorph_021_03_blue_ok.jpg", "london129_teeth.jpg", "webmorph_140_03_two_people.jpg",
             "webmorph_172_03_bg_gradient.jpg", "real_Drowsiness_closed_eyes.jpg", "no_face.jpg"]
    expected = {name: check(read(name)).to_dict() for name in names}
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda name: (name, check(read(name)).to_dict()), names * 3))
    for name, result in results:
        assert result == expected[name], name


def test_a_rule_that_breaks_is_logged_and_named_for_the_reviewer(read, monkeypatch, caplog):
    from rules.photo import checker

    def broken(photo):
        raise RuntimeError("measurement broke")

    monkeypatch.setattr(checker, "CONTENT_RULES", checker.CONTENT_RULES + (broken,))
    report = check(read("webmorph_004_03_blue_ok.jpg"))
    assert [h.code for h in report.hints if h.code == "rule_error"] == ["rule_error"]
    assert "broken" in next(h.message for h in report.hints if h.code == "rule_error")
    assert any("photo rule broken failed" in r.getMessage() for r in caplog.records)
