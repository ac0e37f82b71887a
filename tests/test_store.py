"""The SQLite engine: WAL on a new file, writers queue on a lock file across processes, and a writer that
waits too long fails cleanly."""
import fcntl
import multiprocessing
import os
import sqlite3
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from store.db import Database


@pytest.fixture()
def db_path(tmp_path):
    path = tmp_path / "store.sqlite"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (x INTEGER)")
    setup.commit()
    setup.close()
    return path


def test_a_new_file_is_switched_to_wal(db_path):
    database = Database(f"sqlite:///{db_path}")
    with database.session() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    database.dispose()


def test_a_writer_that_waits_too_long_gets_locked_and_frees_the_next_writer(db_path):
    database = Database(f"sqlite:///{db_path}", busy_timeout=0.2)
    with database.session() as session:  # WAL is on before the other process starts writing
        session.execute(text("SELECT 1"))
    other_process = sqlite3.connect(db_path, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    other_process.execute("INSERT INTO t VALUES (1)")

    with pytest.raises(OperationalError, match="database is locked"):
        with database.session() as session:
            session.execute(text("INSERT INTO t VALUES (2)"))

    other_process.execute("COMMIT")
    other_process.close()
    assert _written_from_another_thread(database, "INSERT INTO t VALUES (3)"), \
        "the failed BEGIN left this process's writer lock held"
    with database.session() as session:
        assert session.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 3]
    database.dispose()


def _written_from_another_thread(database: Database, *statements: str) -> bool:
    """Whether another thread of this process could write `statements` in one transaction within 5 s."""
    written = []

    def write() -> None:
        with database.session() as session:
            for statement in statements:
                session.execute(text(statement))
        written.append(True)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=5)
    return written == [True]


def _lock_file_is_free(path) -> bool:
    """Whether another process could take the writers' queue now (a descriptor of its own)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_writers_in_other_processes_queue_on_the_lock_file_while_a_write_transaction_is_open(db_path):
    """Web workers wait on the lock file (woken at once) instead of in SQLite's busy handler (sleeps
    that grow to 100 ms)."""
    database = Database(f"sqlite:///{db_path}")
    lock_file = f"{db_path}.writer-lock"
    with database.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        assert not _lock_file_is_free(lock_file)
    assert _lock_file_is_free(lock_file)
    with pytest.raises(RuntimeError):
        with database.session() as session:
            session.execute(text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("the step failed")
    assert _lock_file_is_free(lock_file), "a rolled-back transaction left the lock file held"
    with database.read() as session:  # readers never queue
        assert not os.path.exists(lock_file) or _lock_file_is_free(lock_file)
        assert session.execute(text("SELECT x FROM t")).scalars().all() == [1]
    database.dispose()


def test_a_forked_worker_queues_on_a_descriptor_of_its_own(db_path):
    """gunicorn forks its workers after the app is built: a descriptor inherited from the parent would
    share the parent's lock, and let both in at once."""
    database = Database(f"sqlite:///{db_path}")
    with database.session() as session:  # the parent has opened its descriptor
        session.execute(text("INSERT INTO t VALUES (1)"))
    holding, release = multiprocessing.get_context("fork").Event(), multiprocessing.get_context("fork").Event()

    def child():
        with database.session() as session:
            session.execute(text("INSERT INTO t VALUES (2)"))
            holding.set()
            release.wait(10)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    try:
        assert holding.wait(10)
        parent_fd = database.engine.writer_lock._fd()
        with pytest.raises(BlockingIOError):
            fcntl.flock(parent_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        release.set()
        process.join(10)
    assert process.exitcode == 0
    with database.session() as session:
        session.execute(text("INSERT INTO t VALUES (3)"))
    with database.read() as session:
        assert session.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 2, 3]
    database.dispose()


def test_the_next_writer_is_let_in_only_once_the_commit_before_it_is_done(db_path):
    """The writers' queue is released after SQLite's COMMIT (or ROLLBACK), not before: a writer let in
    while the one ahead of it is still committing finds the database locked and sleeps in SQLite's busy
    handler (1 ms at first, then longer), which is what the queue is there to avoid. With no busy timeout at
    all, two forked workers writing as fast as they can must never find it locked."""
    database = Database(f"sqlite:///{db_path}", busy_timeout=0)
    with database.session() as session:  # WAL is on before the workers fork
        session.execute(text("SELECT 1"))
    database.engine.dispose()  # each worker opens connections of its own, as gunicorn's do
    context = multiprocessing.get_context("fork")
    failures = context.Queue()

    def worker(first: int) -> None:
        try:
            for number in range(first, first + 300):
                with database.session() as session:
                    session.execute(text("INSERT INTO t VALUES (:x)"), {"x": number})
                if number % 3 == 0:  # rollbacks hand over the queue too
                    with pytest.raises(RuntimeError), database.session() as session:
                        session.execute(text("INSERT INTO t VALUES (-1)"))
                        raise RuntimeError("the step failed")
        except Exception as error:  # noqa: BLE001 - reported to the parent, which asserts on it
            failures.put(repr(error))
            raise

    processes = [context.Process(target=worker, args=(first,)) for first in (0, 1000)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    reported = []
    while not failures.empty():
        reported.append(failures.get())
    assert reported == [] and [process.exitcode for process in processes] == [0, 0]
    with database.read() as session:
        assert session.execute(text("SELECT count(*), min(x) FROM t")).one() == (600, 0)
    database.dispose()


def test_a_commit_that_fails_rolls_back_and_lets_the_next_writer_in(tmp_path):
    """A COMMIT can fail (here a deferred foreign key; a full disk in production). Its transaction is
    rolled back and the writers' queue let go of, so the next write goes through at once and nothing of
    the failed one is kept."""
    path = tmp_path / "store.sqlite"
    setup = sqlite3.connect(path)
    setup.executescript("CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                        "CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);")
    setup.close()
    database = Database(f"sqlite:///{path}", busy_timeout=0)
    with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"):
        with database.session() as session:
            session.execute(text("INSERT INTO child VALUES (7)"))  # no parent 7: refused at COMMIT
    assert _written_from_another_thread(database, "INSERT INTO parent VALUES (7)", "INSERT INTO child VALUES (7)"), \
        "the failed COMMIT left the writers' queue or SQLite's lock held"
    with database.read() as session:
        assert session.execute(text("SELECT count(*) FROM child")).scalar() == 1
    database.dispose()
