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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from sqlalchemy.engine import make_url

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


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
            private_dir(target.parent)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")  # 0600
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        return StoredFile(sha256=digest, relative_path=relative, size_bytes=len(data))

    def path(self, relative_path: str) -> Path:
        return self.root / relative_path

    def read(self, relative_path: str) -> bytes:
        return self.path(relative_path).read_bytes()


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
