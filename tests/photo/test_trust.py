"""Issue 12, rule by rule on crafted photos: each rule measures what it means, refuses only past its
measured noise (else a hint for the reviewer), and says what it found."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from rules.photo import PhotoThresholds, check
from rules.photo import measure as m
from rules.photo.checker import inspect
from rules.photo.noise import margin_of
from rules.photo.reframe import offer
from rules.photo.report import finding

from .conftest import jpeg, rules_of

DARK_HAIR = (12, 10, 9)


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()


def encoded(rgb: np.ndarray) -> bytes:
    return jpeg(Image.fromarray(rgb))


def test_dark_brows_and_a_beard_are_neither_glasses_nor_a_dark_photo(read):
    """The bearded, dark-browed man of the issue: crushed pixels in brows and beard made 2.3 % of the
    face oval near black (the old limit 2 %); judged on bare skin and below the lids, nothing fires."""
    _, photo = inspect(read("cfdAM205_blue_ok.jpg"))
    mesh, img = photo.mesh, photo.rgb.copy()
    width = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]])
    for i in m.BROWS:
        cv2.circle(img, (int(mesh[i][0]), int(mesh[i][1])), int(0.045 * width), DARK_HAIR, -1)
    jaw = mesh[[58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 291, 0, 61]][:, :2]
    cv2.fillPoly(img, [np.round(jaw).astype(np.int32)], DARK_HAIR)
    oval = m.polygon_mask(img.shape, mesh[list(m.FACE_OVAL)])
    assert (cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[oval] < 20).mean() > 0.02  # what the old rule counted

    report = check(encoded(img))
    assert report.failures == [] and report.unsure == []
    assert report.metrics["quality.dark_fraction"] < 0.005
    assert report.metrics["face.under_eye_lightness"] > 0.7


def test_a_colour_photo_of_a_neutral_scene_is_not_black_and_white(read):
    """Grey wall, grey T-shirt, pale light: little colour on average, but the skin has it."""
    rgb = decoded(read("cfdAM205_gray_ok.jpg"))
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    lab[..., 1:] *= 0.3
    pale = (np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1) * 255).round().astype(np.uint8)
    report = check(encoded(pale))
    assert report.metrics["image.mean_chroma"] < PhotoThresholds().min_mean_chroma  # the old verdict: 黑白
    assert report.metrics["image.skin_chroma"] > PhotoThresholds().min_skin_chroma
    assert "image.color" not in rules_of(report)


def test_a_black_and_white_photo_is_still_named(read):
    report = check(read("cfdAM213_grayscale.jpg"))
    assert "image.color" in rules_of(report)
    assert "黑白" in report.failures[0].message


def test_an_upside_down_photo_is_named_as_such_and_nothing_else(read):
    report = check(encoded(np.ascontiguousarray(np.rot90(decoded(read("cfdAM205_blue_ok.jpg")), 2))))
    assert rules_of(report) == ["image.orientation"]
    assert "倒过来" in report.failures[0].message


def test_a_photo_on_its_side_is_named_and_its_upright_version_offered(read):
    report = check(encoded(np.ascontiguousarray(np.rot90(decoded(read("ppp_008_blue_960x1280_ok.jpg")), 3))))
    assert rules_of(report) == ["image.orientation"]
    assert "横躺" in report.failures[0].message


def test_a_measurement_within_its_noise_of_the_limit_is_a_hint_not_a_refusal(read):
    data = read("cfdAM205_blue_ok.jpg")
    offset = check(data).metrics["head.center_offset"]
    just_past = check(data, PhotoThresholds(max_center_offset=max(offset - 0.002, 0.0001)))
    assert just_past.verdict == "pass"
    assert [f.rule for f in just_past.unsure] == ["head.position"]
    assert any(h.code == "unsure:head.position" and "误差内" in h.message for h in just_past.hints)
    far_past = check(data, PhotoThresholds(max_center_offset=0.0001, min_head_ratio=0.9))
    assert "head.size" in rules_of(far_past)
    assert far_past.failures[0].margin > 1


def test_a_measurement_whose_noise_was_never_measured_refuses_nobody():
    unmeasured = finding("head.size", 0.2, 0.42, measure="head.never_measured", low="42%", high="70%")
    assert unmeasured.margin == 0 and not unmeasured.sure
    assert finding("file.size", 1000, 30720).sure  # exact rules need no noise
    assert margin_of("face.pitch", 30.0, 18.0) > 1


def test_a_wrong_background_is_named_with_the_three_allowed(read):
    for name, colour in (("cfdAM205_bg_red.jpg", "红色"), ("cfdAM205_bg_darkblue.jpg", "深蓝色"),
                         ("cfdAM205_bg_beige.jpg", "米黄色")):
        report = check(read(name))
        text = next(f.message for f in report.failures if f.rule == "background.color")
        assert f"背景是{colour}" in text and "浅蓝色、白色或浅灰色" in text, text


def test_head_size_says_the_measured_height_and_the_allowed_range(read):
    report = check(read("cfdAM205_head_small.jpg"))
    text = next(f.message for f in report.failures if f.rule == "head.size")
    measured = report.metrics["head.height_ratio"]
    assert f"{measured * 100:.0f}%" in text and "42% 到 70%" in text, text


def test_only_framing_is_re_framed_and_never_by_editing_more_than_crop_and_scale(read):
    assert offer(read("cfdAM205_bg_red.jpg"), check(read("cfdAM205_bg_red.jpg")), check) is None
    # a 480×640 head-too-large photo: any crop would need pixels the photo does not have
    data = read("cfdAM205_head_large.jpg")
    assert offer(data, check(data), check) is None
