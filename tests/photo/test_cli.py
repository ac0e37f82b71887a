"""`flask photo check` and `flask photo explain`, with and without an app context."""
from __future__ import annotations

import json

from click.testing import CliRunner
from flask import Flask
from PIL import Image

from rules.photo import PhotoThresholds
from staff.photo import photo_group


def test_check_json_lines(photos):
    files = [str(photos / "webmorph_021_03_blue_ok.jpg"), str(photos / "webmorph_021_03_bg_red.jpg")]
    result = CliRunner().invoke(photo_group, ["check", "--json", *files])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["verdict"] for line in lines] == ["pass", "fail"]
    assert lines[1]["failures"][0]["rule"] == "background.color"
    assert lines[1]["failures"][0].keys() == {"rule", "message", "value", "threshold", "margin"}
    assert lines[1]["failures"][0]["margin"] > 1  # how many noise widths past its limit
    assert all(line.keys() == {"file", "verdict", "failures", "hints", "ms"} for line in lines)


def test_check_readable_summary(photos):
    result = CliRunner().invoke(photo_group, ["check", str(photos / "london129_teeth.jpg")])
    assert result.exit_code == 0
    assert "未通过" in result.output and "[face.mouth]" in result.output and "露出了牙齿" in result.output


def test_check_reads_thresholds_from_the_app(photos):
    app = Flask(__name__)
    app.config["PHOTO_THRESHOLDS"] = PhotoThresholds(min_file_bytes=10 * 1024 * 1024)
    with app.app_context():
        result = CliRunner().invoke(photo_group, ["check", "--json", str(photos / "webmorph_021_03_blue_ok.jpg")])
    line = json.loads(result.output)
    assert line["verdict"] == "fail" and line["failures"][0]["rule"] == "file.size"


def test_explain_writes_an_annotated_png(photos, tmp_path):
    out = tmp_path / "why.png"
    result = CliRunner().invoke(photo_group, ["explain", str(photos / "webmorph_172_03_bg_shadow.jpg"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 480 and im.height >= 640
    assert "background.uniform" in result.output


def test_explain_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    result = CliRunner().invoke(photo_group, ["explain", str(bad), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 0
    assert (tmp_path / "o.png").exists()
