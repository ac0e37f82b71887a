"""Background rules: colour, uniformity, and contrast with the clothes."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import measure as m
from .context import Photo
from .report import Finding, finding

REFERENCES = {"blue": (100, 197, 255), "white": (255, 255, 255), "grey": (240, 240, 240)}
_REFERENCE_LAB = {name: m.rgb_to_lab_color(rgb) for name, rgb in REFERENCES.items()}
_CELL_FRACTION = 1 / 24  # uniformity grid cell side, as a fraction of the image width
_MIN_BACKGROUND_SHARE = 0.03
_SHOULDER_BAND = 0.15  # bottom share of the picture where the shoulders are


@dataclass(frozen=True)
class BackgroundStats:
    lab: np.ndarray  # median L*, a*, b* of the background
    cells: np.ndarray  # (n, 3) mean Lab of the grid cells that are all background
    cell_centres: np.ndarray  # (n, 2) y, x of those cells as fractions of the image


def background_stats(photo: Photo) -> BackgroundStats | None:
    if "background" not in photo.cache:
        photo.cache["background"] = _measure_background(photo)
    return photo.cache["background"]


def _measure_background(photo: Photo) -> BackgroundStats | None:
    mask = photo.background
    if mask.mean() < _MIN_BACKGROUND_SHARE:
        return None
    lab = photo.lab
    median = np.median(lab[mask], axis=0)
    cell = max(4, int(round(photo.width * _CELL_FRACTION)))
    rows, cols = photo.height // cell, photo.width // cell
    crop = (slice(0, rows * cell), slice(0, cols * cell))
    share = mask[crop].reshape(rows, cell, cols, cell).mean(axis=(1, 3))
    means = lab[crop].reshape(rows, cell, cols, cell, 3).mean(axis=(1, 3))
    keep = share >= 0.95
    ys, xs = np.nonzero(keep)
    centres = np.stack([(ys + 0.5) * cell / photo.height, (xs + 0.5) * cell / photo.width], axis=1)
    return BackgroundStats(median, means[keep], centres)


def nearest_reference(lab: np.ndarray) -> tuple[str, float]:
    distances = {name: float(m.delta_e2000(lab, ref)) for name, ref in _REFERENCE_LAB.items()}
    name = min(distances, key=distances.get)
    return name, distances[name]


def chromatic_distance(lab: np.ndarray) -> float:
    """Delta E 2000 to the nearest allowed colour brought to this lightness: the colour, not the light."""
    distances = []
    for ref in _REFERENCE_LAB.values():
        same_light = ref.copy()
        same_light[0] = lab[0]
        distances.append(float(m.delta_e2000(lab, same_light)))
    return min(distances)


def colour_name(lab: np.ndarray) -> str:
    """A plain Chinese name for a background colour, as a candidate would call it."""
    lightness, a, b = (float(v) for v in lab)
    chroma = float(np.hypot(a, b))
    if chroma < 8:
        if lightness > 92:
            return "白色"
        if lightness > 80:
            return "浅灰色"
        return "灰色" if lightness > 45 else "深灰色" if lightness > 20 else "黑色"
    hue = float(np.degrees(np.arctan2(b, a)) % 360)
    # CIELAB hue angles: pure red sits near 40°, orange near 60°, yellow near 95°, blue near 290°.
    names = ((50, "红色"), (70, "橙色"), (105, "米黄色" if chroma < 30 else "黄色"), (170, "绿色"),
             (220, "青色"), (300, "蓝色"), (345, "紫色"), (360, "红色"))
    name = next(n for limit, n in names if hue < limit)
    if name in ("红色", "紫色") and lightness > 70:
        name = "粉色"
    if lightness < 40 and name in ("蓝色", "绿色", "红色", "紫色", "灰色"):
        return "深" + name
    if lightness > 80 and name in ("蓝色", "绿色", "黄色"):
        return "浅" + name
    return name


def color(photo: Photo) -> Finding | None:
    stats, t = background_stats(photo), photo.thresholds
    if stats is None or photo.monochrome:
        return None
    photo.record("background.lab", [round(float(v), 1) for v in stats.lab])
    name, distance = nearest_reference(stats.lab)
    photo.record("background.nearest", name)
    distance = photo.record("background.delta_e", distance)
    if distance <= t.max_background_delta_e or _dimmed_allowed_colour(photo):
        return None
    key = "background.color.dark" if stats.lab[0] < 50 else "background.color"
    return finding("background.color", distance, t.max_background_delta_e, key=key,
                   measure="background.delta_e", colour=photo.record("background.colour_name", colour_name(stats.lab)))


def _dimmed_allowed_colour(photo: Photo) -> bool:
    """An allowed background in a photo taken too dark: quality.exposure names the real problem."""
    if photo.mesh is None or photo.metrics.get("face.count", 1) != 1:
        return False
    from .quality import dimmed_photo

    return dimmed_photo(photo)


def uniform(photo: Photo) -> Finding | None:
    stats, t = background_stats(photo), photo.thresholds
    if stats is None or len(stats.cells) < 8:
        return None
    de = m.delta_e2000(stats.cells, stats.lab)
    spread = photo.record("background.cell_delta_e_p95", float(np.percentile(de, 95)))
    bad = photo.record("background.bad_cell_fraction", float((de > t.max_background_cell_delta_e).mean()))
    texture = photo.record("background.mean_gradient", mean_gradient(photo))
    span = photo.record("background.gradient_delta_e", gradient_span(stats))
    if bad > t.max_background_bad_cell_fraction:
        key = "background.uniform.gradient" if _is_gradient(stats, de) else "background.uniform.spots"
        return finding("background.uniform", bad, t.max_background_bad_cell_fraction, key=key,
                       measure="background.bad_cell_fraction")
    if span > t.max_background_gradient_delta_e:
        return finding("background.uniform", span, t.max_background_gradient_delta_e, key="background.uniform.gradient",
                       measure="background.gradient_delta_e")
    if texture > t.max_background_gradient:
        return finding("background.uniform", texture, t.max_background_gradient, key="background.uniform.spots",
                       measure="background.mean_gradient")
    return None


def _is_gradient(stats: BackgroundStats, de: np.ndarray) -> bool:
    """A smooth ramp: the cells' lightness follows a plane in x, y closely."""
    design = np.column_stack([stats.cell_centres, np.ones(len(de))])
    coef, *_ = np.linalg.lstsq(design, stats.cells[:, 0], rcond=None)
    residual = stats.cells[:, 0] - design @ coef
    return float(np.std(residual)) < 0.3 * float(np.std(stats.cells[:, 0]))


