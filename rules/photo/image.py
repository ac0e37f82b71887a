"""Image-level rules: pixel dimensions, shape and colour mode."""
from __future__ import annotations

import cv2
import numpy as np

from .context import Photo
from .report import Finding, finding

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def resolution(photo: Photo) -> Finding | None:
    d, t = photo.decoded, photo.thresholds
    if d.problem == "too_large":
        return finding("image.resolution", f"{d.width}×{d.height}", t.max_pixels,
                       key="image.resolution.too_large",
                       shown_value=f"{d.width}×{d.height}",
                       shown_threshold=f"{t.max_pixels / 1e6:.0f} 百万像素")
    if d.problem == "too_large_to_decode":
        return finding("image.resolution", f"{d.width}×{d.height}", t.max_decode_pixels,
                       key="image.resolution.too_large_to_decode",
                       shown_value=f"{d.width}×{d.height}",
                       shown_threshold=f"{t.max_decode_pixels / 1e6:.0f} 百万像素")
    if not d.width:
        return None
    photo.record("image.width", d.width)
    photo.record("image.height", d.height)
    if d.width < t.min_width or d.height < t.min_height:
        return finding("image.resolution", f"{d.width}×{d.height}", f"{t.min_width}×{t.min_height}")
    return None


def aspect(photo: Photo) -> Finding | None:
    d, t = photo.decoded, photo.thresholds
    if not d.width or not d.height:
        return None
    ratio = photo.record("image.aspect", d.width / d.height)
    if abs(ratio - t.aspect_ratio) <= t.aspect_tolerance:
        return None
    key = "image.aspect.landscape" if d.width > d.height else "image.aspect"
    return finding("image.aspect", ratio, t.aspect_ratio, key=key,
                   shown_value=f"{d.width}×{d.height}", shown_threshold="3:4")


def color(photo: Photo) -> Finding | None:
    """24-bit colour: not grayscale, CMYK or palette, and not a black-and-white picture in RGB."""
    d, t = photo.decoded, photo.thresholds
    if not d.mode:
        return None
    photo.record("image.mode", d.mode)
    if d.mode in _GRAY_MODES:
        photo.cache["monochrome"] = True
        return finding("image.color", d.mode, "RGB", key="image.color.gray")
    if d.mode == "CMYK":
        return finding("image.color", d.mode, "RGB", key="image.color.cmyk")
    if d.mode in ("P", "PA"):
        return finding("image.color", d.mode, "RGB", key="image.color.palette")
    if d.mode not in ("RGB", "RGBA", "RGBX", "YCbCr"):
        return finding("image.color", d.mode, "RGB")
    if d.rgb is not None:
        chroma = photo.record("image.mean_chroma", mean_chroma(d.rgb))
        if chroma >= t.min_mean_chroma:
            return None
        # A neutral wall and grey clothes make a colour photo nearly colourless on average; its skin
        # is not. Where there is one face, the skin decides.
        skin = skin_chroma(photo)
        if skin is not None:
            photo.record("image.skin_chroma", skin)
            if skin >= t.min_skin_chroma:
                return None
            photo.cache["monochrome"] = True
            return finding("image.color", skin, t.min_skin_chroma, key="image.color.gray", measure="image.skin_chroma")
        photo.cache["monochrome"] = True
        return finding("image.color", chroma, t.min_mean_chroma, key="image.color.gray", measure="image.mean_chroma")
    return None


def skin_chroma(photo: Photo) -> float | None:
    """Median CIELAB chroma of the face's bare skin, None unless exactly one face is found."""
    a = photo.analysis
    if photo.mesh is None or max(len(a.faces), len(a.meshes)) != 1:
        return None
    from .quality import skin_region

    skin = skin_region(photo)
    if skin.sum() < 16:
        return None
    lab = photo.lab[skin]
    return float(np.median(np.hypot(lab[:, 1], lab[:, 2])))


def mean_chroma(rgb: np.ndarray) -> float:
    small = cv2.resize(rgb, (64, 64 * rgb.shape[0] // max(rgb.shape[1], 1) or 1), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


RULES = (resolution, aspect, color)
