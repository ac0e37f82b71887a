"""Shared measurements: colour conversion, colour difference, face geometry and regions.

Landmark indices are those of mediapipe's 478-point face mesh (refine_landmarks=True).
"""
from __future__ import annotations

import cv2
import numpy as np

RIGHT_EYE = (33, 160, 158, 133, 153, 144)  # outer, upper, upper, inner, lower, lower (subject's right)
LEFT_EYE = (263, 387, 385, 362, 380, 373)
RIGHT_EYE_RING = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE_RING = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_IRIS, LEFT_IRIS = 468, 473
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_CORNERS = (61, 291)
CHIN, FOREHEAD, NOSE_TIP, NOSE_BRIDGE = 152, 10, 1, 168
FACE_SIDES = (234, 454)  # subject's right and left cheek edges
CHEEKS = (205, 425)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB to float32 CIELAB (L 0-100, a/b about -128..127)."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def rgb_to_lab_color(rgb: tuple[int, int, int]) -> np.ndarray:
    return to_lab(np.array([[rgb]], dtype=np.uint8))[0, 0]


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference, broadcasting over leading axes (last axis is L, a, b)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dl, dc = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0, dh)
    dH = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_bar, c_bar_p = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) > 180, (h_sum + 360) / 2, h_sum / 2)
    h_bar = np.where(c1p * c2p == 0, h_sum, h_bar)
    t = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    sl = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    sc = 1 + 0.045 * c_bar_p
    sh = 1 + 0.015 * c_bar_p * t
    rt = (-2 * np.sqrt(c_bar_p**7 / (c_bar_p**7 + 25.0**7))
          * np.sin(np.radians(60 * np.exp(-(((h_bar - 275) / 25) ** 2)))))
    return np.sqrt((dl / sl) ** 2 + (dc / sc) ** 2 + (dH / sh) ** 2 + rt * (dc / sc) * (dH / sh))


def polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points[:, :2]).astype(np.int32)], 1)
    return mask.astype(bool)


def scaled_polygon(points: np.ndarray, factor: float) -> np.ndarray:
    centre = points[:, :2].mean(axis=0)
    return centre + (points[:, :2] - centre) * factor


def dist(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.hypot(*(p[:2] - q[:2])))


def eye_aspect_ratio(mesh: np.ndarray, eye: tuple[int, ...]) -> float:
    outer, up1, up2, inner, low1, low2 = (mesh[i] for i in eye)
    width = dist(outer, inner)
    return (dist(up1, low2) + dist(up2, low1)) / (2 * width) if width else 0.0


def face_box(mesh: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) of the mesh, clipped to the image."""
    h, w = shape[:2]
    x0, y0 = np.floor(mesh[:, :2].min(axis=0)).astype(int)
    x1, y1 = np.ceil(mesh[:, :2].max(axis=0)).astype(int)
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def patch(values: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Pixels of a square patch around `centre`, flattened to (n, channels)."""
    h, w = values.shape[:2]
    r = max(1, int(round(radius)))
    x, y = int(round(centre[0])), int(round(centre[1]))
    block = values[max(0, y - r):min(h, y + r + 1), max(0, x - r):min(w, x + r + 1)]
    return block.reshape(-1, values.shape[2]) if values.ndim == 3 else block.reshape(-1)
