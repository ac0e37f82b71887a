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

Round trips (psycopg): each statement is one, and so is the COMMIT. The writes whose results nobody reads
(`execute_at_commit`: the settled reply, the transcript rows) are held until the session commits and then
sent with the COMMIT in one pipeline: a text message makes four round trips to PostgreSQL instead of six
(BEGIN, the claim, the candidate's row, then the rest). The BEGIN psycopg sends before a transaction's first
statement cannot ride with it: in a pipeline psycopg waits for the BEGIN's answer before going on.
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import event
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
    _send_held(session, connection)
    return execute_on(connection, statement, params)


def execute_on(connection: Connection, statement: DriverStatement, params: dict) -> list[tuple]:
    """execute() on a connection in a transaction of its own, with no session (store.db.snapshot)."""
    compiled = statement.compiled(connection.dialect)
    rows = _run(connection, compiled.sql, _arguments(compiled, params), many=False, fetch=compiled.returns_rows)
    if compiled.results:
        return [_processed(row, compiled.results) for row in rows]
    return rows


def executemany(session: Session, statement: DriverStatement, rows: Iterable[dict]) -> None:
    """Runs the statement once per set of parameters, in one driver call (psycopg pipelines them)."""
    connection = connection_of(session)
    _send_held(session, connection)
    compiled = statement.compiled(connection.dialect)
    _run(connection, compiled.sql, [_arguments(compiled, params) for params in rows], many=True, fetch=False)


def execute_at_commit(session: Session, statement: DriverStatement, params: dict) -> None:
    """The statement, run when the session commits its transaction (never if it rolls back): after the
    ORM's flush, before the COMMIT, and on psycopg in the COMMIT's round trip. Nothing can read its
    result, so it is only for a transaction's last writes: a later driver statement in the same transaction
    runs the held ones first, but an ORM query does not see them."""
    _hold(session, statement, [params], many=False)


def executemany_at_commit(session: Session, statement: DriverStatement, rows: Iterable[dict]) -> None:
    """executemany, held for the commit as execute_at_commit."""
    _hold(session, statement, list(rows), many=True)


_HELD = "driver_held"  # session.info: (the transaction, [(sql, arguments, many)]) held for its commit


def _hold(session: Session, statement: DriverStatement, rows: list[dict], many: bool) -> None:
    connection = connection_of(session)
    compiled = statement.compiled(connection.dialect)
    arguments = [_arguments(compiled, params) for params in rows]
    transaction = session.get_transaction()
    held = session.info.get(_HELD)
    if held is None or held[0] is not transaction:  # none yet, or a rolled-back transaction's
        held = session.info[_HELD] = (transaction, [])
    held[1].append((compiled.sql, arguments if many else arguments[0], many))


def _take_held(session: Session) -> list[tuple]:
    held = session.info.pop(_HELD, None)
    if held is None or held[0] is not session.get_transaction():
        return []
    return held[1]


def _send_held(session: Session, connection: Connection) -> None:
    """The held statements now, before a statement that might read what they write."""
    if _HELD in session.info:
        for sql, arguments, many in _take_held(session):
            _run(connection, sql, arguments, many, fetch=False)


@event.listens_for(Session, "before_commit")
def _commit_held(session: Session) -> None:
    """Every session's commit (a class-wide listener: only a session holding statements does anything).
    The ORM's changes are flushed first, as the commit itself would; then on psycopg the held statements and
    the COMMIT go out in one pipeline (SQLAlchemy's own commit then finds no transaction to end)."""
    if _HELD not in session.info or session.in_nested_transaction():  # a savepoint's release: not yet
        return
    session.flush()
    connection = connection_of(session)
    if connection.dialect.driver != "psycopg":
        _send_held(session, connection)
    elif held := _take_held(session):
        _pipeline_with_commit(connection, held)


def _pipeline_with_commit(connection: Connection, held: list[tuple]) -> None:
    dbapi_connection = connection.connection.dbapi_connection
    try:
        with dbapi_connection.pipeline(), dbapi_connection.cursor() as cursor:
            for sql, arguments, many in held:
                if many:
                    cursor.executemany(sql, arguments)
                else:
                    cursor.execute(sql, arguments)
            cursor.execute("COMMIT")
    except Exception as error:
        if dbapi_connection.pgconn.pipeline_status != _PIPELINE_OFF:
            # The server went away with results still owed (pg_terminate_backend mid-pipeline, seen in the
            # cohort load test): psycopg cannot leave pipeline mode and raises that instead of the
            # termination, on a connection not yet marked broken. Closed, it counts as lost: SQLAlchemy
            # invalidates it and the webhook runs the message again, instead of the pool's reset failing on it.
            dbapi_connection.close()
        if isinstance(error, connection.dialect.loaded_dbapi.Error):  # as _run: wrapped, a lost one invalidated
            connection._handle_dbapi_exception(error, "; ".join([sql for sql, _, _ in held] + ["COMMIT"]),
                                               [arguments for _, arguments, _ in held], None, None)
        raise


_PIPELINE_OFF = 0  # psycopg.pq.PipelineStatus.OFF (not imported: psycopg is only there with PostgreSQL)


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
    if isinstance(statement, Insert) and not statement.exported_columns:
        # Without it SQLAlchemy adds RETURNING of the primary key, for a result nobody reads here.
        statement = statement.inline()
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
