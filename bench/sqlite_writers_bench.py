"""How long SQLite writers in separate processes wait for the one writer lock: queued on the lock file
(store/db.py, what gunicorn's workers do since 5b7193e) against waiting in SQLite's busy handler.

    .venv/bin/python bench/sqlite_writers_bench.py [--processes 2] [--transactions 2000] [--hold-ms 0.5] [--work-ms 1.0]

Each process writes `--transactions` transactions through store.db.Database, as the webhook does: the writer
lock is taken at BEGIN IMMEDIATE and held for `--hold-ms` of CPU work (a text step holds it about 0.5 ms),
then `--work-ms` of CPU work follows outside it (parsing, the reply, the server: about 1 ms). Prints the wait
for the lock (from asking for a transaction to holding it) per run, p50 / p99 / max, and the throughput.
SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries, so a writer that
finds the lock taken waits at least a millisecond even when it is freed at once; on the lock file it is woken
when the holder commits.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `store` importable

from sqlalchemy import text  # noqa: E402

from store import db as store_db  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--hold-ms", type=float, default=0.5)
    parser.add_argument("--work-ms", type=float, default=1.0)
    args = parser.parse_args()
    print(f"{args.processes} processes x {args.transactions} write transactions, {args.hold_ms} ms held, "
          f"{args.work_ms} ms outside")
    print(f"{'writers queue on':18}{'wait p50 ms':>13}{'p99 ms':>9}{'max ms':>9}{'tx/s':>8}")
    for queue in ("the lock file", "busy handler"):
        waits, seconds = run(args, use_lock_file=queue == "the lock file")
        waits.sort()
        print(f"{queue:18}{statistics.median(waits):13.3f}{waits[int(len(waits) * 0.99)]:9.2f}{waits[-1]:9.2f}"
              f"{len(waits) / seconds:8.0f}", flush=True)


def run(args: argparse.Namespace, use_lock_file: bool) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory(prefix="sqlite-writers-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'writers.db'}"
        setup = store_db.Database(url)
        with setup.session() as session:
            session.execute(text("CREATE TABLE t (process INTEGER, n INTEGER, payload TEXT)"))
        setup.dispose()
        context = multiprocessing.get_context("fork")
        start, results = context.Event(), context.Queue()
        workers = [context.Process(target=write, args=(url, number, args, use_lock_file, start, results))
                   for number in range(args.processes)]
        for worker in workers:
            worker.start()
        began = time.perf_counter()
        start.set()
        waits = [wait for _ in workers for wait in results.get()]
        seconds = time.perf_counter() - began
        for worker in workers:
            worker.join()
        return waits, seconds


def write(url: str, number: int, args: argparse.Namespace, use_lock_file: bool, start, results) -> None:
    if not use_lock_file:
        store_db._lock_file_for = lambda database: None  # SQLite's busy handler alone, as before 5b7193e
    database = store_db.Database(url)
    waits = []
    start.wait()
    for n in range(args.transactions):
        asked = time.perf_counter()
        with database.session() as session:
            session.connection()  # BEGIN IMMEDIATE: the writer lock is held from here
            waits.append((time.perf_counter() - asked) * 1000)
            session.execute(text("INSERT INTO t VALUES (:p, :n, :x)"), {"p": number, "n": n, "x": "x" * 200})
            spin(args.hold_ms)
        spin(args.work_ms)
    database.dispose()
    results.put(waits)


def spin(milliseconds: float) -> None:
    until = time.thread_time() + milliseconds / 1000
    while time.thread_time() < until:
        pass


if __name__ == "__main__":
    main()
