"""The per-photo context every rule reads: one decoded working copy, the thresholds, one face
analysis, derived images computed once, and the metrics dict rules record their measurements in."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from .decode import Decoded
from .measure import to_lab
from .thresholds import PhotoThresholds


@dataclass
class Photo:
    decoded: Decoded
    thresholds: PhotoThresholds
    metrics: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # measurements several rules share

    @property
    def rgb(self) -> np.ndarray:
        return self.decoded.rgb

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @cached_property
    def analysis(self):
        """Face boxes, face meshes and person mask, computed once, on first use."""
        from .landmarks import analyse

        return analyse(self.rgb, self.thresholds)

    @property
    def mesh(self) -> np.ndarray | None:
        """The main face's 478 landmarks in working-copy pixels, or None."""
        return self.analysis.landmarks

    @cached_property
    def lab(self) -> np.ndarray:
        return to_lab(self.rgb)

    @cached_property
    def gray(self) -> np.ndarray:
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def person(self) -> np.ndarray:
        """Boolean person mask (selfie segmentation); all False when the model gave none."""
        mask = self.analysis.person_mask
        if mask is None:
            return np.zeros(self.rgb.shape[:2], dtype=bool)
        return mask > 0.5

    @cached_property
    def background(self) -> np.ndarray:
        """Boolean background mask, kept well clear of the person's soft edge."""
        mask = self.analysis.person_mask
        if mask is None:
            return np.ones(self.rgb.shape[:2], dtype=bool)
        clear = (mask < 0.1).astype(np.uint8)
        k = max(3, int(round(self.width * 0.02)) | 1)
        return cv2.erode(clear, np.ones((k, k), np.uint8)).astype(bool)

    @property
    def monochrome(self) -> bool:
        """A black-and-white picture: colour rules have nothing to judge (image.color says so)."""
        return bool(self.cache.get("monochrome"))

    def record(self, name: str, value: Any) -> Any:
        if isinstance(value, (float, np.floating)):
            value = round(float(value), 4)
        elif isinstance(value, np.integer):
            value = int(value)
        self.metrics[name] = value
        return value
