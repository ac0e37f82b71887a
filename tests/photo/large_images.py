"""Huge images made without holding their pixels: PNG rows are streamed through zlib, so a
7990×7990 picture costs this process a few hundred kilobytes, like the file an attacker sends."""
from __future__ import annotations

import struct
import zlib


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (67, 142, 219)) -> bytes:
    """An 8-bit RGB PNG of one colour: the first row filtered None, the rest Up (all zeros)."""
    first = b"\x00" + bytes(rgb) * width
    rest = b"\x02" + bytes(3 * width)
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(first)]
    parts.extend(deflate.compress(rest) for _ in range(height - 1))
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
