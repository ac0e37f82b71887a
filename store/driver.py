"""The webhook's hot statements, run straight on the database driver.

A text message runs five statements (the replay guard's nonce, the retry claim, the candidate's row, the
settled reply, the two transcript rows). Through SQLAlchemy's execution layer each cost about as much CPU
again as the driver's own work: a cache key built from the statement, a compiled-cache lookup, an
execution context, a result object. `DriverStatement` compiles a Core statement once per dialect and keeps what
that layer would work out on every call (the SQL text, the order of its parameters, each column type's
bind and result processing, which is how sealed columns are sealed and opened), then runs it on the
session's own DBAPI connection, inside the session's transaction.

What it does not do, and so is refused when the statement is built: column defaults and onupdates it
would have to fill in (callers pass every column), and cursor events (`before_cursor_execute` does not
see these statements). A driver error goes through the connection's own error handling, so it comes
out exactly as from SQLAlchemy: wrapped (IntegrityError, OperationalError, ...), and a lost connection
invalidated with `connection_invalidated` set (store.db.connection_lost), the pool's other connections
too, which is what the webhook's reconnect relies on.

Round trips (psycopg): the statements go out through store/wire.py, straight on libpq, and a batch of them
makes one round trip. The transaction's BEGIN rides with its first batch (store/db.begin_owed); the writes
whose results nobody reads (`execute_at_commit`: the settled reply, the transcript rows) are held until the
session commits and go out with the COMMIT; `queue` holds statements until some statement's rows are needed,
so that the replay guard's nonce, the retry claim and the candidate's row go out together; a locked row's
changes (`update_at_commit`) go out as one UPDATE in the COMMIT's batch instead of through the ORM's flush; and
a transaction that keeps only the record of a read-only answer commits without waiting for the disk
(`commit_relaxed`: a SET LOCAL in the same batch). A text message makes two round trips to PostgreSQL, and none
to Redis: the nonce, the claim and the candidate's row with the BEGIN; the candidate's new state, the
transcript and the reply with the COMMIT.
"""
from __future__ import annotations

import contextlib
import functools
import re
import weakref
from dataclasses import dataclass
from inspect import signature
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import bindparam, event, inspect, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import ColumnProperty, Mapper, Session
from sqlalchemy.sql import Delete, Insert, Select, Update

from store import wire
from store.db import begin_owed, connection_of


@dataclass(frozen=True)
class _Compiled:
    sql: str | bytes  # psycopg: bytes with $1, $2, ... in the order of slots (store/wire.py sends it)
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
    rows = _send(connection, _before(session) + [(compiled.sql, _arguments(compiled, params), False,
                                                  compiled.returns_rows)])[-1]
    return _processed_rows(rows, compiled)


def execute_on(connection: Connection, statement: DriverStatement, params: dict) -> list[tuple]:
    """execute() on a connection in a transaction of its own, with no session (store.db.snapshot)."""
    compiled = statement.compiled(connection.dialect)
    rows = _send(connection, [(compiled.sql, _arguments(compiled, params), False, compiled.returns_rows)])[0]
    return _processed_rows(rows, compiled)


def executemany(session: Session, statement: DriverStatement, rows: Iterable[dict]) -> None:
    """Runs the statement once per set of parameters, in one driver call (psycopg pipelines them)."""
    connection = connection_of(session)
    compiled = statement.compiled(connection.dialect)
    _send(connection, _before(session) + [(compiled.sql, [_arguments(compiled, params) for params in rows], True,
                                           False)])


class Queued:
    """A statement queue() took: its rows once they are in."""

    __slots__ = ("_session", "_compiled", "_rows")

    def __init__(self, session: Session, compiled: _Compiled, rows: list[tuple] | None = None):
        self._session = session
        self._compiled = compiled
        self._rows = rows

    def rows(self) -> list[tuple]:
        """Sends what the transaction has queued, this statement included, if that has not happened yet."""
        if self._rows is None:
            _send_queued(self._session)
            if self._rows is None:
                raise InvalidRequestError("a queued statement's transaction ended before it was sent")
        return self._rows


