"""Face, head, background and quality rules: on real photos, and on defects crafted from a compliant one."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from rules.photo import PhotoThresholds, check
from rules.photo import measure as m
from rules.photo.decode import decode
from rules.photo.landmarks import analyse

from .conftest import array, jpeg, rules_of

BLUE = np.array([100, 197, 255], dtype=np.uint8)
T = PhotoThresholds()


def crafted(rgb: np.ndarray, quality: int = 95) -> bytes:
    return jpeg(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), quality=quality)


def background_mask(rgb: np.ndarray) -> np.ndarray:
    """The compliant photo's background is a flat 100,197,255: select it by colour."""
    return np.abs(rgb.astype(int) - BLUE).sum(axis=2) < 40


def mesh_of(rgb: np.ndarray) -> np.ndarray:
    return analyse(rgb, T).landmarks


# --- real photos ------------------------------------------------------------------------------

def test_closed_eyes_real(read):
    report = check(read("real_Drowsiness_closed_eyes.jpg"))
    assert "face.eyes" in rules_of(report)
    assert max(report.metrics["face.ear_left"], report.metrics["face.ear_right"]) < 0.1


def test_open_eyes_real(read):
    report = check(read("webmorph_021_03_blue_ok.jpg"))
    assert min(report.metrics["face.ear_left"], report.metrics["face.ear_right"]) > 0.17


@pytest.mark.parametrize("name", ["london129_teeth.jpg", "london117_teeth.jpg", "real_ppp_h_sample_test_images_011.jpg"])
def test_teeth_real(read, name):
    report = check(read(name))
    assert "face.mouth" in rules_of(report)
    assert report.metrics["face.mouth_open"] > T.max_mouth_open_ratio


def test_closed_mouth_smile_is_fine(read):
    report = check(read("webmorph_127_03_blue_ok.jpg"))
    assert report.metrics["face.mouth_open"] < 0.01
    assert "face.mouth" not in rules_of(report)


def test_sunglasses_real(read):
    report = check(read("real_ai-passpor_images_faiz_with_glasses.png"))
    assert "face.glasses" in rules_of(report)
    assert report.metrics["face.under_eye_lightness"] < T.min_under_eye_lightness


def test_turned_head_real(read):
    report = check(read("real_ppp_rch_my_database_headPose.jpg"))
    finding = next(f for f in report.failures if f.rule == "face.pose")
    assert abs(report.metrics["face.yaw"]) > T.max_yaw_degrees
    assert "转" in finding.message


def test_group_photo_real(read):
    report = check(read("real_dlib_amples_faces_2008_001322.jpg"))
    finding = next(f for f in report.failures if f.rule == "face.count")
    assert finding.value == 3 and "3" in finding.message


# --- crafted from a compliant photo -----------------------------------------------------------

def test_no_face(compliant):
    blank = np.empty_like(array(compliant))
    blank[:] = BLUE
    report = check(crafted(blank))
    finding = next(f for f in report.failures if f.rule == "face.count")
    assert finding.key == "face.count.none" and finding.value == 0
    assert not any(r.startswith(("face.pose", "head.", "quality.")) for r in rules_of(report))


def test_two_people(compliant):
    half = compliant.resize((240, 320))
    canvas = Image.new("RGB", (480, 640), tuple(BLUE))
    canvas.paste(half, (0, 320))
    canvas.paste(half, (240, 320))
    report = check(jpeg(canvas))
    assert rules_of(report)[0] == "face.count"
    assert report.failures[0].key == "face.count.many"


def test_tilted_head(compliant):
    rotated = compliant.rotate(15, resample=Image.Resampling.BICUBIC, fillcolor=tuple(BLUE))
    report = check(jpeg(rotated))
    finding = next(f for f in report.failures if f.rule == "face.pose")
    assert finding.key == "face.pose.roll" and abs(report.metrics["face.roll"]) > 12


def test_blur(compliant):
    report = check(crafted(cv2.GaussianBlur(array(compliant), (0, 0), 2.0)))
    assert "quality.sharpness" in rules_of(report)
    assert report.metrics["quality.sharpness"] < T.min_sharpness


def test_sharp_photo_measures_sharp(compliant):
    report = check(jpeg(compliant))
    assert report.metrics["quality.sharpness"] > 2 * T.min_sharpness


def test_under_exposed(compliant):
    dark = 255.0 * (array(compliant) / 255.0) ** 3.0
    report = check(crafted(dark))
    finding = next(f for f in report.failures if f.rule == "quality.exposure")
    assert finding.key == "quality.exposure.dark"
    assert "face.glasses" not in rules_of(report)  # dark eye sockets are not dark lenses


def test_over_exposed(compliant):
    bright = array(compliant).astype(float) * 2.2
    report = check(crafted(bright))
    finding = next(f for f in report.failures if f.rule == "quality.exposure")
    assert finding.key == "quality.exposure.bright"


