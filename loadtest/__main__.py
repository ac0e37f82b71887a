"""The cohort load test of issue 8, against real server processes on 127.0.0.1.

    .venv/bin/python -m loadtest [--profiles sqlite postgres] [--faults none kill] [--candidates 300]
                                 [--concurrency 48] [--postgres-url URL] [--redis-url URL]

For each profile (SQLite: the embedded default; PostgreSQL + Redis with three server processes) and
each fault (none; one server process killed with SIGKILL mid-run and restarted a few seconds later):
a fresh database, a roster imported with `flask roster import`, `flask serve` processes and the huey
consumer `flask jobs work`, the fake WeChat API in this process; then every candidate walks the whole
conversation over signed, AES-encrypted XML with WeChat's 5 s timeout and three retries, sends a real
photo and pays on the sandbox page. Every message must get a reply (passive, or a customer-service
message), nothing may be doubled, and the database must hold every message once and every candidate
in the expected state. Prints a table per run and a summary; exits 1 if any run failed.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere: the product's packages are importable

from loadtest.cluster import Profile, require_loopback  # noqa: E402
from loadtest.report import summary_table  # noqa: E402
from loadtest.run import CUSTOM_WAIT_SECONDS, SHARED_PHOTOS, Options, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the servers and the consumer are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results, skipped = [], []
    for profile_name in args.profiles:
        profile = make_profile(profile_name, args)
        if isinstance(profile, str):
            skipped.append(profile)
            print(f"skipped: {profile}", flush=True)
            continue
        for fault in args.faults:
            label = f"{profile.name}×{profile.servers}" + (" + kill" if fault == "kill" else "")
            print(f"\n--- {label}: starting", flush=True)
            result = run(profile, label, fault == "kill", options_from(args))
            print(result.render(), flush=True)
            results.append(result)
    print("\n=== summary ===")
    print(summary_table(results))
    for reason in skipped:
        print(f"skipped: {reason}")
    return 1 if any(result.failed for result in results) else 0


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument("--faults", nargs="+", choices=["none", "kill"], default=["none", "kill"])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--sqlite-servers", type=int, default=1, help="server processes on SQLite (default 1)")
    parser.add_argument("--postgres-servers", type=int, default=3)
    parser.add_argument("--postgres-url", default="", help="a scratch PostgreSQL database on 127.0.0.1: EMPTIED")
    parser.add_argument("--redis-url", default="", help="Redis on 127.0.0.1 for the PostgreSQL profile")
    parser.add_argument("--kill-at", type=float, default=0.4, help="kill when this share of messages is done")
    parser.add_argument("--restart-after", type=float, default=3.0, help="seconds from the kill to the restart")
    parser.add_argument("--custom-wait", type=float, default=CUSTOM_WAIT_SECONDS)
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (configs, logs, database)")
    return parser.parse_args(argv)


def make_profile(name: str, args) -> Profile | str:
    """The profile, or why it cannot run here."""
    if name == "sqlite":
        return Profile("sqlite", args.sqlite_servers)
    if not args.postgres_url or not args.redis_url:
        return "postgres: give --postgres-url and --redis-url (make loadtest passes LOADTEST_POSTGRES_URL/_REDIS_URL)"
    require_loopback(args.postgres_url, "the PostgreSQL database")
    require_loopback(args.redis_url, "Redis")
    problem = _unreachable(args.postgres_url, args.redis_url)
    if problem:
        return f"postgres: {problem}"
    return Profile("postgres", args.postgres_servers, args.postgres_url, args.redis_url)


def _unreachable(database_url: str, redis_url: str) -> str | None:
    import redis
    from sqlalchemy import create_engine

    _create_database_if_missing(database_url)
    engine = create_engine(database_url)
    try:
        engine.connect().close()
    except Exception as exc:
        return f"PostgreSQL at {database_url.split('@')[-1]} is not reachable ({type(exc).__name__})"
    finally:
        engine.dispose()
    try:
        redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis at {redis_url} is not reachable ({type(exc).__name__})"
    return None


def _create_database_if_missing(database_url: str) -> None:
    """A fresh machine has the server but not the scratch database: create it (loopback only, checked above)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                        {"name": url.database}).scalar()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    except Exception:
        pass  # unreachable or not allowed: the connection check that follows says why
    finally:
        server.dispose()


def options_from(args) -> Options:
    return Options(candidates=args.candidates, concurrency=args.concurrency, kill_at=args.kill_at,
                   restart_after=args.restart_after, custom_wait=args.custom_wait, photos=args.photos,
                   keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
