"""The SQLite engine: WAL on a new file, and a writer that waits too long fails cleanly."""
import sqlite3
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

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
    written = []

    def write_from_another_thread():
        with database.session() as session:
            session.execute(text("INSERT INTO t VALUES (3)"))
        written.append(True)

    thread = threading.Thread(target=write_from_another_thread)
    thread.start()
    thread.join(timeout=5)
    assert written == [True], "the failed BEGIN left this process's writer lock held"
    with database.session() as session:
        assert session.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 3]
    database.dispose()
