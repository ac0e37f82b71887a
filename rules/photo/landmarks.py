"""The one shared analysis per photo: mediapipe face detection, face mesh and person mask.

Models are loaded lazily once per process (or eagerly by `warm_up`). mediapipe graphs are not
safe to call from several threads at once, so every call goes through one lock.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from .thresholds import PhotoThresholds

# Keep mediapipe's C++ logging off stderr unless the operator asked for it.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_load_lock = threading.Lock()
_run_lock = threading.Lock()
_models: "_Models | None" = None


@dataclass
class _Models:
    detector: object
    mesh: object
    segmenter: object


@dataclass(frozen=True)
class FaceBox:
    x: float
    y: float
    w: float
    h: float
    score: float


@dataclass
class Analysis:
    width: int
    height: int
    faces: list[FaceBox] = field(default_factory=list)  # detector boxes, pixels, best first
    meshes: list[np.ndarray] = field(default_factory=list)  # each (478, 3) pixels, largest first
    person_mask: np.ndarray | None = None  # HxW float32 in [0, 1]

    @property
    def landmarks(self) -> np.ndarray | None:
        """The main (largest) face's mesh, or None when no face was found."""
        return self.meshes[0] if self.meshes else None


def warm_up() -> None:
    """Load the models now (the app calls this in a background thread at start)."""
    models = _get_models()
    blank = np.full((64, 48, 3), 200, dtype=np.uint8)
    with _run_lock:
        models.detector.process(blank)
        models.segmenter.process(blank)


def _get_models() -> _Models:
    global _models
    if _models is None:
        with _load_lock:
            if _models is None:
                _models = _load_models()
    return _models


def _load_models() -> _Models:
    import mediapipe as mp

    solutions = mp.solutions
    return _Models(
        detector=solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5),
        mesh=solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=4, refine_landmarks=True, min_detection_confidence=0.5
        ),
        segmenter=solutions.selfie_segmentation.SelfieSegmentation(model_selection=0),
    )


def analyse(rgb: np.ndarray, thresholds: PhotoThresholds) -> Analysis:
    models = _get_models()
    h, w = rgb.shape[:2]
    rgb = np.ascontiguousarray(rgb)
    with _run_lock:
        detected = models.detector.process(rgb)
        meshed = models.mesh.process(rgb)
        segmented = models.segmenter.process(rgb)
    analysis = Analysis(width=w, height=h)
    analysis.faces = _boxes(detected, w, h, thresholds)
    analysis.meshes = _meshes(meshed, w, h, thresholds)
    if segmented.segmentation_mask is not None:
        analysis.person_mask = np.asarray(segmented.segmentation_mask, dtype=np.float32)
    return analysis


def _boxes(result, w: int, h: int, t: PhotoThresholds) -> list[FaceBox]:
    boxes = []
    for det in result.detections or []:
        rel = det.location_data.relative_bounding_box
        box = FaceBox(rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h, float(det.score[0]))
        if box.h >= t.min_face_height_ratio * h:
            boxes.append(box)
    return sorted(boxes, key=lambda b: -b.w * b.h)


def _meshes(result, w: int, h: int, t: PhotoThresholds) -> list[np.ndarray]:
    meshes = []
    for face in result.multi_face_landmarks or []:
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float32)
        if np.ptp(pts[:, 1]) >= t.min_face_height_ratio * h:  # a face on a poster far behind is not a person
            meshes.append(pts)
    return sorted(meshes, key=lambda m: -np.ptp(m[:, 1]) * np.ptp(m[:, 0]))


def detect_faces(rgb: np.ndarray, thresholds: PhotoThresholds) -> list[FaceBox]:
    """The face detector alone (no mesh, no mask): cheap enough to try a picture's other orientations."""
    models = _get_models()
    h, w = rgb.shape[:2]
    with _run_lock:
        detected = models.detector.process(np.ascontiguousarray(rgb))
    return _boxes(detected, w, h, thresholds)