def queue(session: Session, statement: DriverStatement, params: dict) -> Queued:
    """The statement, to be sent with the ones queued after it: on psycopg nothing goes out until some
    statement's rows are asked for (Queued.rows(), a later execute(), the commit), and then every statement
    queued meanwhile goes out in order in one pipeline, the transaction's BEGIN first when it is owed (one
    round trip where each would cost its own). Elsewhere it runs at once. A statement queued after another
    runs after it, so it may depend on what that one wrote; only an ORM query in between would not see them."""
    connection = connection_of(session)
    compiled = statement.compiled(connection.dialect)
    if connection.dialect.driver != "psycopg":
        return Queued(session, compiled, execute(session, statement, params))
    queued = Queued(session, compiled)
    waiting = _transactions_list(session, _QUEUED)
    waiting.extend(_take(session, _HELD))  # held before it: they go out first, as before execute()
    waiting.append((compiled.sql, _arguments(compiled, params), False, compiled.returns_rows, queued))
    return queued


def execute_at_commit(session: Session, statement: DriverStatement, params: dict) -> None:
    """The statement, run when the session commits its transaction (never if it rolls back): after the
    ORM's flush, before the COMMIT, and on psycopg in the COMMIT's round trip. Nothing can read its
    result, so it is only for a transaction's last writes: a later driver statement in the same transaction
    runs the held ones first, but an ORM query does not see them."""
    _hold(session, statement, [params], many=False)


def executemany_at_commit(session: Session, statement: DriverStatement, rows: Iterable[dict]) -> None:
    """executemany, held for the commit as execute_at_commit."""
    _hold(session, statement, list(rows), many=True)


def update_at_commit(session: Session, instance: Any) -> None:
    """`instance`'s changed columns, written when the session commits by one UPDATE in the commit's batch (on
    psycopg the COMMIT's round trip) instead of by the ORM's flush: a round trip less, and none of the flush's
    bookkeeping. Only for a row this transaction holds locked (FOR UPDATE, or SQLite's one writer): the ORM's
    flush checks that its UPDATE found the row, and this cannot, but a locked row cannot go away. The changes
    are the ones the instance has when the session commits; before_update listeners run and onupdate columns
    are set, as the flush would. An instance the statement cannot express (a changed relationship, a version
    column, an after_update listener, more than one table) is left to the flush, as is one that is flushed
    before the commit anyway (autoflush). Rows of one transaction, like its held statements."""
    updates = _transactions_list(session, _UPDATES)
    if not any(held is instance for held in updates):
        updates.append(instance)


def commit_relaxed(session: Session) -> None:
    """This transaction's COMMIT returns once what it wrote is visible, without waiting for the write-ahead log
    to reach the disk (PostgreSQL's synchronous_commit off, for this transaction alone, sent in the COMMIT's
    round trip). A crash of the database server within about 0.6 s after (three wal_writer_delay) may then
    lose the transaction: all of it, never a part. Only for a transaction whose loss costs nothing but its
    record. Nothing changes on SQLite, whose commits in WAL mode with synchronous=NORMAL never wait for the
    disk (a power cut can lose the last ones there too)."""
    # Before its first statement a session has no transaction yet (it begins one when first used), and the
    # mark made then must still belong to the transaction that follows.
    if session.get_transaction() is None:
        session.begin()
    _transactions_list(session, _RELAXED).append(True)


def _relaxed(session: Session) -> bool:
    return bool(_take(session, _RELAXED))


# session.info: (the transaction, [...]) of statements waiting to be sent in it
_HELD = "driver_held"  # for its commit: (sql, arguments, many, fetch)
_QUEUED = "driver_queued"  # until some statement's rows are needed: (sql, arguments, many, fetch, Queued)
_UPDATES = "driver_updates"  # instances whose changes go out with the commit (update_at_commit)
_RELAXED = "driver_relaxed"  # [True] once commit_relaxed was called


