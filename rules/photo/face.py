"""Face rules: how many faces, pose, eyes, mouth and lenses, all from the one face mesh."""
from __future__ import annotations

import math

import numpy as np

from . import measure as m
from .context import Photo
from .orientation import upright_turns
from .report import Finding, finding


def face_count(photo: Photo) -> Finding | None:
    a = photo.analysis
    count = photo.record("face.count", max(len(a.faces), len(a.meshes)))
    if count == 0 and upright_turns(photo):
        return None  # the face is there, the picture is turned: image.orientation says so
    if count == 0:
        return finding("face.count", 0, 1, key="face.count.none")
    if count > 1:
        return finding("face.count", count, 1, key="face.count.many")
    return None


# Landmarks on the skull rather than on soft tissue (forehead, brow ridge, nose bridge, eye corners,
# cheekbones, jaw, chin): the plane through them turns with the head, not with an expression.
RIGID = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 263, 362, 234, 454, 152, 199, 175, 61, 291,
         70, 300, 105, 334, 127, 356, 132, 361, 58, 288)


def face_plane_pitch(mesh: np.ndarray) -> float:
    """Nod in degrees from the least-squares plane through the rigid landmarks (depth against height).

    The forehead-to-chin line alone carries the mesh's depth noise of two points and the shape of one
    chin: on the compliant labelled photos it spread over 23 degrees, this plane over 14."""
    p = mesh[list(RIGID)].astype(np.float64)
    design = np.column_stack([p[:, 0], p[:, 1], np.ones(len(p))])
    coef, *_ = np.linalg.lstsq(design, p[:, 2], rcond=None)
    return math.degrees(math.atan(coef[1]))


def pose_angles(mesh: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the mesh's 3-D landmarks; 0 is frontal (pitch: see
    pitch_neutral_degrees)."""
    right, left = mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]]
    yaw = math.degrees(math.atan2(left[2] - right[2], left[0] - right[0]))
    pitch = face_plane_pitch(mesh)
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
                       shown_value=f"{value:.0f}", shown_threshold=f"{limit:.0f}", measure=f"face.{name}")
    return None


def eyes(photo: Photo) -> Finding | None:
    mesh, t = photo.mesh, photo.thresholds
    if mesh is None or _many(photo):
        return None
    right = photo.record("face.ear_right", m.eye_aspect_ratio(mesh, m.RIGHT_EYE))
    left = photo.record("face.ear_left", m.eye_aspect_ratio(mesh, m.LEFT_EYE))
    smaller = min(right, left)
    if smaller < t.min_eye_aspect_ratio:
        return finding("face.eyes", smaller, t.min_eye_aspect_ratio, measure="face.ear")
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
        return finding("face.mouth", ratio, t.max_mouth_open_ratio, measure="face.mouth_open")
    if ratio < t.max_mouth_open_ratio / 3:
        return None  # lips together: the inner-lip polygon is a sliver of lip pixels
    teeth = photo.record("face.teeth", teeth_fraction(photo))
    if teeth > t.max_teeth_fraction:
        return finding("face.mouth", teeth, t.max_teeth_fraction, measure="face.teeth")
    return None


# Lower lids, outer corner to inner corner (subject's right, then left).
RIGHT_LOWER_LID = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_LOWER_LID = (263, 249, 390, 373, 374, 380, 381, 382, 362)


def under_eye_lightness(photo: Photo) -> float:
    """Skin just below the lower lids (L*) relative to the cheeks, the darker side.

    A tinted lens covers that skin; brows, lashes, deep-set eyes and the shadow under the brow ridge do
    not reach it, so a dark-browed face with no glasses stays near 1 (compliant photos: 0.75 to 1.1)
    while sunglasses fall below 0.2. Lower lid down to 0.15..0.4 of the eye's width."""
    mesh, lab = photo.mesh, photo.lab
    bands = []
    for ring, lid in ((m.RIGHT_EYE_RING, RIGHT_LOWER_LID), (m.LEFT_EYE_RING, LEFT_LOWER_LID)):
        eye_w = m.dist(mesh[ring[0]], mesh[ring[8]])
        pts = mesh[list(lid)][:, :2]
        band = m.polygon_mask(lab.shape, np.concatenate([pts + [0, 0.15 * eye_w], (pts + [0, 0.4 * eye_w])[::-1]]))
        if band.any():
            bands.append(float(np.median(lab[band][:, 0])))
    radius = m.dist(mesh[m.FACE_SIDES[0]], mesh[m.FACE_SIDES[1]]) * 0.05
    cheek = np.concatenate([m.patch(lab, mesh[i], radius) for i in m.CHEEKS])
    cheek_l = float(np.median(cheek[:, 0])) if cheek.size else 0.0
    if not bands or cheek_l <= 1:
        return 1.0
    return min(bands) / cheek_l


def glasses(photo: Photo) -> Finding | None:
    mesh, t = photo.mesh, photo.thresholds
    if mesh is None or _many(photo):
        return None
    ratio = photo.record("face.under_eye_lightness", under_eye_lightness(photo))
    if ratio >= t.min_under_eye_lightness:
        return None
    return finding("face.glasses", ratio, t.min_under_eye_lightness, measure="face.under_eye_lightness")


def _many(photo: Photo) -> bool:
    """With several people in the picture, per-face rules would only add noise."""
    return photo.metrics.get("face.count", 1) > 1


RULES = (face_count, pose, eyes, mouth, glasses)
