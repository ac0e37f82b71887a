"""Content-addressed storage of original photo bytes under the data directory."""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    relative_path: str
    size_bytes: int


class PhotoFiles:
    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, data: bytes) -> StoredFile:
        """Stores the bytes untouched; the same bytes twice are one file."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest[2:4]}/{digest}"
        target = self.root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        return StoredFile(sha256=digest, relative_path=relative, size_bytes=len(data))

    def path(self, relative_path: str) -> Path:
        return self.root / relative_path

    def read(self, relative_path: str) -> bytes:
        return self.path(relative_path).read_bytes()