def _hold(session: Session, statement: DriverStatement, rows: list[dict], many: bool) -> None:
    connection = connection_of(session)
    compiled = statement.compiled(connection.dialect)
    arguments = [_arguments(compiled, params) for params in rows]
    _transactions_list(session, _HELD).append((compiled.sql, arguments if many else arguments[0], many, False))


def _transactions_list(session: Session, name: str) -> list:
    transaction = session.get_transaction()
    waiting = session.info.get(name)
    if waiting is None or waiting[0] is not transaction:  # none yet, or a rolled-back transaction's
        waiting = session.info[name] = (transaction, [])
    return waiting[1]


def _take(session: Session, name: str) -> list[tuple]:
    waiting = session.info.pop(name, None)
    if waiting is None or waiting[0] is not session.get_transaction():
        return []
    return waiting[1]


def _before(session: Session) -> list[tuple]:
    """What must go out before a statement in the session's transaction: what it queued, then what it held
    for the commit (a statement that might read what they write must come after them)."""
    if _QUEUED not in session.info and _HELD not in session.info:
        return []
    return _take(session, _QUEUED) + _take(session, _HELD)


def _send_queued(session: Session) -> None:
    batch = _before(session)
    if batch:
        _send(connection_of(session), batch)


@event.listens_for(Session, "before_commit")
def _commit_held(session: Session) -> None:
    """Every session's commit (a class-wide listener: only a session holding statements does anything).
    The ORM's changes are flushed first, as the commit itself would; then on psycopg the held statements and
    the COMMIT go out in one pipeline (SQLAlchemy's own commit then finds no transaction to end)."""
    if not any(name in session.info for name in (_HELD, _QUEUED, _UPDATES, _RELAXED)) \
            or session.in_nested_transaction():
        return  # nothing waiting, or a savepoint's release: not yet
    connection = connection_of(session)
    psycopg = connection.dialect.driver == "psycopg"
    relaxed = _relaxed(session) and psycopg
    updates = [statement for instance in _take(session, _UPDATES)
               if (statement := _update_of(session, connection, instance)) is not None]
    if _QUEUED in session.info and (session.new or session.dirty or session.deleted):
        _send_queued(session)  # queued before the ORM's changes: they go out first
    session.flush()
    batch = _take(session, _QUEUED) + updates + _take(session, _HELD)
    if batch or relaxed:
        _send(connection, batch, commit=psycopg, relaxed=relaxed)


def _update_of(session: Session, connection: Connection, instance: Any) -> tuple | None:
    """update_at_commit's statement for `instance`, which is then as the flush leaves it (nothing to write);
    None when it has nothing to write or is left to the flush."""
    state = inspect(instance)
    if not state.modified or not state.persistent or state.session is not session:
        return None
    mapper = state.mapper
    columns = _plain_columns(mapper)
    if columns is None or any(key not in columns for key in state.committed_state):
        return None
    mapper.dispatch.before_update(mapper, connection, state)  # listeners get the instance, as from the flush
    changed = [key for key in state.committed_state if state.attrs[key].history.has_changes()]
    if any(key not in columns for key in state.committed_state):
        return None  # a listener changed what the statement cannot write: the flush does it all
    if changed:
        for key, default in _onupdates(mapper).items():
            if key not in changed:
                state.dict[key] = default.arg if default.is_scalar else default.arg.__wrapped__()
                changed.append(key)
    values = {key: state.dict[key] for key in changed}
    state._commit_all(state.dict, session.identity_map)  # as the flush leaves a row it wrote (private, pinned 2.0)
    if not values:
        return None
    statement = _update_statement(mapper, tuple(sorted(values)))
    compiled = statement.compiled(connection.dialect)
    params = {f"set_{key}": value for key, value in values.items()}
    params.update((f"key_{index}", value) for index, value in enumerate(state.key[1]))
    return compiled.sql, _arguments(compiled, params), False, False


