"""Safe decoding: sniff the real format, refuse decompression bombs, honour EXIF orientation and
produce one downscaled 8-bit RGB working copy that every measurement shares.

Memory is bounded by what is decoded at full size, not by the file: JPEG is decoded reduced (libjpeg's
1/2…1/8 scaling), other formats are decoded whole only up to `max_decode_pixels` and reduced before any
conversion, so a small file claiming 8000×8000 pixels is refused instead of costing half a gigabyte."""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .thresholds import PhotoThresholds

_EXIF_SOFTWARE = 0x0131
_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}
# EXIF orientation → the transpose that shows the picture upright (as ImageOps.exif_transpose does).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
# Modes Image.reduce averages correctly; the others (palette, 1-bit, 16-bit) are thinned by sampling.
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"}

# Only the formats a phone or camera plausibly sends are opened at all.
_OPENABLE = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO"]


@dataclass
class Decoded:
    size_bytes: int
    sniffed: str  # format named by the magic bytes ("JPEG", "PNG", "HEIC", "TEXT", "EMPTY", ...)
    format: str | None = None  # format Pillow decoded, None when not decoded
    width: int = 0  # full-size dimensions after EXIF orientation
    height: int = 0
    mode: str = ""  # Pillow mode of the file ("RGB", "L", "CMYK", "P", "I;16", ...)
    frames: int = 1
    exif_software: str = ""
    rgb: np.ndarray | None = None  # working copy, HxWx3 uint8
    scale: float = 1.0  # working-copy pixels per full-size pixel
    # why decoding was refused: empty, unknown, heic, corrupt, too_large (the header's pixels),
    # too_large_to_decode (more pixels than a format without reduced decoding may cost)
    problem: str | None = None
    notes: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rgb is not None


def sniff(data: bytes) -> str:
    """Name the format by its content, never by a file name."""
    if not data:
        return "EMPTY"
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "HEIC" if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1") else "ISOBMFF"
    if head.lstrip()[:5].lower() in (b"<?xml", b"<svg ") or head[:4] == b"%PDF":
        return "DOCUMENT"
    return "UNKNOWN"


def decode(data: bytes, thresholds: PhotoThresholds) -> Decoded:
    result = Decoded(size_bytes=len(data), sniffed=sniff(data))
    if result.sniffed == "EMPTY":
        result.problem = "empty"
        return result
    if result.sniffed == "HEIC":
        result.problem = "heic"
        return result
    # Refuse oversized images from the header alone, before Pillow allocates anything. (No
    # warnings.catch_warnings here: it changes process-wide state and check() runs in threads.)
    width, height = header_size(data, result.sniffed)
    if width * height > thresholds.max_pixels:
        result.width, result.height, result.problem = width, height, "too_large"
        return result
    try:
        _decode_into(result, data, thresholds)
    except Image.DecompressionBombError:
        result.problem = "too_large"
        result.rgb = None
        if not result.width:
            result.width, result.height = header_size(data, result.sniffed)
    except Exception:  # noqa: BLE001 - any decoder failure means "cannot open this file"
        result.problem = result.problem or ("corrupt" if result.format else "unknown")
        result.rgb = None
    return result


def _decode_into(result: Decoded, data: bytes, thresholds: PhotoThresholds) -> None:
    im = Image.open(io.BytesIO(data), formats=_OPENABLE)
    result.format = im.format
    result.mode = im.mode
    # Sized up before anything else reads the file: PNG's EXIF lookup alone decodes every pixel.
    result.width, result.height = im.size
    if im.size[0] * im.size[1] > thresholds.max_pixels:
        result.problem = "too_large"
        return
    if im.format != "JPEG" and im.size[0] * im.size[1] > thresholds.max_decode_pixels:
        result.problem = "too_large_to_decode"
        return
    result.frames = getattr(im, "n_frames", 1)
    result.exif_software, orientation = _read_exif(im)
    w, h = im.size
    if orientation in _ROTATED_ORIENTATIONS:
        w, h = h, w
    result.width, result.height = w, h
    scale = min(1.0, thresholds.work_max_side / max(w, h, 1))
    if im.format == "JPEG" and scale < 1.0:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 size: far less time and memory on phone photos.
        im.draft(None, (max(1, int(im.size[0] * scale)), max(1, int(im.size[1] * scale))))
    if im.size[0] * im.size[1] > thresholds.max_decode_pixels:
        result.problem = "too_large_to_decode"
        return
    im.load()
    im = _reduced(im, 2 * thresholds.work_max_side)
    if orientation in _UPRIGHT:
        im = im.transpose(_UPRIGHT[orientation])
    rgb = _to_rgb8(im)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS if rgb.width > target[0] * 2 else Image.Resampling.BILINEAR)
    result.rgb = np.asarray(rgb, dtype=np.uint8)
    result.scale = result.rgb.shape[1] / w


def _reduced(im: Image.Image, max_side: int) -> Image.Image:
    """A large decode shrunk by a whole factor to at most about twice `max_side`, before any mode
    conversion copies it; the final resize to the working size is then done on the small copy."""
    factor = max(im.size) // max(1, max_side)
    if factor < 2:
        return im
    if im.mode in _REDUCIBLE:
        return im.reduce(factor)
    return im.resize((max(1, im.size[0] // factor), max(1, im.size[1] // factor)), Image.Resampling.NEAREST)


def _read_exif(im: Image.Image) -> tuple[str, int]:
    """(Software, Orientation); a damaged EXIF block is ignored, not fatal."""
    try:
        exif = im.getexif()
        software = str(exif.get(_EXIF_SOFTWARE, "") or "").strip("\x00 ")
        orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001
        return "", 1
    return software, orientation


def _to_rgb8(im: Image.Image) -> Image.Image:
    """Any mode (16-bit, palette, CMYK, alpha) to 8-bit RGB; alpha is flattened onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.uint32 if im.mode == "I" else np.uint16).astype(np.float64)
        top = 65535.0 if im.mode != "I" or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr * 255.0 / top, 0, 255).astype(np.uint8))
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        im = Image.fromarray(np.clip(arr * 255.0 / top, 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im.convert("RGB")


def header_size(data: bytes, sniffed: str) -> tuple[int, int]:
    """Width and height from the header alone (for files too large to open); (0, 0) if unknown."""
    try:
        if sniffed == "PNG" and len(data) >= 24:
            return struct.unpack(">II", data[16:24])
        if sniffed == "GIF" and len(data) >= 10:
            return struct.unpack("<HH", data[6:10])
        if sniffed == "JPEG":
            return _jpeg_header_size(data)
    except struct.error:
        pass
    return 0, 0


def _jpeg_header_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return 0, 0
