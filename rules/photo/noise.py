"""How noisy each measurement is, and so how sure a finding is.

NOISE is, per measurement, the 95th percentile of how much the measurement moved on the compliant
labelled photos (../shared/photos) when the same photo was mirrored, re-saved as JPEG (quality 85) or
trimmed by 1 % on each side: changes that leave the photo exactly as compliant as it was
(`bench/photo_noise.py` measures it and prints this table; the README's photo section has the
figures with the limits). A measurement no further than its noise past its limit does not refuse
the photo: the reviewer sees it as a hint. A measurement with no noise here was never measured, so
it refuses nobody (margin 0).

The noise is floored at a small share of the limit (MIN_NOISE_SHARE): a measurement that did not move
at all on forty-odd photos has still not been shown to be exact.
"""
from __future__ import annotations

import math
from typing import Any

MIN_NOISE_SHARE = 0.02
# Measurements that vary by factors rather than by amounts (focus: 25 to 390 on compliant photos):
# their noise is of the natural logarithm, and so is their margin.
RELATIVE = frozenset({"quality.sharpness"})

NOISE: dict[str, float] = {
    # bench/photo_noise.py, 2026-11-29: 71 compliant photos x 3 perturbed copies
    "face.yaw": 0.8128,
    "face.roll": 0.7563,
    "face.pitch": 1.1942,
    "face.ear": 0.0267,
    "face.mouth_open": 0.0022,
    "face.teeth": 0.0116,
    "face.under_eye_lightness": 0.0165,
    "quality.sharpness": 0.3683,
    "quality.dark_fraction": 0.0,
    "quality.bright_fraction": 0.0,
    "quality.background_lightness": 0.0,
    "quality.cheek_a": 0.1688,
    "quality.cheek_b": 0.2484,
    "image.mean_chroma": 0.2543,
    "image.skin_chroma": 0.1054,
    "head.height_ratio": 0.0142,
    "head.center_offset": 0.0045,
    "head.top_margin": 0.008,
    "head.eye_line": 0.0023,
    "background.delta_e": 0.0,
    "background.bad_cell_fraction": 0.0,
    "background.gradient_delta_e": 0.0118,
    "background.mean_gradient": 0.0163,
    "background.clothing_blend_fraction": 0.0105,
}


def noise_of(measure: str, threshold: float) -> float | None:
    noise = NOISE.get(measure)
    if noise is None:
        return None
    return max(noise, abs(float(threshold)) * MIN_NOISE_SHARE, 1e-6)


def margin_of(measure: str, value: Any, threshold: Any) -> float:
    """Distance past the limit in units of noise; 0 when the measurement's noise is unknown."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    if isinstance(threshold, (list, tuple)):  # an accepted range: the nearer bound
        lo, hi = (float(v) for v in threshold)
        threshold = lo if value < lo else hi
    threshold = float(threshold)
    if measure in RELATIVE:
        if value <= 0 or threshold <= 0:
            return math.inf
        value, threshold = math.log(value), math.log(threshold)
    noise = noise_of(measure, threshold)
    if noise is None or math.isnan(value):
        return 0.0
    return abs(value - threshold) / noise