# Per mapper (each cached for the process, like the compiled statements): its attributes that are one plain
# column of its one table, its onupdate defaults, and the UPDATE of a set of its columns.

@functools.cache
def _plain_columns(mapper: Mapper) -> dict | None:
    """{key: column} of the mapper's attributes that are one plain column of its one table; None if
    update_at_commit cannot write its rows at all."""
    if (mapper.version_id_col is not None or len(mapper.tables) != 1 or mapper.dispatch.after_update
            or not all(_without_context(column.onupdate) for column in mapper.local_table.columns
                       if column.onupdate is not None)):
        return None  # a version check, a joined table, a listener after the write, an onupdate needing a context
    columns = {}
    for prop in mapper.column_attrs:
        if isinstance(prop, ColumnProperty) and len(prop.columns) == 1 and prop.columns[0].table is mapper.local_table:
            if not prop.columns[0].primary_key:
                columns[prop.key] = prop.columns[0]
    return columns


def _without_context(default) -> bool:
    """A scalar onupdate, or a function of no arguments (SQLAlchemy wraps those, keeping the function as
    __wrapped__); not a SQL expression or a function of the execution context."""
    if default.is_scalar:
        return True
    function = getattr(default.arg, "__wrapped__", None) if default.is_callable else None
    try:
        return function is not None and not any(
            parameter.default is parameter.empty and parameter.kind in (parameter.POSITIONAL_ONLY,
                                                                        parameter.POSITIONAL_OR_KEYWORD)
            for parameter in signature(function).parameters.values())
    except (TypeError, ValueError):  # no signature to read: left to the flush
        return False


@functools.cache
def _onupdates(mapper: Mapper) -> dict:
    return {mapper.get_property_by_column(column).key: column.onupdate
            for column in mapper.local_table.columns if column.onupdate is not None}


@functools.cache
def _update_statement(mapper: Mapper, keys: tuple[str, ...]) -> DriverStatement:
    table, columns = mapper.local_table, _plain_columns(mapper)
    where = [column == bindparam(f"key_{index}") for index, column in enumerate(mapper.primary_key)]
    return DriverStatement(update(table).where(*where).values({columns[key]: bindparam(f"set_{key}") for key in keys}))


_PIPELINE_OFF = 0  # psycopg.pq.PipelineStatus.OFF (not imported: psycopg is only there with PostgreSQL)


def _send(connection: Connection, batch: list[tuple], commit: bool = False,
          relaxed: bool = False) -> list[list[tuple]]:
    """Runs each statement of the batch in order, (sql, arguments, many, fetch[, Queued]), and with commit a
    COMMIT after them (with relaxed, one that does not wait for the disk: commit_relaxed); each statement's
    rows (fetch: it returns rows, known from the statement, since psycopg builds cursor.description afresh
    each time it is read), also handed to its Queued. On psycopg
    the batch goes out through store/wire.py in one round trip, the transaction's BEGIN first when it is owed
    (store.db.begin_owed). A driver error comes out as SQLAlchemy's (see the module's docstring)."""
    dbapi_connection = connection.connection.dbapi_connection
    psycopg = connection.dialect.driver == "psycopg"
    begin = psycopg and begin_owed(connection)
    cursors = []
    try:
        if psycopg:
            results = wire.send(dbapi_connection, _prepared_on(connection), batch, begin, commit, relaxed)
            return [_hand_over(statement, rows) for statement, rows in zip(batch, results)]
        results = []
        for statement in batch:  # one at a time, each fetched before the next runs (sqlite3's cursors share)
            cursors.append(_execute(dbapi_connection, statement))
            results.append(_hand_over(statement, cursors[-1].fetchall() if statement[3] else []))
        return results
    except BaseException as error:
        if psycopg and dbapi_connection.pgconn.pipeline_status != _PIPELINE_OFF:
            # Cut off with results still owed (pg_terminate_backend mid-pipeline, seen in the cohort load
            # test, or a value that failed to dump halfway through the batch): libpq cannot leave pipeline
            # mode, and the connection is not yet marked broken. Closed, it counts as lost: SQLAlchemy
            # invalidates it and the webhook runs the message again, instead of the pool's reset failing on it.
            dbapi_connection.close()
        if not isinstance(error, connection.dialect.loaded_dbapi.Error):
            raise
        # What SQLAlchemy does with a driver error (private, stable in the pinned 2.0): wraps it, and on a
        # lost connection invalidates it and the pool's older ones.
        sql = "; ".join((["BEGIN"] if begin else []) + [_text(statement[0]) for statement in batch]
                        + (["SET LOCAL synchronous_commit TO off"] if commit and relaxed else [])
                        + (["COMMIT"] if commit else []))
        connection._handle_dbapi_exception(error, sql, [statement[1] for statement in batch], None, None)
        raise  # not reached: the call above raises
    finally:
        for cursor in cursors:
            with contextlib.suppress(connection.dialect.loaded_dbapi.Error):  # a lost connection may refuse
                cursor.close()


