"""Every number the photo checker compares against, with its default.

The app's TOML config has a `[photo]` section whose keys are exactly these field names.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class PhotoThresholds:
    # --- file --------------------------------------------------------------------------------
    min_file_bytes: int = 30 * 1024
    max_file_bytes: int = 20 * 1024 * 1024
    # Decoded pixel cap (width x height); larger images are refused before decoding.
    max_pixels: int = 64_000_000
    # Pixels decoded at full size (4 bytes each) for formats that cannot be reduced while decoding
    # (all but JPEG, which libjpeg decodes at 1/8 size): larger ones are refused, so that one photo
    # costs well under 100 MB whatever its header says.
    max_decode_pixels: int = 16_000_000

    # --- image -------------------------------------------------------------------------------
    min_width: int = 480
    min_height: int = 640
    # Width / height of a 3:4 portrait, and the accepted absolute deviation from it.
    aspect_ratio: float = 0.75
    aspect_tolerance: float = 0.02
    # Mean chroma (CIELAB, 0-~130) below which an RGB file is really a black-and-white photo.
    min_mean_chroma: float = 3.0
    # Median chroma of the face's bare skin below which a nearly colourless photo is black-and-white
    # (colour photos' skin: 8 and up on the labelled set; black-and-white: under 1).
    min_skin_chroma: float = 4.0
    # Long side of the downscaled copy every measurement is made on.
    work_max_side: int = 640

    # --- face --------------------------------------------------------------------------------
    # Faces smaller than this fraction of the image height are ignored when counting.
    min_face_height_ratio: float = 0.08
    # Head pose limits in degrees: turned (yaw), nodding (pitch), tilted (roll).
    max_yaw_degrees: float = 12.0
    max_pitch_degrees: float = 18.0
    # The rigid landmarks' plane angle (depth against height) of a level, frontal face: the middle of
    # the compliant labelled photos (0.2 to 14.4).
    pitch_neutral_degrees: float = 7.3
    max_roll_degrees: float = 8.0
    # Eye aspect ratio (lid gap / eye width) below which an eye counts as closed.
    min_eye_aspect_ratio: float = 0.13
    # Inner-lip gap / (eye midpoint to chin) above which the mouth counts as open.
    max_mouth_open_ratio: float = 0.03
    # Teeth: share of the inner-lip area that is bright and colourless, judged once the lips part
    # by at least a third of max_mouth_open_ratio.
    max_teeth_fraction: float = 0.3
    # Tinted lenses: lightness (L*) of the skin below the lower lids relative to the cheeks
    # (compliant labelled photos 0.75 and up, sunglasses 0.07).
    min_under_eye_lightness: float = 0.45

    # --- head --------------------------------------------------------------------------------
    # Head height (hair top to chin) as a fraction of the image height.
    min_head_ratio: float = 0.42
    max_head_ratio: float = 0.70
    # Horizontal offset of the head centre from the image centre, as a fraction of the width.
    max_center_offset: float = 0.10
    # Room above the hair, as a fraction of the image height (national spec 50-110 px of 640).
    min_top_margin: float = 0.04
    max_top_margin: float = 0.25
    # Eye line height from the top, as a fraction of the image height (national spec 200-300 px of 640).
    min_eye_line: float = 0.28
    max_eye_line: float = 0.52

    # --- background --------------------------------------------------------------------------
    # Maximum CIELAB distance (delta E 2000) of the background from its nearest reference colour.
    max_background_delta_e: float = 14.0
    # Background uniformity: largest delta E between background cells and the background median.
    max_background_cell_delta_e: float = 6.0
    # Fraction of the background cells allowed to deviate (objects, shadows).
    max_background_bad_cell_fraction: float = 0.03
    # Smooth ramp: delta E between the top and bottom (or left and right) thirds of the background.
    max_background_gradient_delta_e: float = 5.0
    # OFIQ-style mean gradient (grey levels per pixel) of the background: texture, objects.
    max_background_gradient: float = 3.0
    # Clothing vs background: a clothing pixel closer than this delta E to the background blends in;
    # the rule fails when more than max_clothing_blend_fraction of the clothing area blends in.
    min_clothing_delta_e: float = 10.0
    max_clothing_blend_fraction: float = 0.4

    # --- quality -----------------------------------------------------------------------------
    # Laplacian variance of the face crop resized to 256 px wide.
    min_sharpness: float = 15.0
    # Fractions of bare-skin pixels (no eyes, brows, beard) near black (grey < 20) / near white (grey > 250).
    max_dark_fraction: float = 0.02
    max_bright_fraction: float = 0.10
    # Face mean lightness (L*, 0-100) bounds; the low one is a floor, as dark skin is not a defect.
    min_face_lightness: float = 15.0
    max_face_lightness: float = 88.0
    # A background of an allowed colour (within max_dim_background_delta_e of one at its own lightness)
    # darker than this L* means the whole photo is under-exposed (allowed backgrounds are L* 76 and up).
    min_background_lightness: float = 65.0
    max_dim_background_delta_e: float = 12.5
    # ... and the face's skin darker than this L* (a lit face before a dark scene is not under-exposed).
    max_dim_face_lightness: float = 50.0
    # Cheek colour in CIELAB: a* (red-green) and b* (yellow-blue) accepted ranges.
    min_cheek_a: float = 2.0
    max_cheek_a: float = 35.0
    min_cheek_b: float = 0.0
    max_cheek_b: float = 40.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "PhotoThresholds":
        """Build from a config mapping; unknown keys and wrong types are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown photo threshold(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(fields))}"
            )
        converted = {name: _coerce(name, fields[name].type, value) for name, value in values.items()}
        return cls(**converted)


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    kind = int if type_name in (int, "int") else float
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"photo threshold {name} must be a number, got {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError(f"photo threshold {name} must be an integer, got {value!r}")
        return int(value)
    return float(value)
