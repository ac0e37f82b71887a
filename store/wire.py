"""store/driver.py's statements on PostgreSQL: a batch in one round trip, straight on libpq.

psycopg's cursor spends about 45 µs of Python on each statement (its query conversion, its prepared-
statement bookkeeping, a result object per call) and 2-3 times that on entering and leaving a pipeline. A
webhook message's statements are known in advance and compiled once, so this sends them itself: libpq's
pipeline mode, psycopg's C adapters to dump the parameters and load the rows, each statement prepared once
per connection under a name of ours. A text message's database work cost its process 230 µs this way
against 80 µs (a micro-benchmark of the claim, the candidate's row, the reply and two transcript rows on
this machine), and two round trips instead of four.

Prepared statements: named `collector_<n>` per connection, keyed by the SQL and the parameters' types (as
psycopg keys its own: a value dumped as int8 cannot go into a statement prepared for int2). Only a prepare
the server confirmed is remembered. psycopg must not prepare statements of its own on these connections
(store/db sets prepare_threshold to None): after a ROLLBACK it sends DEALLOCATE ALL, which would take ours
with them.
"""
from __future__ import annotations

from typing import Any

# What each result before the sync is: _COMMAND (BEGIN, COMMIT), a prepare's (key, name), a statement's index.
_COMMAND = object()


def send(dbapi_connection: Any, prepared: dict, batch: list[tuple], begin: bool, commit: bool,
         relaxed: bool = False) -> list[list[tuple]]:
    """Sends BEGIN (with begin), each (sql, arguments, many, fetch, ...) of the batch in order, COMMIT (with
    commit; with relaxed too, a COMMIT that does not wait for the WAL's flush: store/driver.commit_relaxed), then
    waits once; each statement's rows (raw, as psycopg's cursor would return them; [] unless
    fetch). `sql` is bytes with $n parameters and `arguments` their values in order (a list of those with many).
    `prepared`: this connection's {(sql, types): name}, updated with what the server prepared. The first
    error the server reported is raised as psycopg raises it, after the pipeline is drained; a failing
    connection raises psycopg's OperationalError with the pipeline still open (the caller closes it)."""
    psycopg = _psycopg()
    pgconn = dbapi_connection.pgconn
    transformer = psycopg.adapt.Transformer(dbapi_connection)
    expected: list = []
    preparing: dict = {}
    pgconn.enter_pipeline_mode()
    if begin:
        pgconn.send_query_params(b"BEGIN", None)
        expected.append(_COMMAND)
    for index, (sql, arguments, many, _fetch, *_) in enumerate(batch):
        for values in arguments if many else (arguments,):
            parameters = transformer.dump_sequence(values, _auto_formats(len(values)))
            key = (sql, transformer.types)
            name = prepared.get(key) or preparing.get(key)
            if name is None:
                name = preparing[key] = f"collector_{len(prepared) + len(preparing)}".encode()
                pgconn.send_prepare(name, sql, param_types=transformer.types)
                expected.append((key, name))
            pgconn.send_query_prepared(name, parameters, param_formats=transformer.formats)
            expected.append(index)
    if commit and relaxed:
        pgconn.send_query_params(b"SET LOCAL synchronous_commit TO off", None)
        expected.append(_COMMAND)
    if commit:
        pgconn.send_query_params(b"COMMIT", None)
        expected.append(_COMMAND)
    pgconn.pipeline_sync()
    return _receive(dbapi_connection, transformer, prepared, batch, expected)


def begin(dbapi_connection: Any) -> None:
    """BEGIN on its own, as psycopg sends it when it begins a transaction itself: a simple query, without the
    cursor's Python around it (for SQLAlchemy's own statements, store/db.begin_owed)."""
    psycopg = _psycopg()
    pgconn = dbapi_connection.pgconn
    pgconn.send_query(b"BEGIN")
    for result in dbapi_connection.wait(psycopg.generators.execute(pgconn)):
        if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=dbapi_connection.info.encoding)


def _receive(dbapi_connection: Any, transformer: Any, prepared: dict, batch: list[tuple],
             expected: list) -> list[list[tuple]]:
    psycopg = _psycopg()
    status = psycopg.pq.ExecStatus
    pgconn = dbapi_connection.pgconn
    rows: list[list[tuple]] = [[] for _ in batch]
    error = None
    results = dbapi_connection.wait(_exchange(pgconn, psycopg))
    sync = results.pop()
    if sync.status != status.PIPELINE_SYNC or len(results) != len(expected):
        raise psycopg.InternalError(f"expected {len(expected)} results and the pipeline's sync, got "
                                    f"{[status(result.status).name for result in results + [sync]]}")
    for expect, result in zip(expected, results):
        if result.status == status.FATAL_ERROR:
            error = error or psycopg.errors.error_from_result(result, encoding=dbapi_connection.info.encoding)
        elif result.status == status.PIPELINE_ABORTED:
            continue  # after an error: the server skipped it
        elif isinstance(expect, tuple):
            key, name = expect
            prepared[key] = name
        elif expect is not _COMMAND and result.status == status.TUPLES_OK and batch[expect][3]:
            transformer.set_pgresult(result)
            rows[expect] = transformer.load_rows(0, result.ntuples, tuple)
    pgconn.exit_pipeline_mode()
    if error is not None:
        raise error
    return rows


def _exchange(pgconn: Any, psycopg: Any):
    """A generator for psycopg's wait(): flushes what was sent, then collects every result up to and with
    the pipeline's sync, reading the socket whenever libpq has no whole result yet. One wait for the whole
    batch: psycopg's own generators take one per statement (a batch's answer usually arrives in one read).
    A dead connection raises psycopg's OperationalError (from consume_input, or here)."""
    wait_r, wait_rw, ready_r = psycopg.waiting.WAIT_R, psycopg.waiting.WAIT_RW, psycopg.waiting.READY_R
    sync = psycopg.pq.ExecStatus.PIPELINE_SYNC
    while pgconn.flush() != 0:  # a batch larger than the socket's buffer
        if (yield wait_rw) & ready_r:
            pgconn.consume_input()
    results, ended = [], False
    while True:
        while pgconn.is_busy():
            if (yield wait_r):
                pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            if ended:  # nothing more will come: the connection broke before the sync
                raise psycopg.OperationalError(f"the connection ended before the pipeline's sync: "
                                               f"{pgconn.get_error_message()}")
            ended = True  # the end of one statement's results
            continue
        ended = False
        results.append(result)
        if result.status == sync:
            return results


_FORMATS: dict[int, list] = {}


def _auto_formats(count: int) -> list:
    formats = _FORMATS.get(count)
    if formats is None:
        formats = _FORMATS[count] = [_psycopg().adapt.PyFormat.AUTO] * count
    return formats


_MODULE = None


def _psycopg():
    """psycopg, imported at the first statement (a process on SQLite never needs it)."""
    global _MODULE
    if _MODULE is None:
        import psycopg
        import psycopg.generators
        import psycopg.waiting

        _MODULE = psycopg
    return _MODULE