_PREPARED = "driver_prepared"  # the DBAPI connection's info: (that connection, store/wire.py's prepared names)


def _prepared_on(connection: Connection) -> dict:
    info = connection.connection.info
    held = info.get(_PREPARED)
    if held is None or held[0] is not connection.connection.dbapi_connection:
        held = info[_PREPARED] = (connection.connection.dbapi_connection, {})
    return held[1]


def _text(sql: str | bytes) -> str:
    return sql.decode() if isinstance(sql, bytes) else sql


def _hand_over(statement: tuple, rows: list[tuple]) -> list[tuple]:
    """The statement's rows, handed to its Queued (processed) when it has one."""
    if len(statement) > 4:
        statement[4]._rows = _processed_rows(rows, statement[4]._compiled)
    return rows


def _execute(dbapi_connection, statement: tuple):
    sql, arguments, many = statement[:3]
    cursor = dbapi_connection.cursor()
    if many:
        cursor.executemany(sql, arguments)
    else:
        cursor.execute(sql, arguments)
    return cursor


def _processed_rows(rows: list[tuple], compiled: _Compiled) -> list[tuple]:
    if compiled.results:
        return [_processed(row, compiled.results) for row in rows]
    return rows


def _arguments(compiled: _Compiled, params: dict):
    """The driver's parameters, as SQLAlchemy's construct_params and bind processing would make them."""
    values = []
    for key, name, carried, process in compiled.slots:
        value = params[key] if key in params else params[name] if name in params else carried
        if value is _REQUIRED:
            raise InvalidRequestError(f"A value is required for bind parameter {key!r}")
        values.append(value if process is None else process(value))
    return tuple(values)


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
    sql = compiled.string
    if dialect.driver == "psycopg":
        sql = _numbered(sql, names).encode()
    elif not compiled.positional:
        raise TypeError(f"driver statements run on sqlite3 and psycopg, not {dialect.driver}")
    results = tuple((index, process) for index, column in enumerate(statement.exported_columns)
                    if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None)
    return _Compiled(sql, slots, results,
                     returns_rows=bool(statement.exported_columns))


_PYFORMAT = re.compile(r"%%|%\(([^)]+)\)s")


def _numbered(sql: str, names: tuple[str, ...]) -> str:
    """SQLAlchemy's psycopg SQL (%(name)s, a literal % doubled) with PostgreSQL's own $n, n the name's place."""
    number = {name: index for index, name in enumerate(names, 1)}
    return _PYFORMAT.sub(lambda found: "%" if found.group(1) is None else f"${number[found.group(1)]}", sql)


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
