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
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Delete, Insert, Select, Update

from store.db import connection_of


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # the parameters' names for a named paramstyle (psycopg's); None: positional
    # Per parameter, in the statement's order: the caller's key, the parameter's compiled name (also looked
    # up, as construct_params does), what the statement itself carries when the caller passes neither
    # (_REQUIRED: nothing), and its type's processing (sealing, dates, JSON) or None.
    slots: tuple[tuple[str, str, Any, Callable[[Any], Any] | None], ...]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, processing) of the columns that have one
    returns_rows: bool


_REQUIRED = object()


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
    rows = _run(connection, compiled.sql, _arguments(compiled, params), many=False, fetch=compiled.returns_rows)
    if compiled.results:
        return [_processed(row, compiled.results) for row in rows]
    return rows


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
    """The driver's parameters, as SQLAlchemy's construct_params and bind processing would make them."""
    values = []
    for key, name, carried, process in compiled.slots:
        value = params[key] if key in params else params[name] if name in params else carried
        if value is _REQUIRED:
            raise InvalidRequestError(f"A value is required for bind parameter {key!r}")
        values.append(value if process is None else process(value))
    return tuple(values) if compiled.names is None else dict(zip(compiled.names, values))


def _processed(row: tuple, results: tuple) -> tuple:
    row = list(row)
    for index, process in results:
        row[index] = process(row[index])
    return tuple(row)


def _compile(statement, dialect: Dialect, columns: list[str] | None) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=columns)
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise TypeError("a driver statement cannot have expanding (IN) or literal-execute parameters")
    escaped = compiled.escaped_bind_names or {}
    by_name = {escaped.get(name, name): (bind, name) for bind, name in compiled.bind_names.items()}
    names = tuple(compiled.positiontup) if compiled.positional else tuple(by_name)
    slots = tuple(_slot(*by_name[name], dialect) for name in names)
    results = tuple((index, process) for index, column in enumerate(statement.exported_columns)
                    if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None)
    return _Compiled(compiled.string, None if compiled.positional else names, slots, results,
                     returns_rows=bool(statement.exported_columns))


def _slot(bind, name: str, dialect: Dialect) -> tuple[str, str, Any, Callable[[Any], Any] | None]:
    if bind.callable is not None:
        raise TypeError("a driver statement cannot have a parameter whose value is computed per call")
    carried = _REQUIRED if bind.required else bind.value
    return bind.key, name, carried, bind.type.dialect_impl(dialect).bind_processor(dialect)


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
