"""The re-framed photo offered to a candidate whose only problems are framing (head too large or
small, off centre, wrong aspect ratio) or a picture lying on its side: crop, turn by quarter turns
and scale to 480×640, nothing else. The face's pixels are only resampled, never edited.

Offered only when the crop stays inside the photo, keeps at least the output's pixels (no upscaling),
and the result passes every check itself."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

from PIL import Image, ImageOps

from .report import Report

FRAMING_RULES = frozenset({"head.size", "head.position", "image.aspect"})
ORIENTATION_RULE = "image.orientation"
OUTPUT_SIZE = (480, 640)
# Where the head goes, well inside the rules' limits (head 42-70 % of the height, hair top 4-25 % down):
# its height 50-66 % of the picture, the hair's top 7-20 % down, 12 % when there is room.
HEAD_SHARE_RANGE = (0.50, 0.66)
TOP_SHARE_RANGE = (0.07, 0.20)
TOP_SHARE = 0.12
# A crop may be enlarged this much at most to reach 480×640 (more would be visibly soft).
MAX_UPSCALE = 1.5
JPEG_QUALITY = 95
# A large JPEG is decoded reduced (libjpeg's 1/2..1/8) to at most this many pixels: plenty for 480×640,
# and a 60 MP upload costs no more memory here than the checker allowed it.
DECODE_PIXELS = 16_000_000


@dataclass(frozen=True)
class Reframed:
    data: bytes  # the 480×640 JPEG
    report: Report  # its own check: passed
    turns: int  # counter-clockwise quarter turns applied
    crop: tuple[int, int, int, int]  # in the upright original's pixels


def can_reframe(report: Report) -> bool:
    rules = set(report.rules)
    return bool(rules) and rules <= FRAMING_RULES | {ORIENTATION_RULE}


def offer(data: bytes, report: Report, check: Callable[[bytes], Report]) -> Reframed | None:
    """The re-framed photo, or None when it is not only a framing problem or cannot be fixed by a crop."""
    if not can_reframe(report):
        return None
    turns = int(report.metrics.get("image.upright_turns") or 0)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > DECODE_PIXELS:
                f = math.sqrt(DECODE_PIXELS / (im.width * im.height)) / 2  # draft keeps at least this size
                im.draft("RGB", (int(im.width * f) + 1, int(im.height * f) + 1))
            upright = ImageOps.exif_transpose(im).convert("RGB")
    except Exception:  # noqa: BLE001 - the checker already decoded it; anything odd means no offer
        return None
    if turns:
        upright = upright.rotate(90 * turns, expand=True)
        report = check(_jpeg(upright))
        if report.verdict == "pass":
            box = _whole_as_3x4(upright)
            return _made(upright, box, turns, check) if box else None
        if not can_reframe(report) or ORIENTATION_RULE in report.rules:
            return None
    box = crop_box(report, upright.size)
    return _made(upright, box, turns, check) if box else None


def crop_box(report: Report, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The 3:4 box (in the full-size upright picture) that frames the head as the rules want: the
    largest one inside the photo with the head centred, its height HEAD_SHARE_RANGE of the box and the
    hair's top TOP_SHARE_RANGE down; None when no such box fits or it would need enlarging by more
    than MAX_UPSCALE."""
    m = report.metrics
    needed = ("head.height_ratio", "head.center_offset_signed", "head.top_margin")
    if any(m.get(k) is None for k in needed):
        return None
    width, height = size
    head = m["head.height_ratio"] * height
    centre_x = (0.5 + m["head.center_offset_signed"]) * width
    crown_y = m["head.top_margin"] * height
    aspect = OUTPUT_SIZE[0] / OUTPUT_SIZE[1]
    room_x = 2 * min(centre_x, width - centre_x)
    crop_h = min(height, room_x / aspect, head / HEAD_SHARE_RANGE[0])
    if crop_h < head / HEAD_SHARE_RANGE[1] or crop_h * MAX_UPSCALE < OUTPUT_SIZE[1]:
        return None
    low = max(0.0, crown_y - TOP_SHARE_RANGE[1] * crop_h)
    high = min(height - crop_h, crown_y - TOP_SHARE_RANGE[0] * crop_h)
    if low > high:
        return None
    y0 = min(max(crown_y - TOP_SHARE * crop_h, low), high)
    crop_w = crop_h * aspect
    x0 = centre_x - crop_w / 2
    box = (int(round(x0)), int(round(y0)), int(round(x0 + crop_w)), int(round(y0 + crop_h)))
    if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
        return None
    return box


def _whole_as_3x4(image: Image.Image) -> tuple[int, int, int, int] | None:
    w, h = image.size
    if abs(w / h - 0.75) > 0.02 or w < OUTPUT_SIZE[0] or h < OUTPUT_SIZE[1]:
        return None
    return (0, 0, w, h)


def _made(upright: Image.Image, box: tuple[int, int, int, int], turns: int,
          check: Callable[[bytes], Report]) -> Reframed | None:
    out = upright.crop(box).resize(OUTPUT_SIZE, Image.Resampling.LANCZOS)
    data = _jpeg(out)
    report = check(data)
    if report.verdict != "pass":
        return None
    return Reframed(data, report, turns, box)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
