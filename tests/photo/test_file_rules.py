"""File and image rules on crafted inputs: every odd file gets a clear Chinese answer, never a crash."""
from __future__ import annotations

import io
import re
import random

import numpy as np
import pytest
from PIL import Image

from rules.photo import PhotoThresholds, check
from rules.photo.report import RULE_ORDER

from .conftest import jpeg, png, rules_of

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def assert_clear_answer(report, rule: str) -> None:
    assert report.verdict == "fail"
    assert report.failures[0].rule == rule, rules_of(report)
    assert CHINESE.search(report.failures[0].message)
    assert "{" not in report.failures[0].message


def test_compliant_jpeg_passes(compliant):
    report = check(jpeg(compliant))
    assert report.verdict == "pass", rules_of(report)
    assert report.metrics["file.format"] == "JPEG"


def test_zero_bytes():
    report = check(b"")
    assert_clear_answer(report, "file.format")
    assert "空" in report.failures[0].message
    assert not any(r.startswith(("face.", "head.", "background.", "quality.")) for r in rules_of(report))


def test_text_renamed_jpg():
    report = check("这不是照片 not a photo\n".encode() * 200)
    assert_clear_answer(report, "file.format")
    assert report.metrics["file.format"] == "UNKNOWN"


def test_truncated_jpeg(compliant):
    data = jpeg(compliant)
    report = check(data[: len(data) // 2])
    assert_clear_answer(report, "file.format")
    assert "损坏" in report.failures[0].message
    assert set(rules_of(report)) <= {"file.format", "file.size"}


def test_png_renamed_jpg_is_judged_by_content(compliant):
    report = check(png(compliant))
    assert_clear_answer(report, "file.format")
    assert report.failures[0].value == "PNG"
    # Still decoded, so the content is judged too (a compliant picture: nothing else fires).
    assert rules_of(report) == ["file.format"]


def test_heic_is_named():
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40_000)
    report = check(data)
    assert_clear_answer(report, "file.format")
    assert "HEIC" in report.failures[0].message


def test_animated_gif(compliant):
    frames = [compliant.convert("P"), compliant.rotate(3).convert("P")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    report = check(buffer.getvalue())
    assert_clear_answer(report, "file.format")
    assert report.failures[0].key == "file.format.animated"


def test_decompression_bomb_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buffer, "PNG")
    report = check(buffer.getvalue())
    assert "image.resolution" in rules_of(report)
    resolution = next(f for f in report.failures if f.rule == "image.resolution")
    assert resolution.value == "20000×20000"
    assert CHINESE.search(resolution.message)
    assert not any(r.startswith(("face.", "background.")) for r in rules_of(report))


def test_jpeg_bomb_header_is_refused(compliant):
    """A JPEG whose header claims more pixels than the cap is refused without decoding."""
    report = check(jpeg(compliant), PhotoThresholds(max_pixels=100_000))
    assert rules_of(report)[0] == "image.resolution"
    assert report.failures[0].key == "image.resolution.too_large"


def test_grayscale_jpeg(compliant):
    report = check(jpeg(compliant.convert("L")))
    assert_clear_answer(report, "image.color")
    assert report.failures[0].value == "L"
    # Colour rules have nothing to judge in a black-and-white picture.
    assert "background.color" not in rules_of(report)
    assert "quality.color" not in rules_of(report)


def test_black_and_white_saved_as_rgb(compliant):
    report = check(jpeg(compliant.convert("L").convert("RGB")))
    assert_clear_answer(report, "image.color")
    assert report.metrics["image.mean_chroma"] < PhotoThresholds().min_mean_chroma


def test_cmyk_jpeg(compliant):
    report = check(jpeg(compliant.convert("CMYK")))
    assert_clear_answer(report, "image.color")
    assert "CMYK" in report.failures[0].message


def test_palette_png(compliant):
    report = check(png(compliant.convert("P")))
    assert rules_of(report)[:2] == ["file.format", "image.color"]


def test_16_bit_png(compliant):
    grey16 = (np.asarray(compliant.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(grey16).save(buffer, "PNG")
    report = check(buffer.getvalue())
    assert rules_of(report)[:2] == ["file.format", "image.color"]
    assert report.metrics["image.mode"].startswith("I")
    assert report.metrics["face.count"] == 1  # decoded properly, not clipped to white


def test_exif_rotated_phone_photo(compliant):
    """12 MP stored sideways with EXIF orientation 6 (as phones do) is judged upright."""
    upright = compliant.resize((3000, 4000), Image.Resampling.BICUBIC)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    report = check(jpeg(stored, quality=92, exif=exif.tobytes()))
    assert report.verdict == "pass", rules_of(report)
    assert (report.metrics["image.width"], report.metrics["image.height"]) == (3000, 4000)


def test_progressive_12mp_jpeg(compliant):
    big = compliant.resize((3000, 4000), Image.Resampling.BICUBIC)
    report = check(jpeg(big, quality=92, progressive=True))
    assert report.verdict == "pass", rules_of(report)


def test_too_small_file(compliant):
    report = check(jpeg(compliant, quality=5))
    assert "file.size" in rules_of(report)
    finding = next(f for f in report.failures if f.rule == "file.size")
    assert finding.threshold == 30 * 1024 and finding.value < finding.threshold
    assert "KB" in finding.message


def test_too_large_file(compliant):
    report = check(jpeg(compliant), PhotoThresholds(max_file_bytes=10_000, min_file_bytes=100))
    assert rules_of(report)[0] == "file.size"
    assert report.failures[0].key == "file.size.too_large"


def test_low_resolution(compliant):
    report = check(jpeg(compliant.resize((360, 480)), quality=98))
    assert "image.resolution" in rules_of(report)
    finding = next(f for f in report.failures if f.rule == "image.resolution")
    assert finding.value == "360×480" and finding.threshold == "480×640"


@pytest.mark.parametrize("size, landscape", [((640, 640), False), ((640, 480), True)])
def test_aspect(compliant, size, landscape):
    canvas = Image.new("RGB", size, (100, 197, 255))
    canvas.paste(compliant.resize((size[1] * 3 // 4, size[1])), ((size[0] - size[1] * 3 // 4) // 2, 0))
    report = check(jpeg(canvas))
    assert "image.aspect" in rules_of(report)
    finding = next(f for f in report.failures if f.rule == "image.aspect")
    assert finding.key == ("image.aspect.landscape" if landscape else "image.aspect")


def test_rule_order_puts_file_problems_first(compliant):
    small = compliant.convert("L").resize((240, 320))
    report = check(png(small))
    order = rules_of(report)
    assert order[0] == "file.format"
    assert {"image.resolution", "image.color"} <= set(order)
    assert order == sorted(order, key=RULE_ORDER.index)


@pytest.mark.parametrize("seed", range(40))
def test_corrupted_bytes_never_crash_and_always_get_chinese_reasons(read, seed):
    """Bit flips, cut-outs and splices of real JPEG and PNG files, as a flaky upload would make them."""
    rng = random.Random(seed)
    data = bytearray(read(rng.choice(["webmorph_004_03_blue_ok.jpg", "webmorph_019_03_png.png"])))
    for _ in range(rng.randint(1, 40)):
        position = rng.randrange(len(data))
        kind = rng.choice(["flip", "cut", "splice"])
        if kind == "flip":
            data[position] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            del data[position:position + rng.randint(1, 2000)]
        else:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    report = check(bytes(data))
    assert report.verdict in ("pass", "fail")
    assert "rule_errors" not in report.metrics
    for failure in report.failures:
        assert re.search(r"[\u4e00-\u9fff]", failure.message), failure
