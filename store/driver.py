"""The webhook's hot statements, run straight on the database driver.

A text message runs four statements (the retry claim, the candidate's row, the settled reply, the two
transcript rows). Through SQLAlchemy's execution layer each cost about as much CPU again as the
driver's own work: a cache key built from the statement, a compiled-cache lookup, an execution
context, a result object. `DriverStatement` compiles a Core statement once per dialect and keeps what
that layer would work out on every call (the SQL text, the order of its parameters, each column type's
bind and result processing, which is how sealed columns are sealed and opened), then runs it on the
session's own DBAPI connection, inside the session's transaction.

What it does not do, and so is refused when the statement is built: column defaults and onupdates it
would have to fill in (callers pass every column), and cursor events (`before_cursor_execute` does not
see these statements). A driver error goes through the connection's own error handling, so it comes
out exactly as from SQLAlchemy: wrapped (IntegrityError, OperationalError, ...), and a lost connection
invalidated with `connection_invalidated` set (store.db.connection_lost), the pool's other connections
too, which is what the webhook's reconnect relies on.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Delete, Insert, Select, Update

from store.db import connection_of


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # the parameters' order for a positional paramstyle (SQLite's "?")
    construct: Callable[[dict], dict]  # the statement's parameters: the caller's, and values it carries
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # each parameter's processing (sealing, dates, JSON)
    results: tuple[Callable[[Any], Any] | None, ...]  # each selected or returned column's (none: no rows)


class DriverStatement:
    """A Core INSERT, UPDATE, DELETE or SELECT compiled once per dialect, for `execute`/`executemany`.
    `columns`: for an INSERT, the columns every call passes (the statement is compiled for those)."""

    def __init__(self, statement: Insert | Update | Delete | Select, columns: Sequence[str] | None = None):
        _refuse_defaults(statement, columns)
        self.statement = statement
        self.columns = list(columns) if columns is not None else None
        # Per dialect object, not per dialect name: each engine's dialect carries its own key ring
        # (store/sealed.attach_ring), which the sealed columns' processors use.
        self._by_dialect: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect)
        if found is None:
            found = self._by_dialect[dialect] = _compile(self.statement, dialect, self.columns)
        return found


def execute(session: Session, statement: DriverStatement, params: dict) -> list[tuple]:
    """Runs the statement with one set of parameters in the session's transaction; the rows it
    selected or returned, processed as SQLAlchemy would (empty for a statement returning none)."""
    connection = connection_of(session)
    compiled = statement.compiled(connection.dialect)
    rows = _run(connection, compiled.sql, _arguments(compiled, params), many=False, fetch=bool(compiled.results))
    return [_processed(row, compiled.results) for row in rows]


def executemany(session: Session, statement: DriverStatement, rows: Iterable[dict]) -> None:
    """Runs the statement once per set of parameters, in one driver call (psycopg pipelines them)."""
    connection = connection_of(session)
    compiled = statement.compiled(connection.dialect)
    _run(connection, compiled.sql, [_arguments(compiled, params) for params in rows], many=True, fetch=False)


def _run(connection: Connection, sql: str, arguments, many: bool, fetch: bool) -> list[tuple]:
    """fetch: the statement returns rows (known from the statement: psycopg builds cursor.description
    afresh, an object per column, each time it is read)."""
    dbapi_error = connection.dialect.loaded_dbapi.Error
    cursor = None
    try:
        cursor = connection.connection.dbapi_connection.cursor()
        if many:
            cursor.executemany(sql, arguments)
            return []
        cursor.execute(sql, arguments)
        return cursor.fetchall() if fetch else []
    except dbapi_error as error:
        # What SQLAlchemy does with a driver error (private, stable in the pinned 2.0): wraps it, and on a
        # lost connection invalidates it and the pool's older ones.
        connection._handle_dbapi_exception(error, sql, arguments, cursor, None)
    finally:
        if cursor is not None:
            with contextlib.suppress(dbapi_error):  # a connection lost under it may refuse even this
                cursor.close()


def _arguments(compiled: _Compiled, params: dict):
    values = compiled.construct(params)
    for name, process in compiled.binds:
        values[name] = process(values[name])
    if compiled.names is None:
        return values
    return tuple(values[name] for name in compiled.names)


def _processed(row: tuple, processors: tuple) -> tuple:
    return tuple(value if process is None else process(value) for value, process in zip(row, processors))


def _compile(statement, dialect: Dialect, columns: list[str] | None) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=columns)
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise TypeError("a driver statement cannot have expanding (IN) or literal-execute parameters")
    names = tuple(compiled.positiontup) if compiled.positional else None
    binds = []
    escaped = compiled.escaped_bind_names or {}
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds.append((escaped.get(name, name), process))
    results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
                    for column in statement.exported_columns)
    return _Compiled(compiled.string, names, compiled.construct_params, tuple(binds), results)


def _refuse_defaults(statement, columns: Sequence[str] | None) -> None:
    """Defaults and onupdates are SQLAlchemy's execution layer's to fill in: a driver statement must not
    leave one to it (it would silently go missing)."""
    if isinstance(statement, Insert):
        if columns is None:
            raise TypeError("a driver INSERT names the columns every call passes")
        missing = [column.key for column in statement.table.columns
                   if column.key not in columns and not column.primary_key
                   and (column.default is not None or column.server_default is None and not column.nullable)]
        if missing:
            raise TypeError(f"a driver INSERT into {statement.table.name} must pass {', '.join(missing)}")
    if isinstance(statement, Update):
        given = set(statement._values or ())
        missing = [column.key for column in statement.table.columns
                   if column.onupdate is not None and column not in given and column.key not in given]
        if missing:
            raise TypeError(f"a driver UPDATE of {statement.table.name} must set {', '.join(missing)}")
