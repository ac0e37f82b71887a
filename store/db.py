"""Engine and sessions: one transaction per unit of work, SQLite tuned for a threaded server.

`session()` is for work that may write: on SQLite it takes the one writer lock up front. `read()` is
for pages and listings that only read: it never waits for a writer (WAL lets readers see the last
commit while a write is in progress), and a write attempted in it fails at once."""
from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from store import wire
from store.crypto import KeyRing
from store.sealed import attach_ring


class Database:
    def __init__(self, url: str, busy_timeout: float = 30.0, ring: KeyRing | None = None):
        """busy_timeout: seconds a SQLite writer waits for another process's write to finish.
        ring: the keys of the encrypted columns (store/sealed.py); without it they can be neither
        written nor read."""
        self.url = url
        self.engine = _create_engine(url, busy_timeout)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = _create_read_engine(url, busy_timeout) or self.engine
        if ring is not None:
            attach_ring(self.engine, ring)
            attach_ring(self._read_engine, ring)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)

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

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session: one consistent snapshot, no writer lock. A write in it raises (SQLite:
        query_only; PostgreSQL: a READ ONLY transaction), so it can never turn into a writer halfway,
        which on SQLite could deadlock with a writer waiting for it. Objects loaded in it stay readable
        after the block, detached."""
        session = self._read_sessions()
        try:
            if self._read_engine.dialect.name == "postgresql":
                session.execute(text("SET TRANSACTION READ ONLY"))
            yield session
        finally:
            session.close()

    @contextmanager
    def snapshot(self) -> Iterator[tuple[Connection, Session]]:
        """read() for the webhook's hot path: the same snapshot without the writer lock, on a connection
        whose transaction is begun at once, for driver statements (store/driver.execute_on); and a session
        on it for any other query, which begins nothing of its own. Reading a candidate's row this way
        cost 90-105 µs of CPU against read()'s 154-164 µs: a session that begins and ends a transaction
        costs more than the row it reads. Only where reads_beside_writer (elsewhere this would be a second
        transaction on the writer's engine)."""
        if not self.reads_beside_writer:
            raise RuntimeError("snapshot() is for SQLite on a file: reads there never wait for the writer")
        with self._read_engine.connect() as connection:
            connection.begin()
            session = Session(bind=connection, join_transaction_mode="rollback_only")
            try:
                yield connection, session
            finally:
                session.close()

    @property
    def reads_beside_writer(self) -> bool:
        """SQLite on a file: every write transaction takes the one writer lock, and read() runs in a
        snapshot of its own beside it. False on PostgreSQL (no such lock) and for an in-memory database."""
        return self._read_engine is not self.engine

    @staticmethod
    def after_commit(session: Session, callback) -> None:
        """Runs callback once the session's transaction has committed (never if it rolls back)."""
        session.info.setdefault("after_commit", []).append(callback)

    def checkpoint(self) -> None:
        """SQLite: copies the WAL's pages into the database file and empties the WAL, so old versions of
        pages (personal data since erased or sealed) leave the WAL too. Nothing on other databases."""
        if self.engine.dialect.name == "sqlite":
            connection = self.engine.raw_connection()  # outside a transaction (begin takes the writer lock)
            try:
                connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                connection.close()

    def dispose(self) -> None:
        self.engine.dispose()
        writer = getattr(self.engine, "writer_lock", None)
        if writer is not None:
            writer.close()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()


def connection_of(session: Session) -> Connection:
    """The session's connection in its current transaction, for Core statements on the hot path: looked
    up through the session once per transaction (each lookup walks its transaction state)."""
    transaction = session.get_transaction()
    held = session.info.get("core_connection")
    if transaction is not None and held is not None and held[0] is transaction:
        return held[1]
    connection = session.connection()
    session.info["core_connection"] = (session.get_transaction(), connection)
    return connection


def connection_lost(error: BaseException | None) -> bool:
    """The database connection died under a statement (a restart, a failover, pg_terminate_backend);
    the pool has dropped it, so the next checkout gets a new one."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _create_engine(url: str, busy_timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_size=10, max_overflow=20)
        _ping_on_checkout(engine)
        if engine.dialect.driver == "psycopg":
            _begin_with_first_statement(engine)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
    event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout=busy_timeout))
    writer = engine.writer_lock = _WriterLock(_lock_file_for(parsed.database))
    event.listen(engine, "begin", writer.begin)
    event.listen(engine, "commit", writer.commit)
    event.listen(engine, "rollback", writer.rollback)
    return engine


# Every checkout of a pooled PostgreSQL connection is pinged first (what pool_pre_ping does), so a
# database restart or pg_terminate_backend costs no request and no half-done piece of work, except the
# one checkout a caller vouches for with unpinged_checkout(): the webhook's claim transaction, which
# runs the whole message again on a new connection if that one turns out dead before anything of it
# was kept (bot/retries.py). It saves a round trip on every message.
_UNPINGED = contextvars.ContextVar("unpinged_checkout", default=False)


@contextmanager
def unpinged_checkout() -> Iterator[None]:
    """The next connection this context checks out is not pinged (only that one: a step that commits
    early checks out again, pinged, for what it does after)."""
    token = _UNPINGED.set(True)
    try:
        yield
    finally:
        _UNPINGED.reset(token)


def _ping_on_checkout(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connected(_dbapi_connection, record) -> None:
        record.info["fresh"] = True  # just connected: nothing to ping (pool_pre_ping skips these too)

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection, record, _proxy) -> None:
        vouched = _UNPINGED.get()
        if vouched:
            _UNPINGED.set(False)  # only this checkout, even when it is a fresh connection
        if record.info.pop("fresh", False) or vouched:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another (up to three times).
            raise DisconnectionError(f"pooled connection is dead: {error}") from error


# psycopg sends BEGIN on its own before a transaction's first statement, and waits for its answer before
# anything else goes out, pipeline or not: a round trip of its own per transaction. So its connections run
# in psycopg's autocommit mode and the transaction's BEGIN is sent by whoever sends its first statement: the
# hook below for SQLAlchemy's statements, store/driver.py in the same pipeline as its own (the webhook's
# claim rides with it). commit() and rollback() go by the server's transaction status, not by that mode.
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE (not imported: psycopg is only there with PostgreSQL)


def begin_owed(connection: Connection) -> bool:
    """SQLAlchemy holds a transaction open on this psycopg connection, and its BEGIN has not gone out yet
    (nothing has been sent in it). False on a connection psycopg begins itself (not in its autocommit mode:
    SQLAlchemy's first connect, before the hook below sets it) and on an AUTOCOMMIT one (nothing to begin)."""
    dbapi_connection = connection.connection.dbapi_connection
    return (dbapi_connection.autocommit and connection.in_transaction()
            and dbapi_connection.pgconn.transaction_status == _IDLE
            and connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT")


def _begin_with_first_statement(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connected(dbapi_connection, _record) -> None:
        dbapi_connection.autocommit = True
        # psycopg prepares what it runs 5 times, and after any ROLLBACK deallocates all prepared statements,
        # store/wire.py's too. So psycopg prepares nothing here: the hot statements are store/wire.py's,
        # prepared by name.
        dbapi_connection.prepare_threshold = None

    @event.listens_for(engine, "before_cursor_execute")
    def before_statement(connection, cursor, statement, parameters, context, executemany) -> None:
        if begin_owed(connection):
            try:
                wire.begin(connection.connection.dbapi_connection)
            except connection.dialect.loaded_dbapi.Error as error:
                # Outside SQLAlchemy's own error handling (this hook runs before it): wrapped and, for a lost
                # connection, invalidated as the statement's own error would be (private, stable in 2.0).
                connection._handle_dbapi_exception(error, "BEGIN", (), cursor, context)


def _create_read_engine(url: str, busy_timeout: float) -> Engine | None:
    """SQLite: a second pool of query-only connections whose transactions begin deferred (a snapshot
    taken at the first read) and skip the writer lock. None elsewhere: PostgreSQL readers never wait
    for writers, and an in-memory database is private to its connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
    event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout=busy_timeout, query_only=True))
    event.listen(engine, "begin", functools.partial(_begin_on_driver, statement="BEGIN"))
    return engine


def _sqlite_pragmas(dbapi_connection, _record, busy_timeout: float, query_only: bool = False) -> None:
    # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN gets in the way of BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    _use_wal(cursor, busy_timeout)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten cells are zeroed, not left in free pages: an erased graduate or a number
    # from before encryption must not linger in the file (not every SQLite build has this on).
    cursor.execute("PRAGMA secure_delete=ON")
    if query_only:
        cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _use_wal(cursor, busy_timeout: float) -> None:
    """WAL is a property of the database file: it is set once and after that only read. The pragma
    can answer "database is locked" at once, busy timeout or not, while other processes open the same
    file: CI saw it once with four processes starting together (it did not reproduce here in 1,300
    opens). Reading the mode first keeps the pragma off that path; a refused switch is retried."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def _lock_file_for(database: str | None) -> Path | None:
    """Where this database's writer processes queue: a file beside it (none for an in-memory one)."""
    if not database or database == ":memory:":
        return None
    return Path(database).with_name(Path(database).name + ".writer-lock")


class _WriterLock:
    """SQLite allows one writer at a time. Transactions take the write lock up front (BEGIN IMMEDIATE:
    a read that upgrades to a write later can fail at once instead of waiting). Writers queue first on a
    Python lock (the threads of this process), then on an exclusive flock of a file beside the database
    (the processes: gunicorn's workers, the consumer, the CLI), so each is woken the moment the writer
    before it finishes. Waiting in SQLite's busy handler instead means sleeps that grow to 100 ms: they
    made the latency tail, within one process and then between the web workers.

    The flock is only the queue; SQLite's own lock still guards the data, so a process that does not
    take the flock (sqlite3 by hand) is waited for through busy_timeout as before. A process that dies
    releases its flock with its files; a hung web worker is killed by gunicorn's timeout."""

    def __init__(self, lock_path: Path | None = None):
        self._lock = threading.RLock()
        self._depth = 0  # this process's open write transactions (the RLock lets a thread nest)
        self._path = lock_path
        self._file: tuple[int, int] | None = None  # (pid, fd): a forked child opens its own
        self._closer: weakref.finalize | None = None

    def begin(self, connection) -> None:
        self._lock.acquire()
        try:
            self._enter()
            try:
                _begin_on_driver(connection, "BEGIN IMMEDIATE")
            except BaseException:
                self._leave()
                raise
        except BaseException:
            self._lock.release()
            raise
        connection.info["holds_writer_lock"] = True

    # SQLAlchemy's commit and rollback events come before it ends the transaction on the driver. Let go of
    # the queue there and the next writer's BEGIN IMMEDIATE meets this one's COMMIT still running: SQLite
    # answers it "locked" and its busy handler sleeps 1 ms or more. Under two web workers that made an
    # average wait of 1.1 ms for a hold of 0.45 ms, and a quarter of the machine's CPU idle (1 Dec 2026).
    # So the transaction is ended on the driver first; SQLAlchemy's own COMMIT or ROLLBACK after it finds
    # none open and does nothing (sqlite3 sends one only inside a transaction).

    def commit(self, connection) -> None:
        try:
            if connection.info.get("holds_writer_lock"):
                _end_on_driver(connection, "COMMIT")
        except BaseException:
            # A failed COMMIT (a deferred constraint, a full disk) leaves SQLite's transaction open, and
            # SQLAlchemy ends it through the pool's reset, which no event reports: rolled back here, so the
            # next writer finds the database free.
            if not connection.invalidated:
                with contextlib.suppress(sqlite3.Error):
                    connection.connection.dbapi_connection.rollback()
            raise
        finally:
            self.end(connection)

    def rollback(self, connection) -> None:
        try:
            if connection.info.get("holds_writer_lock") and not connection.invalidated:
                _end_on_driver(connection, "ROLLBACK")
        finally:
            self.end(connection)

    def end(self, connection) -> None:
        # SQLAlchemy rolls back after a failed BEGIN too; that rollback must not release again.
        if connection.info.pop("holds_writer_lock", False):
            self._leave()
            self._lock.release()

    def _enter(self) -> None:
        if self._depth == 0:
            fd = self._fd()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        self._depth += 1

    def _leave(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file is not None and self._file[0] == os.getpid():
            fcntl.flock(self._file[1], fcntl.LOCK_UN)

    def close(self) -> None:
        if self._file is not None and self._depth == 0:
            self._closer()  # once, here or when the lock is collected
            self._file = None

    def _fd(self) -> int | None:
        """This process's descriptor of the lock file. A descriptor inherited through fork shares its
        lock with the parent, so it would let both in at once: each process opens its own."""
        if self._path is None:
            return None
        pid = os.getpid()
        if self._file is None or self._file[0] != pid:
            try:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only directory: SQLite's busy handler alone, as before
                self._path = None
                return None
            self._file = (pid, fd)
            self._closer = weakref.finalize(self, _close_in, pid, fd)
        return self._file[1]


def _begin_on_driver(connection: Connection, statement: str) -> None:
    """BEGIN (a read snapshot) or BEGIN IMMEDIATE (a write) on the driver's connection: every SQLite
    transaction starts with one, and SQLAlchemy's statement machinery (a cursor, events, a result) cost more
    than the statement. A driver error comes out as SQLAlchemy's, as exec_driver_sql would raise it
    (private, stable in the pinned 2.0)."""
    dbapi_connection = connection.connection.dbapi_connection
    try:
        dbapi_connection.execute(statement)
    except sqlite3.Error as error:
        connection._handle_dbapi_exception(error, statement, (), None, None)


def _end_on_driver(connection: Connection, statement: str) -> None:
    """COMMIT or ROLLBACK of the driver connection's open transaction, a driver error raised as SQLAlchemy's
    (see _begin_on_driver)."""
    dbapi_connection = connection.connection.dbapi_connection
    try:
        if statement == "COMMIT":
            dbapi_connection.commit()
        else:
            dbapi_connection.rollback()
    except sqlite3.Error as error:
        connection._handle_dbapi_exception(error, statement, (), None, None)


def _close_in(pid: int, fd: int) -> None:
    if os.getpid() == pid:  # a forked child's copy of the number is not its own descriptor
        with contextlib.suppress(OSError):
            os.close(fd)
