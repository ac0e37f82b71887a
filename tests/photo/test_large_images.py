"""A photo costs a bounded amount of memory whatever its header claims (issue 8.9).

Pillow's pixel buffers live in C, out of tracemalloc's sight, so memory is measured as the growth of
the peak resident set (ru_maxrss) of a fresh process across one check, the models already loaded."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rules.photo import PhotoThresholds, check

from .large_images import solid_png

ROOT = Path(__file__).resolve().parents[2]
MEMORY_BOUND_MB = 150

MEASURE = textwrap.dedent("""
    import json, resource, sys
    import rules.photo
    from tests.photo.large_images import solid_png

    width, height = int(sys.argv[1]), int(sys.argv[2])
    rules.photo.warm_up()
    data = solid_png(width, height)
    rules.photo.check(solid_png(640, 853))  # first-call allocations out of the measurement
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = rules.photo.check(data)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (after - before) / 1024, "file_kb": len(data) / 1024,
                      "rules": [f.rule for f in report.failures],
                      "messages": [f.message for f in report.failures]}))
""")


def measure(width: int, height: int) -> dict:
    run = subprocess.run([sys.executable, "-c", MEASURE, str(width), str(height)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_small_png_claiming_7990_by_7990_pixels_is_refused_by_name_without_decoding_it():
    result = measure(7990, 7990)
    assert result["file_kb"] < 300  # the attack: a few hundred KB that claims 64 million pixels
    assert "image.resolution" in result["rules"] and "file.format" in result["rules"]
    message = result["messages"][result["rules"].index("image.resolution")]
    assert "7990×7990" in message and "16 百万像素" in message and "JPG" in message
    assert result["growth_mb"] < MEMORY_BOUND_MB, result


def test_a_png_within_the_decode_budget_is_checked_reduced_within_the_memory_bound():
    result = measure(3000, 4000)
    assert "image.resolution" not in result["rules"]
    assert "file.format" in result["rules"]  # still a PNG, not a JPG
    assert "face.count" in result["rules"]  # the content rules ran on the reduced copy
    assert result["growth_mb"] < MEMORY_BOUND_MB, result


@pytest.mark.parametrize("budget, refused", [(11_999_999, True), (12_000_000, False)])
def test_the_decode_budget_comes_from_the_photo_thresholds(budget, refused):
    report = check(solid_png(3000, 4000), PhotoThresholds(max_decode_pixels=budget))
    assert ("image.resolution" in [f.rule for f in report.failures]) is refused
