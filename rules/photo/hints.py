"""Cues for the human reviewer. What no machine judges reliably (ears, hair over the brows,
jewellery, make-up, head covering, clothing style, reflections, beautified or life photos) is never
failed: it is listed as a hint, with the measured cue where there is one.

Ears have no cue here: skin beside the cheeks flagged 13 of the 26 compliant labelled photos,
among them a bald head with both ears in plain sight, and a hint that cries wolf teaches reviewers
to ignore hints."""
from __future__ import annotations

import cv2
import numpy as np

from . import measure as m
from .context import Photo
from .report import Hint, hint

BEAUTY_APPS = ("meitu", "美图", "beautycam", "beautyplus", "facetune", "醒图", "b612", "faceu", "轻颜",
               "youcam", "snow", "ulike", "美颜", "无他相机", "faceapp", "retrica", "perfect365")
EDITORS = ("photoshop", "lightroom", "gimp", "snapseed", "picsart", "vsco", "黄油相机", "canva")
_SKIN_HUE_DEGREES = 25.0  # a skin pixel's hue (CIELAB) is this close to the cheeks'...
_SKIN_MIN_CHROMA_SHARE = 0.5  # ...its chroma at least half theirs (grey cloth and dark hair have little)
_SKIN_LIGHTNESS = (0.5, 1.5)  # ...and its lightness within these shares of theirs (shading is allowed)
_GLASSES_BRIDGE_EDGES = 3.0  # bridge/forehead horizontal-edge ratio that suggests a frame
_MIN_FOREHEAD_SKIN = 0.5  # skin share above the brows below which hair may cover them (compliant: 0.91 and up)
_MAX_SHOULDER_SKIN = 0.5  # skin share on the shoulders above which the clothes may be sleeveless (compliant: 0.06 at most)


def collect(photo: Photo) -> list[Hint]:
    hints = _software_hints(photo)
    if photo.mesh is None or photo.metrics.get("face.count", 1) != 1 or photo.monochrome:
        return hints  # no skin to tell from hair or cloth in a black-and-white photo
    skin = _cheek_lab(photo)
    brows = photo.record("hint.forehead_skin", _forehead_skin_fraction(photo, skin))
    if brows < _MIN_FOREHEAD_SKIN:
        hints.append(hint("eyebrows", brows, shown=_pct(brows)))
    bridge = photo.record("hint.glasses_bridge_edges", _bridge_edge_ratio(photo))
    if bridge > _GLASSES_BRIDGE_EDGES:
        hints.append(hint("glasses", bridge, shown=f"{bridge:.1f}"))
    shoulders = photo.record("hint.shoulder_skin", _shoulder_skin_fraction(photo, skin))
    if shoulders > _MAX_SHOULDER_SKIN:
        hints.append(hint("clothing", shoulders, shown=_pct(shoulders)))
    return hints


def _software_hints(photo: Photo) -> list[Hint]:
    software = photo.decoded.exif_software
    lowered = software.lower()
    if any(name in lowered for name in BEAUTY_APPS):
        return [hint("beauty_app", software)]
    if any(name in lowered for name in EDITORS):
        return [hint("edited", software)]
    return []


def _cheek_lab(photo: Photo) -> np.ndarray:
    mesh = photo.mesh
    radius = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]]) * 0.05
    cheek = np.concatenate([m.patch(photo.lab, mesh[i], radius) for i in m.CHEEKS])
    return np.median(cheek, axis=0)


def _skin_fraction(photo: Photo, box: tuple[float, float, float, float], skin: np.ndarray) -> float:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, x0), min(photo.width, x1)
    y0, y1 = max(0, y0), min(photo.height, y1)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    block = photo.lab[y0:y1, x0:x1].reshape(-1, 3)
    return float(is_skin(block, skin).mean())


def is_skin(lab: np.ndarray, cheek: np.ndarray) -> np.ndarray:
    """Pixels of the cheeks' hue and a good share of their chroma. A colour distance alone called a grey
    T-shirt skin (its lightness matched, and chroma counts little), so sleeves read as bare shoulders."""
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    cheek_chroma = float(np.hypot(cheek[1], cheek[2]))
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
    cheek_hue = float(np.degrees(np.arctan2(cheek[2], cheek[1])))
    hue_gap = np.abs((hue - cheek_hue + 180) % 360 - 180)
    light = lab[:, 0] / max(float(cheek[0]), 1.0)
    return ((chroma >= max(5.0, _SKIN_MIN_CHROMA_SHARE * cheek_chroma)) & (hue_gap <= _SKIN_HUE_DEGREES)
            & (light >= _SKIN_LIGHTNESS[0]) & (light <= _SKIN_LIGHTNESS[1]))


def _forehead_skin_fraction(photo: Photo, skin: np.ndarray) -> float:
    """Skin-coloured share of the band just above the eyebrows (bangs make it small)."""
    mesh = photo.mesh
    brows = mesh[list(m.BROWS)]
    span = brows[:, 1].min() - mesh[m.FOREHEAD][1]
    box = (brows[:, 0].min(), brows[:, 1].min() - 0.5 * span, brows[:, 0].max(), brows[:, 1].min())
    return _skin_fraction(photo, box, skin)


def _shoulder_skin_fraction(photo: Photo, skin: np.ndarray) -> float:
    from .background import clothing_region

    region = clothing_region(photo)
    if region is None:
        return 0.0
    return float(is_skin(photo.lab[region], skin).mean())


def _bridge_edge_ratio(photo: Photo) -> float:
    """Horizontal edges over the nose bridge relative to the forehead: a glasses frame adds a bar."""
    mesh = photo.mesh
    w = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]])
    gy = np.abs(cv2.Sobel(photo.gray.astype(np.float32), cv2.CV_32F, 0, 1, ksize=3))
    bridge = m.patch(gy, mesh[m.NOSE_BRIDGE], 0.06 * w)
    forehead = m.patch(gy, mesh[151], 0.06 * w)
    return float(bridge.mean() / max(forehead.mean(), 1.0)) if bridge.size and forehead.size else 0.0


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"
