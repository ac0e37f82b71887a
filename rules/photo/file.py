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
        shown_size, shown_limit = _below_limit(size, t.min_file_bytes)
        return finding("file.size", size, t.min_file_bytes, shown_value=shown_size, shown_threshold=shown_limit)
    if size > t.max_file_bytes:
        return finding("file.size", size, t.max_file_bytes, key="file.size.too_large",
                       shown_value=_mb(size), shown_threshold=_mb(t.max_file_bytes))
    return None


def _below_limit(size: int, limit: int) -> tuple[str, str]:
    """Size and limit as a candidate reads them, the size never rounded up to the limit (30 446 bytes is
    29.7 KB, not 30 KB): in KB when that shows the difference, else in bytes."""
    tenths = size * 10 // 1024
    if tenths * 1024 < limit * 10 and size >= 1024:
        return f"{tenths / 10:.1f} KB", f"{limit / 1024:g} KB"
    return f"{size} 字节", f"{limit} 字节"


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


RULES = (file_format, file_size)
