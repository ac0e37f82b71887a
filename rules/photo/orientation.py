"""A picture lying on its side or upside down (the phone wrote no EXIF rotation): named as such, and
the turn that shows it upright kept for the re-framing offer (rules/photo/reframe.py)."""
from __future__ import annotations

import numpy as np

from .context import Photo
from .report import Finding, finding

# np.rot90 turns counter-clockwise: k quarter turns that make the picture upright.
_TURNS = {1: "sideways", 2: "upside_down", 3: "sideways"}


def upright_turns(photo: Photo) -> int:
    """0 when a face is found as the picture stands (or none in any orientation), else the number of
    counter-clockwise quarter turns that show a face upright."""
    if "upright_turns" not in photo.cache:
        photo.cache["upright_turns"] = _find_turns(photo)
    return photo.cache["upright_turns"]


def _find_turns(photo: Photo) -> int:
    a = photo.analysis
    if a.faces and a.meshes:
        return _turns_from_roll(a.meshes[0])
    if a.faces:
        return 0
    # No face the detector believes in (the mesh alone finds faces in an upside-down head): try the
    # picture's other orientations with the detector.
    from .landmarks import detect_faces

    for k in (2, 1, 3):
        if detect_faces(np.ascontiguousarray(np.rot90(photo.rgb, k)), photo.thresholds):
            return k
    return 0


def _turns_from_roll(mesh: np.ndarray) -> int:
    """A face lying on its side: the eye line is near vertical (roll ±90°)."""
    from . import measure as m

    right, left = mesh[m.RIGHT_EYE[0]], mesh[m.LEFT_EYE[0]]
    roll = float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))
    if 45 < roll < 135:
        return 1
    if -135 < roll < -45:
        return 3
    if abs(roll) >= 135:
        return 2
    return 0


SUPERSEDED_BY_TURN = frozenset({"image.aspect"})  # a 3:4 photo on its side is 4:3


def only_orientation(failures: list) -> list:
    """A turned picture: the face, framing, background and quality rules judged it on its side, so
    their findings say nothing true; the file's own problems still stand."""
    if not any(f.rule == "image.orientation" for f in failures):
        return failures
    return [f for f in failures if f.rule == "image.orientation"
            or (f.rule.startswith(("file.", "image.")) and f.rule not in SUPERSEDED_BY_TURN)]


def orientation(photo: Photo) -> Finding | None:
    k = photo.record("image.upright_turns", upright_turns(photo))
    if not k:
        return None
    return finding("image.orientation", k * 90, 0, key=f"image.orientation.{_TURNS[k]}")


RULES = (orientation,)
