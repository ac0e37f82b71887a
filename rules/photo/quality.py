"""Picture quality rules: focus, exposure and natural colour of the face."""
from __future__ import annotations

import cv2
import numpy as np

from . import measure as m
from .context import Photo
from .report import Finding, finding

_SHARPNESS_WIDTH = 256
_NEAR_BLACK, _NEAR_WHITE = 20, 250  # grey levels counted as crushed / blown out
_SKIN_DELTA_E = 25.0  # pixels of the face this close to the cheeks' colour are skin (not hair)


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
        return finding("quality.sharpness", value, t.min_sharpness, measure="quality.sharpness")
    return None


def skin_region(photo: Photo) -> np.ndarray:
    """The face's bare skin: the face oval without the eyes and their sockets, the brows, and all
    below the nose tip (moustache, beard, mouth). Dark brows, deep-set eyes and a beard are not
    exposure: measured on the whole oval they made a well-lit bearded face "too dark"."""
    if "skin_region" not in photo.cache:
        mesh = photo.mesh
        region = face_pixels(photo).astype(np.uint8)
        width = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]])
        for ring in (m.RIGHT_EYE_RING, m.LEFT_EYE_RING):
            cv2.fillPoly(region, [np.round(m.scaled_polygon(mesh[list(ring)], 2.2)).astype(np.int32)], 0)
        for i in m.BROWS:
            cv2.circle(region, (int(round(mesh[i][0])), int(round(mesh[i][1]))), max(1, int(0.07 * width)), 0, -1)
        region[max(0, int(round(mesh[m.NOSE_TIP][1]))):, :] = 0
        region = region.astype(bool)
        # Hair over the forehead is not skin either: keep what is near the cheeks' colour.
        cheek = _cheek_lab(photo)
        region[region] = m.delta_e2000(photo.lab[region], cheek) < _SKIN_DELTA_E
        photo.cache["skin_region"] = region
    return photo.cache["skin_region"]


def _cheek_lab(photo: Photo) -> np.ndarray:
    mesh = photo.mesh
    radius = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]]) * 0.05
    return np.median(np.concatenate([m.patch(photo.lab, mesh[i], radius) for i in m.CHEEKS]), axis=0)


def dimmed_photo(photo: Photo) -> bool:
    """The whole picture taken too dark: an allowed background colour far below its lightness, and a
    face that is dim too (a dark scene behind a well-lit face is a background problem, not this)."""
    dim, t = dim_background(photo), photo.thresholds
    measures = exposure_measures(photo)
    if dim is None or measures is None:
        return False
    return (dim[0] < t.min_background_lightness and dim[1] <= t.max_dim_background_delta_e
            and measures[2] < t.max_dim_face_lightness)


def dim_background(photo: Photo) -> tuple[float, float] | None:
    """(background L*, its colour distance to the nearest allowed colour at the same lightness).

    Every allowed background is light (L* 76 and up): one of their colours photographed well below
    that lightness means the whole picture is too dark, whatever the skin tone."""
    from .background import background_stats, chromatic_distance

    stats = background_stats(photo)
    if stats is None or photo.monochrome:
        return None
    return float(stats.lab[0]), chromatic_distance(stats.lab)


def exposure_measures(photo: Photo) -> tuple[float, float, float] | None:
    """(dark fraction, bright fraction, mean L*) of the face's bare skin; OFIQ-style under/over-exposure."""
    if "exposure" not in photo.cache:
        skin = skin_region(photo)
        if skin.sum() < 16:
            photo.cache["exposure"] = None
        else:
            gray = photo.gray[skin]
            photo.cache["exposure"] = (float((gray < _NEAR_BLACK).mean()), float((gray > _NEAR_WHITE).mean()),
                                       float(photo.lab[skin][:, 0].mean()))
    return photo.cache["exposure"]


def exposure_problem(photo: Photo) -> str | None:
    """"dark", "bright", "dim" (an allowed background far too dark) or None. Dark skin is not
    under-exposure: judged by clipped pixels and the background, not by the skin's tone."""
    measures, t = exposure_measures(photo), photo.thresholds
    if measures is None:
        return None
    dark, bright, mean_l = measures
    if dark > t.max_dark_fraction or mean_l < t.min_face_lightness:
        return "dark"
    if bright > t.max_bright_fraction or mean_l > t.max_face_lightness:
        return "bright"
    if dimmed_photo(photo):
        return "dim"
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
    dim = dim_background(photo)
    if dim is not None:
        photo.record("quality.background_lightness", dim[0])
    problem = exposure_problem(photo)
    if problem == "dark":
        return finding("quality.exposure", dark, t.max_dark_fraction, key="quality.exposure.dark",
                       shown_value=f"{dark * 100:.0f}%", shown_threshold=f"{t.max_dark_fraction * 100:.0f}%",
                       measure="quality.dark_fraction")
    if problem == "bright":
        return finding("quality.exposure", bright, t.max_bright_fraction, key="quality.exposure.bright",
                       shown_value=f"{bright * 100:.0f}%", shown_threshold=f"{t.max_bright_fraction * 100:.0f}%",
                       measure="quality.bright_fraction")
    if problem == "dim":
        return finding("quality.exposure", dim[0], t.min_background_lightness, key="quality.exposure.dark",
                       measure="quality.background_lightness")
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
        return finding("quality.color", a, [t.min_cheek_a, t.max_cheek_a], measure="quality.cheek_a")
    if not t.min_cheek_b <= b <= t.max_cheek_b:
        return finding("quality.color", b, [t.min_cheek_b, t.max_cheek_b], measure="quality.cheek_b")
    return None


RULES = (sharpness, exposure, color)
