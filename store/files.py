"""Content-addressed storage of original photo bytes under the data directory, and the data
directory's permissions.

The data directory holds names, ID numbers, phones and photos: it and its folders are created 0700,
its files 0600, whatever the process umask. The modes are set explicitly where each file is made,
rather than by a process-wide umask, so that nothing else the process writes (a staff member's
export, a test's temporary files) changes behaviour. SQLite gives its -wal and -shm files the mode
of the database file, so creating that file 0600 before SQLite opens it covers all three.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from sqlalchemy.engine import make_url

from store.crypto import KeyRing, file_key_id

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
TEMP_PREFIX = ".incoming-"


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    relative_path: str
    size_bytes: int


class PhotoFiles:
    """Photos by the SHA-256 of their plaintext, encrypted at rest under the key ring's active key
    (store/crypto.py); every reader of photo bytes goes through read() or stream(). Files written before
    encryption (no header) are read as they are until `flask keys rotate` encrypts them."""

    def __init__(self, root: Path, keys: KeyRing | None = None):
        self.root = Path(root)
        self.keys = keys or KeyRing({})

    @classmethod
    def for_settings(cls, settings) -> "PhotoFiles":
        return cls(settings.photo_dir, KeyRing.from_settings(settings.privacy))

    def put(self, data: bytes) -> StoredFile:
        """Stores the bytes encrypted; the same bytes twice are one file."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest[2:4]}/{digest}"
        target = self.root / relative
        if not target.exists():
            self._write_atomically(target, self.keys.encrypt_chunks([data]))
        return StoredFile(sha256=digest, relative_path=relative, size_bytes=len(data))

    def path(self, relative_path: str) -> Path:
        return self.root / relative_path

    def stream(self, relative_path: str) -> Iterator[bytes]:
        """The photo's original bytes, a chunk at a time (FileNotFoundError when it is gone)."""
        if not relative_path:  # a photo whose retention ended keeps its row, not its file
            raise FileNotFoundError("the photo's file was deleted at the end of its retention period")
        with open(self.path(relative_path), "rb") as source:
            yield from self.keys.decrypt_file(source)

    def read(self, relative_path: str) -> bytes:
        return b"".join(self.stream(relative_path))

    def read_file(self, path: Path) -> bytes:
        """Any file (a staff member's path to a stored photo, or a photo of their own) through the key ring."""
        with open(path, "rb") as source:
            return b"".join(self.keys.decrypt_file(source))

    def remove(self, relative_path: str) -> bool:
        try:
            self.path(relative_path).unlink()
            return True
        except FileNotFoundError:
            return False

    def key_id(self, relative_path: str) -> str | None:
        return file_key_id(self.path(relative_path))

    def rotate(self, relative_path: str) -> bool:
        """Re-encrypts one file under the active key (a plaintext one too); False when it already is.
        Written to a temporary file and renamed over the old one, so a kill mid-file loses nothing."""
        target = self.path(relative_path)
        if file_key_id(target) == self.keys.active_key:
            return False
        with open(target, "rb") as source:
            self._write_atomically(target, self.keys.encrypt_chunks(self.keys.decrypt_file(source)))
        return True

    def files(self) -> Iterator[str]:
        """Every stored photo's relative path, in a stable order (temporary files left by a kill skipped)."""
        for folder, subfolders, names in os.walk(self.root):
            subfolders.sort()
            for name in sorted(names):
                if not name.startswith(TEMP_PREFIX):
                    yield str((Path(folder) / name).relative_to(self.root))

    def remove_stale_temporaries(self, older_than_seconds: float = 3600) -> int:
        """Temporary files of writers killed mid-file (a writer still at work is younger than this)."""
        removed, cutoff = 0, time.time() - older_than_seconds
        for path in self.root.rglob(TEMP_PREFIX + "*"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _write_atomically(self, target: Path, chunks: Iterable[bytes]) -> None:
        private_dir(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)  # 0600
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def private_dir(path: Path) -> Path:
    """Creates the folder (and any missing parent) 0700; an existing one is narrowed to 0700."""
    path = Path(path)
    _make_dirs(path)
    _narrow(path, PRIVATE_DIR)
    return path


def _make_dirs(path: Path) -> None:
    """The missing folders of path, each 0700; existing ones are left as they are."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process made it first
            pass
        os.chmod(folder, PRIVATE_DIR)


def private_file_exists(path: Path) -> Path:
    """Creates an empty file 0600 if there is none; an existing one is narrowed to 0600."""
    path = Path(path)
    _make_dirs(path.parent)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    except FileExistsError:
        pass
    _narrow(path, PRIVATE_FILE)
    return path


@contextmanager
def private_file(path: Path, mode: str = "a") -> Iterator[IO[str]]:
    """open(path, mode) for text, the file created 0600 (and narrowed to 0600 if it was wider)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    if stat.S_IMODE(os.fstat(fd).st_mode) & ~PRIVATE_FILE:
        os.fchmod(fd, PRIVATE_FILE)
    with os.fdopen(fd, mode, encoding="utf-8") as file:
        yield file


def secure_data_dir(settings) -> None:
    """The data directory, its photo folder, the SQLite database and the huey queue file, before
    anything opens them: folders 0700, files 0600 (existing ones are narrowed, so an older install
    made under umask 022 is fixed at the next start)."""
    private_dir(settings.data_dir)
    private_dir(settings.photo_dir)
    database = _sqlite_file(settings.database_url)
    if database is not None:
        _private_sqlite(database)
    if not settings.redis_url and not settings.jobs.immediate:
        _private_sqlite(settings.huey_path)


def _private_sqlite(path: Path) -> None:
    private_file_exists(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            _narrow(companion, PRIVATE_FILE)


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _narrow(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except PermissionError:  # not ours (a shared folder given as data_dir): leave it as it is
        pass