def test_colour_cast(compliant):
    rgb = array(compliant)
    bg = background_mask(rgb)
    cast = rgb[..., [1, 0, 2]]  # swap red and green: green skin
    cast[bg] = rgb[bg]  # keep the background right, so only the skin is off
    report = check(crafted(cast))
    assert "quality.color" in rules_of(report)
    assert report.metrics["quality.cheek_a"] < T.min_cheek_a


@pytest.mark.parametrize("colour, key", [((235, 90, 130), "background.color"), ((20, 40, 120), "background.color.dark")])
def test_background_colour(compliant, colour, key):
    rgb = array(compliant)
    rgb[background_mask(rgb)] = colour
    report = check(crafted(rgb))
    finding = next(f for f in report.failures if f.rule == "background.color")
    assert finding.key == key and finding.value > T.max_background_delta_e


@pytest.mark.parametrize("colour", [(255, 255, 255), (240, 240, 240), (228, 228, 228), (110, 190, 245)])
def test_background_colour_band(compliant, colour):
    """Not one exact value: near-white, light grey and a slightly different light blue pass."""
    rgb = array(compliant)
    mask = background_mask(rgb)
    rgb[mask] = colour
    # Keep the clothes distinguishable on light backgrounds.
    rgb[560:, :][~mask[560:, :]] = (40, 40, 60)
    report = check(crafted(rgb))
    assert "background.color" not in rules_of(report), report.metrics.get("background.delta_e")


def test_background_gradient(compliant):
    rgb = array(compliant).astype(float)
    mask = background_mask(rgb.astype(np.uint8))
    ramp = np.linspace(-30, 30, rgb.shape[0])[:, None, None] * np.ones_like(rgb)
    rgb[mask] += ramp[mask]
    report = check(crafted(rgb))
    finding = next(f for f in report.failures if f.rule == "background.uniform")
    assert finding.key == "background.uniform.gradient"


def test_background_object(compliant):
    rgb = array(compliant)
    cv2.rectangle(rgb, (10, 20), (90, 160), (90, 60, 40), -1)  # a picture frame on the wall
    report = check(crafted(rgb))
    finding = next(f for f in report.failures if f.rule == "background.uniform")
    assert finding.key == "background.uniform.spots"


def test_clothes_like_background(compliant):
    rgb = array(compliant)
    rgb[int(rgb.shape[0] * 0.8):, :] = BLUE  # shoulders the colour of the wall
    report = check(crafted(rgb))
    assert "background.contrast" in rules_of(report)


def test_head_too_small(compliant):
    canvas = Image.new("RGB", (480, 640), tuple(BLUE))
    canvas.paste(compliant.resize((240, 320)), (120, 320))
    report = check(jpeg(canvas))
    finding = next(f for f in report.failures if f.rule == "head.size")
    assert finding.value < T.min_head_ratio and "%" in finding.message


def test_head_too_large(compliant):
    crop = compliant.crop((90, 40, 390, 440)).resize((480, 640))
    report = check(jpeg(crop))
    finding = next(f for f in report.failures if f.rule == "head.size")
    assert finding.key == "head.size.large"


def test_head_off_centre(compliant):
    rgb = array(compliant)
    shifted = np.empty_like(rgb)
    shifted[:] = BLUE
    shifted[:, 110:] = rgb[:, :-110]
    report = check(crafted(shifted))
    finding = next(f for f in report.failures if f.rule == "head.position")
    assert finding.value > T.max_center_offset


def test_no_room_above_the_hair(compliant):
    rgb = array(compliant)
    moved = np.empty_like(rgb)
    moved[:] = BLUE
    moved[:-60] = rgb[60:]
    moved[-60:] = rgb[-60:]
    report = check(crafted(moved))
    finding = next(f for f in report.failures if f.rule == "head.position")
    assert finding.key == "head.position.top_small"


def test_painted_sunglasses(compliant):
    rgb = array(compliant)
    mesh = mesh_of(rgb)
    for ring in (m.RIGHT_EYE_RING, m.LEFT_EYE_RING):
        pts = m.scaled_polygon(mesh[list(ring)], 2.2)
        centre, size = pts.mean(axis=0), np.ptp(pts, axis=0)
        cv2.ellipse(rgb, (int(centre[0]), int(centre[1])), (int(size[0] * 0.6), int(size[1] * 1.2)), 0, 0, 360, (25, 25, 30), -1)
    report = check(crafted(rgb))
    assert "face.glasses" in rules_of(report)


def test_decode_downscales_and_keeps_full_size(compliant):
    big = compliant.resize((3000, 4000))
    decoded = decode(jpeg(big, quality=90), T)
    assert (decoded.width, decoded.height) == (3000, 4000)
    assert max(decoded.rgb.shape[:2]) == T.work_max_side
