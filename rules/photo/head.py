"""Framing rules: head height (crown to chin) and head position in the picture."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import measure as m
from .context import Photo
from .report import Finding, finding

# A detector box spans roughly brows to chin; the whole head is about this much taller.
_BOX_TO_HEAD = 1.5


@dataclass(frozen=True)
class HeadGeometry:
    crown_y: float
    chin_y: float
    centre_x: float
    eye_y: float

    def height(self) -> float:
        return self.chin_y - self.crown_y


def head_geometry(photo: Photo) -> HeadGeometry | None:
    if "head" not in photo.cache:
        photo.cache["head"] = _measure_head(photo)
    return photo.cache["head"]


def _measure_head(photo: Photo) -> HeadGeometry | None:
    mesh, a = photo.mesh, photo.analysis
    if mesh is not None:
        chin_y = float(mesh[m.CHIN][1])
        forehead_y = float(mesh[m.FOREHEAD][1])
        x0, x1 = float(mesh[m.FACE_SIDES[0]][0]), float(mesh[m.FACE_SIDES[1]][0])
        eye_y = float((mesh[m.RIGHT_IRIS][1] + mesh[m.LEFT_IRIS][1]) / 2)
        crown = _crown_from_mask(photo.person, x0, x1, forehead_y)
        if crown is None:
            crown = forehead_y - 0.25 * (chin_y - forehead_y)
        return HeadGeometry(crown, chin_y, (x0 + x1) / 2, eye_y)
    if len(a.faces) == 1:
        box = a.faces[0]
        chin_y = box.y + box.h
        return HeadGeometry(chin_y - _BOX_TO_HEAD * box.h, chin_y, box.x + box.w / 2, box.y + 0.35 * box.h)
    return None


def _crown_from_mask(person: np.ndarray, x0: float, x1: float, forehead_y: float) -> float | None:
    """Topmost row of the person mask over the middle of the face, i.e. the top of the hair."""
    w = x1 - x0
    c0, c1 = int(max(0, x0 + 0.2 * w)), int(min(person.shape[1], x1 - 0.2 * w))
    limit = int(max(0, min(person.shape[0], forehead_y)))
    if c1 <= c0 or limit <= 0:
        return None
    band = person[:limit, c0:c1]
    has = band.any(axis=0)
    if has.mean() < 0.5:
        return None
    tops = band.argmax(axis=0)[has]
    return float(np.percentile(tops, 10))


def size(photo: Photo) -> Finding | None:
    if _many(photo):
        return None
    geo, t = head_geometry(photo), photo.thresholds
    if geo is None:
        return None
    ratio = photo.record("head.height_ratio", geo.height() / photo.height)
    allowed = {"low": _pct(t.min_head_ratio), "high": _pct(t.max_head_ratio)}
    if ratio < t.min_head_ratio:
        return finding("head.size", ratio, t.min_head_ratio, shown_value=_pct(ratio), shown_threshold=_pct(t.min_head_ratio),
                       measure="head.height_ratio", **allowed)
    if ratio > t.max_head_ratio:
        return finding("head.size", ratio, t.max_head_ratio, key="head.size.large",
                       shown_value=_pct(ratio), shown_threshold=_pct(t.max_head_ratio), measure="head.height_ratio",
                       **allowed)
    return None


def position(photo: Photo) -> Finding | None:
    if _many(photo):
        return None
    geo, t = head_geometry(photo), photo.thresholds
    if geo is None:
        return None
    signed = photo.record("head.center_offset_signed", (geo.centre_x - photo.width / 2) / photo.width)
    offset = photo.record("head.center_offset", abs(signed))
    top = photo.record("head.top_margin", geo.crown_y / photo.height)
    eyes = photo.record("head.eye_line", geo.eye_y / photo.height)
    if offset > t.max_center_offset:
        return finding("head.position", offset, t.max_center_offset, shown_value=_pct(offset), shown_threshold=_pct(t.max_center_offset),
                       measure="head.center_offset")
    if not t.min_head_ratio <= geo.height() / photo.height <= t.max_head_ratio:
        return None  # the head's size sets the margins above and below it: head.size says what to do
    if top < t.min_top_margin:
        return finding("head.position", top, t.min_top_margin, key="head.position.top_small", measure="head.top_margin")
    if top > t.max_top_margin:
        return finding("head.position", top, t.max_top_margin, key="head.position.top_large", measure="head.top_margin")
    if not t.min_eye_line <= eyes <= t.max_eye_line:
        limit = t.min_eye_line if eyes < t.min_eye_line else t.max_eye_line
        key = "head.position.top_large" if eyes > t.max_eye_line else "head.position.top_small"
        return finding("head.position", eyes, limit, key=key, measure="head.eye_line")
    return None


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _many(photo: Photo) -> bool:
    return photo.metrics.get("face.count", 1) != 1


RULES = (size, position)
