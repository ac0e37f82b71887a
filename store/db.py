"""Engine and sessions: one transaction per unit of work, SQLite tuned for a threaded server."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = _create_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work is committed when the block ends, rolled back if it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for callback in session.info.pop("after_commit", ()):
            callback()

    @staticmethod
    def after_commit(session: Session, callback) -> None:
        """Runs callback once the session's transaction has committed (never if it rolls back)."""
        session.info.setdefault("after_commit", []).append(callback)

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    writer = _WriterLock()
    event.listen(engine, "begin", writer.begin)
    event.listen(engine, "commit", writer.end)
    event.listen(engine, "rollback", writer.end)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN gets in the way of BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class _WriterLock:
    """SQLite allows one writer at a time. Transactions take the write lock up front (BEGIN IMMEDIATE:
    a read that upgrades to a write later can fail at once instead of waiting), and threads of this
    process queue on a Python lock first, so they are woken the moment it frees instead of polling
    in SQLite's busy handler, whose sleeps grow to 100 ms and made the latency tail."""

    def __init__(self):
        self._lock = threading.RLock()

    def begin(self, connection) -> None:
        self._lock.acquire()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def end(self, connection) -> None:
        self._lock.release()
