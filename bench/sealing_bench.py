"""Issue 14's conversion of an existing database, timed: 50 000 graduates at revision 0013 (numbers in
plain text) through `flask db upgrade` (the migration, then the batched sealing), then `flask keys rotate`
to a new key.

    .venv/bin/python bench/sealing_bench.py [--graduates 50000] [--database-url URL]

The cohort is tests/test_sealing_migration.py's: the roster, an account bound to every second graduate
with its ID and phone numbers typed into the transcript three ways and the confirm card answered, an SMS
outbox row each, a reminder campaign, SMS codes and kept replies (about 5.5 rows per graduate). Both
commands run as separate processes, uninterrupted (the test kills them part-way); afterwards every value
is checked to be sealed under the key and the database searched for plain numbers. A throw-away SQLite
file, or with --database-url a scratch PostgreSQL database (it is EMPTIED).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable

from bench.roster_match_bench import fresh_database  # noqa: E402
from tests.journey import TEST_PHOTO_KEY  # noqa: E402
from tests.test_sealing_migration import (NEW_KEY, config_for, database_bytes, fill_at_0013, key_ids,  # noqa: E402
                                          numbers_in, run_to_the_end)


def check(url: str, cohort, key: str) -> str:
    keys = key_ids(url)
    if set(keys) != {key}:
        raise SystemExit(f"bench: values not under key {key}: {keys}")
    left = numbers_in(database_bytes(url).raw, cohort.id_numbers, cohort.phones)
    if left:
        raise SystemExit(f"bench: numbers left in plain text: {left}")
    return f"{sum(keys.values())} values under key {key}, no plain number in the database"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graduates", type=int, default=50_000)
    parser.add_argument("--database-url", default="", help="a scratch PostgreSQL database (EMPTIED); default SQLite")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sealing-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    where = "SQLite" if url.startswith("sqlite") else url.split("@")[-1]

    fresh_database(url, "0013")
    started = time.perf_counter()
    cohort = fill_at_0013(url, args.graduates)
    filled = time.perf_counter() - started
    rows = sum(cohort.counts.values())
    print(f"sealing: {args.graduates} graduates, {rows} rows at revision 0013, {where} (filled in {filled:.1f} s)")

    config = config_for(workdir / "v1", url, {"1": TEST_PHOTO_KEY}, "1")
    _, upgraded = run_to_the_end(config, "db", "upgrade")
    print(f"  flask db upgrade (0014 + sealing): {upgraded:.1f} s, {rows / upgraded:.0f} rows/s; "
          f"{check(url, cohort, '1')}")

    both = config_for(workdir / "v2", url, {"1": TEST_PHOTO_KEY, "2": NEW_KEY}, "2")
    _, rotated = run_to_the_end(both, "keys", "rotate", "--by", "bench")
    print(f"  flask keys rotate (to a new key):  {rotated:.1f} s, {rows / rotated:.0f} rows/s; "
          f"{check(url, cohort, '2')}")


if __name__ == "__main__":
    main()
