"""Put on PYTHONPATH of a child process: every SQLite connection it opens starts with secure_delete off,
as in SQLite builds compiled without SQLITE_SECURE_DELETE (Debian's has it on, python.org's has not).
Freed pages then keep their old bytes unless the code asks for secure_delete itself."""
import sqlite3
import sqlite3.dbapi2

_connect = sqlite3.dbapi2.connect


def connect(*args, **kwargs):
    connection = _connect(*args, **kwargs)
    connection.execute("PRAGMA secure_delete=OFF")
    return connection


sqlite3.connect = sqlite3.dbapi2.connect = connect
