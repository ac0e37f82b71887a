"""File-level rules: what the bytes are, and how many of them."""
from __future__ import annotations

from .context import Photo
from .report import Finding, finding

_UNREADABLE = {"empty", "unknown", "heic", "corrupt"}


def file_format(photo: Photo) -> Finding | None:
    """JPEG, judged by the content (magic bytes and a successful decode), not by the name."""
    d = photo.decoded
    photo.record("file.format", d.format or d.sniffed)
    if d.problem in _UNREADABLE:
        return finding("file.format", d.sniffed, "JPEG", key=f"file.format.{d.problem}")
    if d.sniffed != "JPEG":
        shown = d.format or d.sniffed
        key = "file.format.animated" if d.frames > 1 and d.sniffed in ("GIF", "WEBP", "PNG") else "file.format"
        return finding("file.format", shown, "JPEG", key=key)
    return None


def file_size(photo: Photo) -> Finding | None:
    t = photo.thresholds
    size = photo.record("file.bytes", photo.decoded.size_bytes)
    if size <= t.min_file_bytes:
        return finding("file.size", size, t.min_file_bytes,
                       shown_value=_kb(size), shown_threshold=_kb(t.min_file_bytes))
    if size > t.max_file_bytes:
        return finding("file.size", size, t.max_file_bytes, key="file.size.too_large",
                       shown_value=_mb(size), shown_threshold=_mb(t.max_file_bytes))
    return None


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} 字节"


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


RULES = (file_format, file_size)
