"""Measure each photo measurement's noise on the compliant labelled photos, and print the table that
rules/photo/noise.py and the README's photo section carry.

Noise: how far a measurement moves when a compliant photo is mirrored, re-saved as JPEG (quality
85) or trimmed by 1 % on every side; none of these makes it more or less compliant. The table gives
the 95th percentile of those moves over every compliant photo, beside the range the measurement
spans on the compliant photos and the limit it is compared with.

    .venv/bin/python bench/photo_noise.py [--photos DIR] [--limit N]
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rules.photo import face, image, warm_up  # noqa: E402
from rules.photo.checker import inspect  # noqa: E402
from rules.photo.noise import RELATIVE, noise_of  # noqa: E402
from rules.photo.thresholds import PhotoThresholds  # noqa: E402

T = PhotoThresholds()

# measurement → (how to read it from a checked photo, the limit(s) it is compared with)
MEASURES = {
    "face.yaw": (lambda r, p: abs(r.metrics.get("face.yaw", math.nan)), T.max_yaw_degrees),
    "face.roll": (lambda r, p: abs(r.metrics.get("face.roll", math.nan)), T.max_roll_degrees),
    "face.pitch": (lambda r, p: r.metrics.get("face.pitch", math.nan) - T.pitch_neutral_degrees, T.max_pitch_degrees),
    "face.ear": (lambda r, p: min(r.metrics.get("face.ear_left", math.nan), r.metrics.get("face.ear_right", math.nan)),
                 T.min_eye_aspect_ratio),
    "face.mouth_open": (lambda r, p: r.metrics.get("face.mouth_open", math.nan), T.max_mouth_open_ratio),
    "face.teeth": (lambda r, p: face.teeth_fraction(p) if p.mesh is not None else math.nan, T.max_teeth_fraction),
    "face.under_eye_lightness": (lambda r, p: r.metrics.get("face.under_eye_lightness", math.nan),
                                 T.min_under_eye_lightness),
    "quality.sharpness": (lambda r, p: r.metrics.get("quality.sharpness", math.nan), T.min_sharpness),
    "quality.dark_fraction": (lambda r, p: r.metrics.get("quality.dark_fraction", math.nan), T.max_dark_fraction),
    "quality.bright_fraction": (lambda r, p: r.metrics.get("quality.bright_fraction", math.nan), T.max_bright_fraction),
    "quality.background_lightness": (lambda r, p: r.metrics.get("quality.background_lightness", math.nan),
                                     T.min_background_lightness),
    "quality.cheek_a": (lambda r, p: r.metrics.get("quality.cheek_a", math.nan), (T.min_cheek_a, T.max_cheek_a)),
    "quality.cheek_b": (lambda r, p: r.metrics.get("quality.cheek_b", math.nan), (T.min_cheek_b, T.max_cheek_b)),
    "image.mean_chroma": (lambda r, p: r.metrics.get("image.mean_chroma", math.nan), T.min_mean_chroma),
    "image.skin_chroma": (lambda r, p: _or_nan(image.skin_chroma(p)), T.min_skin_chroma),
    "head.height_ratio": (lambda r, p: r.metrics.get("head.height_ratio", math.nan), (T.min_head_ratio, T.max_head_ratio)),
    "head.center_offset": (lambda r, p: r.metrics.get("head.center_offset", math.nan), T.max_center_offset),
    "head.top_margin": (lambda r, p: r.metrics.get("head.top_margin", math.nan), (T.min_top_margin, T.max_top_margin)),
    "head.eye_line": (lambda r, p: r.metrics.get("head.eye_line", math.nan), (T.min_eye_line, T.max_eye_line)),
    "background.delta_e": (lambda r, p: r.metrics.get("background.delta_e", math.nan), T.max_background_delta_e),
    "background.bad_cell_fraction": (lambda r, p: r.metrics.get("background.bad_cell_fraction", math.nan),
                                     T.max_background_bad_cell_fraction),
    "background.gradient_delta_e": (lambda r, p: r.metrics.get("background.gradient_delta_e", math.nan),
                                    T.max_background_gradient_delta_e),
    "background.mean_gradient": (lambda r, p: r.metrics.get("background.mean_gradient", math.nan),
                                 T.max_background_gradient),
    "background.clothing_blend_fraction": (lambda r, p: r.metrics.get("background.clothing_blend_fraction", math.nan),
                                           T.max_clothing_blend_fraction),
}


def _move(name: str, value: float, base: float) -> float:
    if name in RELATIVE:
        return abs(math.log(max(value, 1e-6)) - math.log(max(base, 1e-6)))
    return abs(value - base)


def _floored(name: str, noise: float, limit: float) -> float:
    """The noise rules/photo/noise.py would use for this one (it floors it at a share of the limit)."""
    import rules.photo.noise as table

    measured, table.NOISE[name] = table.NOISE.get(name), noise
    try:
        return noise_of(name, math.log(limit) if name in RELATIVE else limit)
    finally:
        if measured is None:
            del table.NOISE[name]
        else:
            table.NOISE[name] = measured


def _gap(name: str, value: float, limit: float) -> float:
    return _move(name, value, limit)


def _or_nan(value):
    return math.nan if value is None else value


def perturbations(data: bytes) -> list[bytes]:
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    dx, dy = max(1, w // 100), max(1, h // 100)
    variants = [ImageOps.mirror(im), im, im.crop((dx, dy, w - dx, h - dy))]
    out = []
    for i, variant in enumerate(variants):
        buffer = io.BytesIO()
        variant.save(buffer, "JPEG", quality=85 if i == 1 else 95)
        out.append(buffer.getvalue())
    return out


def measure_all(data: bytes) -> dict[str, float]:
    report, photo = inspect(data)
    return {name: float(read(report, photo)) for name, (read, _) in MEASURES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "photos")
    parser.add_argument("--limit", type=int, default=0, help="only the first N compliant photos")
    parser.add_argument("--json", action="store_true", help="print the noise table as JSON")
    args = parser.parse_args()
    labels = [item for item in json.loads((args.photos / "labels.json").read_text(encoding="utf-8"))
              if item["expect"] == "pass"]
    labels = labels[:args.limit] if args.limit else labels
    warm_up()
    values: dict[str, list[float]] = {name: [] for name in MEASURES}
    moves: dict[str, list[float]] = {name: [] for name in MEASURES}
    for item in labels:
        data = (args.photos / item["file"]).read_bytes()
        base = measure_all(data)
        for name, value in base.items():
            values[name].append(value)
        for variant in perturbations(data):
            for name, value in measure_all(variant).items():
                if not (math.isnan(value) or math.isnan(base[name])):
                    moves[name].append(_move(name, value, base[name]))
    noise = {name: round(float(np.percentile(m, 95)), 4) for name, m in moves.items() if m}
    if args.json:
        print(json.dumps(noise, indent=1))
        return
    print(f"{len(labels)} compliant photos, {len(labels) * 3} perturbed copies")
    print("| measurement | compliant range | noise (p95 move; ln for sharpness) | noise used (floored) | limit |"
          " closest compliant, in noise used |")
    print("|---|---|---|---|---|---|")
    for name, (_, limit) in MEASURES.items():
        seen = [v for v in values[name] if not math.isnan(v)]
        if not seen:
            continue
        lo, hi = min(seen), max(seen)
        limits = limit if isinstance(limit, tuple) else (limit,)
        n = noise.get(name, math.nan)
        used = min(_floored(name, n, lim) for lim in limits)
        gap = min(min(_gap(name, v, lim) for v in seen) for lim in limits) / used
        shown_limit = "–".join(f"{v:g}" for v in limits)
        print(f"| {name} | {lo:.3g} … {hi:.3g} | {n:.3g} | {used:.3g} | {shown_limit} | {gap:.1f} |")
    print("\nNOISE = " + json.dumps(noise, indent=1))


if __name__ == "__main__":
    main()
