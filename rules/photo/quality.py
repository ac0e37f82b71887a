"""Picture quality rules: focus, exposure and natural colour of the face."""
from __future__ import annotations

import cv2
import numpy as np

from . import measure as m
from .context import Photo
from .report import Finding, finding

_SHARPNESS_WIDTH = 256
_NEAR_BLACK, _NEAR_WHITE = 20, 250  # grey levels counted as crushed / blown out


def face_pixels(photo: Photo) -> np.ndarray:
    """Boolean mask of the face oval."""
    if "face_mask" not in photo.cache:
        photo.cache["face_mask"] = m.polygon_mask(photo.rgb.shape, photo.mesh[list(m.FACE_OVAL)])
    return photo.cache["face_mask"]


def face_lightness(photo: Photo) -> float:
    """Mean L* of the face oval."""
    if "face_lightness" not in photo.cache:
        face = face_pixels(photo)
        photo.cache["face_lightness"] = float(photo.lab[face][:, 0].mean()) if face.any() else 50.0
    return photo.cache["face_lightness"]


def laplacian_variance(photo: Photo) -> float:
    """Variance of the Laplacian of the face crop resized to 256 px wide."""
    x0, y0, x1, y1 = m.face_box(photo.mesh, photo.rgb.shape)
    crop = photo.gray[y0:y1, x0:x1]
    if crop.size < 16:
        return 0.0
    scale = _SHARPNESS_WIDTH / crop.shape[1]
    crop = cv2.resize(crop, (_SHARPNESS_WIDTH, max(1, int(round(crop.shape[0] * scale)))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var())


def sharpness(photo: Photo) -> Finding | None:
    if photo.mesh is None or photo.metrics.get("face.count", 1) != 1:
        return None
    t = photo.thresholds
    value = photo.record("quality.sharpness", laplacian_variance(photo))
    if value < t.min_sharpness:
        return finding("quality.sharpness", value, t.min_sharpness)
    return None


def exposure_measures(photo: Photo) -> tuple[float, float, float] | None:
    """(dark fraction, bright fraction, mean L*) of the face oval; OFIQ-style under/over-exposure."""
    if "exposure" not in photo.cache:
        face = face_pixels(photo)
        if face.sum() < 16:
            photo.cache["exposure"] = None
        else:
            gray = photo.gray[face]
            photo.cache["exposure"] = (float((gray < _NEAR_BLACK).mean()), float((gray > _NEAR_WHITE).mean()),
                                       face_lightness(photo))
    return photo.cache["exposure"]


def exposure_problem(photo: Photo) -> str | None:
    """"dark", "bright" or None. Dark skin is not under-exposure: judged by clipped pixels, not tone."""
    measures, t = exposure_measures(photo), photo.thresholds
    if measures is None:
        return None
    dark, bright, mean_l = measures
    if dark > t.max_dark_fraction or mean_l < t.min_face_lightness:
        return "dark"
    if bright > t.max_bright_fraction or mean_l > t.max_face_lightness:
        return "bright"
    return None


def exposure(photo: Photo) -> Finding | None:
    if photo.mesh is None or photo.metrics.get("face.count", 1) != 1:
        return None
    t = photo.thresholds
    measures = exposure_measures(photo)
    if measures is None:
        return None
    dark, bright, mean_l = measures
    photo.record("quality.dark_fraction", dark)
    photo.record("quality.bright_fraction", bright)
    photo.record("quality.face_lightness", mean_l)
    problem = exposure_problem(photo)
    if problem == "dark":
        return finding("quality.exposure", dark, t.max_dark_fraction, key="quality.exposure.dark",
                       shown_value=f"{dark * 100:.0f}%", shown_threshold=f"{t.max_dark_fraction * 100:.0f}%")
    if problem == "bright":
        return finding("quality.exposure", bright, t.max_bright_fraction, key="quality.exposure.bright",
                       shown_value=f"{bright * 100:.0f}%", shown_threshold=f"{t.max_bright_fraction * 100:.0f}%")
    return None


def cheek_colour(photo: Photo) -> tuple[float, float]:
    mesh = photo.mesh
    radius = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]]) * 0.06
    cheek = np.concatenate([m.patch(photo.lab, mesh[i], radius) for i in m.CHEEKS])
    a, b = np.median(cheek[:, 1]), np.median(cheek[:, 2])
    return float(a), float(b)


def color(photo: Photo) -> Finding | None:
    if photo.mesh is None or photo.metrics.get("face.count", 1) != 1 or photo.monochrome:
        return None
    t = photo.thresholds
    a, b = cheek_colour(photo)
    a = photo.record("quality.cheek_a", a)
    b = photo.record("quality.cheek_b", b)
    if not t.min_cheek_a <= a <= t.max_cheek_a:
        return finding("quality.color", a, [t.min_cheek_a, t.max_cheek_a])
    if not t.min_cheek_b <= b <= t.max_cheek_b:
        return finding("quality.color", b, [t.min_cheek_b, t.max_cheek_b])
    return None


RULES = (sharpness, exposure, color)
