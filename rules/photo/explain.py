"""Annotated picture for staff: landmarks, head box, background mask, shoulders and measured values."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import measure as m
from .background import clothing_region
from .checker import inspect
from .head import head_geometry
from .report import Report
from .thresholds import PhotoThresholds

_PANEL_WIDTH = 360
_GREEN, _RED, _YELLOW, _CYAN = (40, 200, 40), (230, 40, 40), (250, 210, 0), (0, 200, 230)


def explain(data: bytes, thresholds: PhotoThresholds | None = None) -> tuple[Report, bytes]:
    """Check the photo and return (report, PNG bytes of the annotated picture)."""
    report, photo = inspect(data, thresholds)
    if not photo.decoded.ok:
        canvas = Image.new("RGB", (480, 640), (60, 60, 60))
    else:
        canvas = Image.fromarray(_annotate(photo))
    out = _with_panel(canvas, report)
    buffer = io.BytesIO()
    out.save(buffer, "PNG")
    return report, buffer.getvalue()


def _annotate(photo) -> np.ndarray:
    img = photo.rgb.copy()
    if photo.analysis.person_mask is not None:
        tint = np.zeros_like(img)
        tint[photo.background] = (255, 0, 255)
        img = cv2.addWeighted(img, 1.0, tint, 0.25, 0)
    region = clothing_region(photo) if photo.mesh is not None else None
    if region is not None:
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, contours, -1, _YELLOW, 1)
    for box in photo.analysis.faces:
        cv2.rectangle(img, (int(box.x), int(box.y)), (int(box.x + box.w), int(box.y + box.h)), _CYAN, 1)
    for mesh in photo.analysis.meshes:
        for x, y, _ in mesh[::3]:
            cv2.circle(img, (int(x), int(y)), 1, _GREEN, -1)
    if photo.mesh is not None:
        _draw_features(img, photo.mesh)
    geo = head_geometry(photo)
    if geo is not None:
        half = (geo.chin_y - geo.crown_y) * 0.38
        cv2.rectangle(img, (int(geo.centre_x - half), int(geo.crown_y)), (int(geo.centre_x + half), int(geo.chin_y)), _RED, 2)
        cv2.line(img, (0, int(geo.eye_y)), (img.shape[1], int(geo.eye_y)), _RED, 1)
    cv2.line(img, (img.shape[1] // 2, 0), (img.shape[1] // 2, img.shape[0]), (255, 255, 255), 1)
    return img


def _draw_features(img: np.ndarray, mesh: np.ndarray) -> None:
    for ring in (m.RIGHT_EYE_RING, m.LEFT_EYE_RING, m.INNER_LIPS, m.FACE_OVAL):
        pts = np.round(mesh[list(ring), :2]).astype(np.int32)
        cv2.polylines(img, [pts], True, _YELLOW, 1)


def _with_panel(picture: Image.Image, report: Report) -> Image.Image:
    out = Image.new("RGB", (picture.width + _PANEL_WIDTH, max(picture.height, 640)), (255, 255, 255))
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    lines = [f"verdict: {report.verdict}", ""]
    lines += [f"FAIL {f.rule}: {f.value} (limit {f.threshold})" for f in report.failures]
    lines += ["", "hints: " + (", ".join(h.code for h in report.hints) or "-"), "", "metrics:"]
    lines += [f"  {k} = {v}" for k, v in report.metrics.items()]
    lines += ["", "legend: magenta=background, yellow=shoulders/features,", "  red=head box + eye line, cyan=detector box"]
    y = 8
    for line in lines:
        colour = _RED if line.startswith("FAIL") else (0, 0, 0)
        draw.text((picture.width + 8, y), _ascii(line), fill=colour, font=font)
        y += 14
    return out


def _ascii(text: str) -> str:
    """The built-in bitmap font has Latin glyphs only."""
    return text.replace("×", "x").encode("ascii", "replace").decode("ascii")