def gradient_span(stats: BackgroundStats) -> float:
    """Largest delta E between opposite thirds of the background (top/bottom, left/right).

    A smooth ramp hides from the mean gradient and from cell-to-median distances, not from this."""
    spans = [0.0]
    for axis in (0, 1):
        pos = stats.cell_centres[:, axis]
        low, high = stats.cells[pos < 1 / 3], stats.cells[pos > 2 / 3]
        if len(low) >= 2 and len(high) >= 2:
            spans.append(float(m.delta_e2000(low.mean(axis=0), high.mean(axis=0))))
    return max(spans)


def mean_gradient(photo: Photo) -> float:
    """OFIQ-style: mean gradient magnitude (grey levels per pixel) over the background."""
    gray = photo.gray.astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy) / 8.0
    mask = photo.background
    return float(mag[mask].mean()) if mask.any() else 0.0


def clothing_region(photo: Photo) -> np.ndarray | None:
    """Boolean mask of the shoulders: bottom rows, left and right of the neck.

    The middle is left out because an open collar shows skin, not clothes.
    """
    mesh = photo.mesh
    if mesh is None:
        return None
    chin = mesh[m.CHIN]
    face_w = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]])
    top = int(max(chin[1] + 0.3 * face_w, photo.height * (1 - _SHOULDER_BAND)))
    if top >= photo.height - 2:
        return None
    region = np.zeros(photo.rgb.shape[:2], dtype=bool)
    for sign in (-1, 1):
        near, far = chin[0] + sign * 0.55 * face_w, chin[0] + sign * 1.0 * face_w
        x0, x1 = int(max(0, min(near, far))), int(min(photo.width, max(near, far)))
        region[top:, x0:x1] = True
    return region if region.sum() >= 16 else None


def contrast(photo: Photo) -> Finding | None:
    stats, t = background_stats(photo), photo.thresholds
    region = clothing_region(photo) if stats is not None else None
    if region is None or photo.metrics.get("face.count", 1) != 1 or photo.monochrome:
        # black-and-white: grey clothes before a grey background say nothing about the real colours
        return None
    de = m.delta_e2000(photo.lab[region], stats.lab)
    photo.record("background.clothing_delta_e", float(np.median(de)))
    blend = photo.record("background.clothing_blend_fraction", float((de < t.min_clothing_delta_e).mean()))
    if blend > t.max_clothing_blend_fraction:
        return finding("background.contrast", blend, t.max_clothing_blend_fraction,
                       shown_value=f"{blend * 100:.0f}%", shown_threshold=f"{t.max_clothing_blend_fraction * 100:.0f}%",
                       measure="background.clothing_blend_fraction")
    return None


RULES = (color, uniform, contrast)
