"""Face rules: how many faces, pose, eyes, mouth and lenses, all from the one face mesh."""
from __future__ import annotations

import math

import numpy as np

from . import measure as m
from .context import Photo
from .report import Finding, finding

_DIM_CHEEK_L = 40.0  # cheek L* below which lens darkness is not judged in a dark photo


def face_count(photo: Photo) -> Finding | None:
    a = photo.analysis
    count = photo.record("face.count", max(len(a.faces), len(a.meshes)))
    if count == 0:
        return finding("face.count", 0, 1, key="face.count.none")
    if count > 1:
        return finding("face.count", count, 1, key="face.count.many")
    return None


def pose_angles(mesh: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the mesh's 3-D landmarks; 0 is frontal."""
    right, left = mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]]
    yaw = math.degrees(math.atan2(left[2] - right[2], left[0] - right[0]))
    top, chin = mesh[m.FOREHEAD], mesh[m.CHIN]
    pitch = math.degrees(math.atan2(chin[2] - top[2], chin[1] - top[1]))
    r_eye, l_eye = mesh[m.RIGHT_EYE[0]], mesh[m.LEFT_EYE[0]]
    roll = math.degrees(math.atan2(l_eye[1] - r_eye[1], l_eye[0] - r_eye[0]))
    return yaw, pitch, roll


def pose(photo: Photo) -> Finding | None:
    mesh, t = photo.mesh, photo.thresholds
    if mesh is None or _many(photo):
        return None
    yaw, pitch, roll = pose_angles(mesh)
    yaw, pitch, roll = (photo.record(f"face.{n}", v) for n, v in (("yaw", yaw), ("pitch", pitch), ("roll", roll)))
    pitch_off = pitch - t.pitch_neutral_degrees
    checks = (("yaw", abs(yaw), t.max_yaw_degrees), ("roll", abs(roll), t.max_roll_degrees),
              ("pitch", abs(pitch_off), t.max_pitch_degrees))
    worst = max(checks, key=lambda c: c[1] / c[2])
    name, value, limit = worst
    if value > limit:
        return finding("face.pose", round(value, 1), limit, key=f"face.pose.{name}",
                       shown_value=f"{value:.0f}", shown_threshold=f"{limit:.0f}")
    return None


def eyes(photo: Photo) -> Finding | None:
    mesh, t = photo.mesh, photo.thresholds
    if mesh is None or _many(photo):
        return None
    right = photo.record("face.ear_right", m.eye_aspect_ratio(mesh, m.RIGHT_EYE))
    left = photo.record("face.ear_left", m.eye_aspect_ratio(mesh, m.LEFT_EYE))
    smaller = min(right, left)
    if smaller < t.min_eye_aspect_ratio:
        return finding("face.eyes", smaller, t.min_eye_aspect_ratio)
    return None


def mouth_open_ratio(mesh: np.ndarray) -> float:
    gap = m.dist(mesh[m.UPPER_INNER_LIP], mesh[m.LOWER_INNER_LIP])
    eye_mid = (mesh[m.RIGHT_EYE[0]] + mesh[m.LEFT_EYE[0]]) / 2
    span = m.dist(eye_mid, mesh[m.CHIN])
    return gap / span if span else 0.0


def teeth_fraction(photo: Photo) -> float:
    """Share of the inner-lip area that is bright and nearly colourless (teeth)."""
    inner = m.polygon_mask(photo.rgb.shape, photo.mesh[list(m.INNER_LIPS)])
    if inner.sum() < 4:
        return 0.0
    lab = photo.lab[inner]
    face_l = float(np.median(photo.lab[m.polygon_mask(photo.rgb.shape, photo.mesh[list(m.FACE_OVAL)])][:, 0]))
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    teeth = (lab[:, 0] > max(45.0, face_l * 0.9)) & (chroma < 22)
    return float(teeth.mean())


def mouth(photo: Photo) -> Finding | None:
    mesh, t = photo.mesh, photo.thresholds
    if mesh is None or _many(photo):
        return None
    ratio = photo.record("face.mouth_open", mouth_open_ratio(mesh))
    if ratio > t.max_mouth_open_ratio:
        return finding("face.mouth", ratio, t.max_mouth_open_ratio)
    if ratio < t.max_mouth_open_ratio / 3:
        return None  # lips together: the inner-lip polygon is a sliver of lip pixels
    teeth = photo.record("face.teeth", teeth_fraction(photo))
    if teeth > t.max_teeth_fraction:
        return finding("face.mouth", teeth, t.max_teeth_fraction)
    return None


def lens_lightness(photo: Photo) -> tuple[float, float]:
    """(eye-area L* / cheek L*, cheek L*): dark lenses make the ratio small."""
    mesh, lab = photo.mesh, photo.lab
    eye_l = []
    for ring in (m.RIGHT_EYE_RING, m.LEFT_EYE_RING):
        area = m.polygon_mask(lab.shape, m.scaled_polygon(mesh[list(ring)], 1.6))
        if area.any():
            eye_l.append(float(np.median(lab[area][:, 0])))
    radius = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]]) * 0.05
    cheek = np.concatenate([m.patch(lab, mesh[i], radius) for i in m.CHEEKS])
    cheek_l = float(np.median(cheek[:, 0])) if cheek.size else 0.0
    if not eye_l or cheek_l <= 1:
        return 1.0, cheek_l
    return min(eye_l) / cheek_l, cheek_l


def glasses(photo: Photo) -> Finding | None:
    mesh, t = photo.mesh, photo.thresholds
    if mesh is None or _many(photo):
        return None
    ratio, cheek_l = lens_lightness(photo)
    ratio = photo.record("face.eye_to_cheek_lightness", ratio)
    if ratio >= t.min_eye_to_cheek_lightness or _underexposed(photo, cheek_l):
        return None
    return finding("face.glasses", ratio, t.min_eye_to_cheek_lightness)


def _underexposed(photo: Photo, cheek_l: float) -> bool:
    """In a dark picture (dim cheeks, crushed shadows) every eye socket looks like a dark lens;
    quality.exposure speaks then."""
    from .quality import exposure_problem

    return cheek_l < _DIM_CHEEK_L and exposure_problem(photo) == "dark"


def _many(photo: Photo) -> bool:
    """With several people in the picture, per-face rules would only add noise."""
    return photo.metrics.get("face.count", 1) > 1


RULES = (face_count, pose, eyes, mouth, glasses)
