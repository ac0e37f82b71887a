"""Photo checker fixtures: the labelled sample photos and crafted images made on the fly."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rules.photo

PHOTOS = Path(os.environ.get("COLLECTOR_SHARED_PHOTOS",
                             Path(__file__).resolve().parents[2] / ".." / "shared" / "photos"))
COMPLIANT = "webmorph_021_03_blue_ok.jpg"


def load_labels() -> list[dict]:
    path = PHOTOS / "labels.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


@pytest.fixture(scope="session", autouse=True)
def photo_models():
    """Load the mediapipe models once for the whole session."""
    rules.photo.warm_up()


@pytest.fixture(scope="session")
def photos() -> Path:
    if not (PHOTOS / "labels.json").exists():
        pytest.skip(f"labelled photos not found at {PHOTOS} (set COLLECTOR_SHARED_PHOTOS)")
    return PHOTOS


@pytest.fixture(scope="session")
def compliant(photos) -> Image.Image:
    """A compliant 480x640 photo, decoded, for deriving crafted cases from."""
    with Image.open(photos / COMPLIANT) as im:
        return im.convert("RGB")


@pytest.fixture(scope="session")
def read(photos):
    return lambda name: (photos / name).read_bytes()


def jpeg(im: Image.Image, quality: int = 95, **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=quality, **kwargs)
    return buffer.getvalue()


def png(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


def array(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.uint8).copy()


def rules_of(report) -> list[str]:
    return [f.rule for f in report.failures]
