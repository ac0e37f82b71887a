"""The cohort load test, against real server processes on 127.0.0.1.

    .venv/bin/python -m loadtest [--profiles cohort sqlite postgres] [--faults none kill] [--candidates N]
                                 [--concurrency N] [--postgres-url URL] [--redis-url URL]

By default (issue 15) one whole cohort through the production profile: PostgreSQL and Redis, `flask serve
--prod` (gunicorn, 3 sync workers) and 2 huey consumers, 5 000 candidates, 64 at a time, a member of
staff reviewing while they arrive (every 10th graduate's first photo rejected: the candidate hears of it
through the outbox and sends a new one, which is approved), SMS through the fake Tencent Cloud SMS; and
during the run a gunicorn worker killed with SIGKILL, a consumer killed with SIGKILL and started again,
and every database connection of the app terminated (pg_terminate_backend). Then: every notification
delivered once (the fakes count), every candidate approved with one paid order. Every process runs the
committed tree (`git archive HEAD` into the run's folder), so that a process restarted mid-run runs the
code the run started with even when the checkout changes meanwhile (`--working-tree` runs the checkout).

The smaller runs of issue 8 (`--profiles sqlite postgres`, 300 candidates, 48 at a time): for each
profile (SQLite: the embedded default; PostgreSQL + Redis with three `flask serve` processes) and
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

from loadtest.cluster import Profile, admin_connection, require_loopback  # noqa: E402
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
        for fault in args.faults or (["kill"] if profile.gunicorn else ["none", "kill"]):
            label = _label(profile, fault == "kill")
            print(f"\n--- {label}: starting", flush=True)
            result = run(profile, label, fault == "kill", options_from(args, profile))
            print(result.render(), flush=True)
            results.append(result)
    print("\n=== summary ===")
    print(summary_table(results))
    for reason in skipped:
        print(f"skipped: {reason}")
    return 1 if any(result.failed for result in results) else 0


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", choices=["cohort", "sqlite", "postgres"], default=["cohort"],
                        help="cohort: the production profile (issue 15); sqlite, postgres: the runs of issue 8")
    parser.add_argument("--faults", nargs="+", choices=["none", "kill"], default=None,
                        help="kill: the profile's faults (default: kill for cohort, none and kill for the others)")
    parser.add_argument("--candidates", type=int, default=None, help="default 5000 for cohort, 300 for the others")
    parser.add_argument("--concurrency", type=int, default=None, help="default 64 for cohort, 48 for the others")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn workers of the cohort profile")
    parser.add_argument("--consumers", type=int, default=2, help="huey consumers of the cohort profile")
    parser.add_argument("--reject-every", type=int, default=10,
                        help="cohort: the reviewer rejects every n-th graduate's first photo (0: none)")
    parser.add_argument("--cli-every", type=int, default=250,
                        help="cohort: every n-th approval through `flask review approve` (0: none)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of walking before the run stops")
    parser.add_argument("--sqlite-servers", type=int, default=1, help="server processes on SQLite (default 1)")
    parser.add_argument("--postgres-servers", type=int, default=3)
    parser.add_argument("--postgres-url", default="", help="a scratch PostgreSQL database on 127.0.0.1: EMPTIED")
    parser.add_argument("--redis-url", default="", help="Redis on 127.0.0.1 for the PostgreSQL profile")
    parser.add_argument("--kill-at", type=float, default=0.4, help="kill when this share of messages is done")
    parser.add_argument("--restart-after", type=float, default=3.0, help="seconds from the kill to the restart")
    parser.add_argument("--custom-wait", type=float, default=CUSTOM_WAIT_SECONDS)
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (configs, logs, database)")
    parser.add_argument("--working-tree", action="store_true",
                        help="run the working tree instead of the committed one (git archive HEAD, the default)")
    return parser.parse_args(argv)


def make_profile(name: str, args) -> Profile | str:
    """The profile, or why it cannot run here."""
    if name == "sqlite":
        return Profile("sqlite", args.sqlite_servers)
    servers = args.web_workers if name == "cohort" else args.postgres_servers
    if not args.postgres_url or not args.redis_url:
        return "postgres: give --postgres-url and --redis-url (make loadtest passes LOADTEST_POSTGRES_URL/_REDIS_URL)"
    require_loopback(args.postgres_url, "the PostgreSQL database")
    require_loopback(args.redis_url, "Redis")
    problem = _unreachable(args.postgres_url, args.redis_url)
    if problem:
        return f"postgres: {problem}"
    if name == "cohort":
        return Profile("cohort", servers, args.postgres_url, args.redis_url, gunicorn=True, consumers=args.consumers)
    return Profile("postgres", servers, args.postgres_url, args.redis_url)


def _label(profile: Profile, faults: bool) -> str:
    if profile.gunicorn:
        return (f"cohort: pg, gunicorn×{profile.servers}, consumers×{profile.consumers}"
                + (" + faults" if faults else ""))
    return f"{profile.name}×{profile.servers}" + (" + kill" if faults else "")


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
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    try:
        with admin_connection(database_url, database="postgres") as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                        {"name": name}).scalar()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        pass  # unreachable or not allowed: the connection check that follows says why


def options_from(args, profile: Profile) -> Options:
    production = profile.gunicorn
    candidates = args.candidates or (5000 if production else 300)
    return Options(candidates=candidates, concurrency=args.concurrency or (64 if production else 48),
                   kill_at=args.kill_at, restart_after=args.restart_after, custom_wait=args.custom_wait,
                   photos=args.photos, keep=args.keep,
                   time_limit=args.time_limit or max(900.0, 1.2 * candidates),
                   review=production, reject_every=args.reject_every, cli_every=args.cli_every, fake_sms=production,
                   snapshot=not args.working_tree)


if __name__ == "__main__":
    sys.exit(main())
