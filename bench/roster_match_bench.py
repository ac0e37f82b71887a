"""Roster match latency with the ID numbers encrypted (issue 14) against a plaintext baseline, in the same run.

    .venv/bin/python bench/roster_match_bench.py [--graduates 20000] [--lookups 4000] [--database-url URL]

A throw-away SQLite database (or, with --database-url, a scratch PostgreSQL database: it is EMPTIED) is
migrated to head and gets N graduates through `flask roster import`, the real import: ID and phone numbers
sealed (AES-GCM), keyed hashes beside them. The same graduates go into a bare table in the same database,
`plain_roster`, with the ID number in plain text under a unique index and an ORM model shaped like RosterEntry.

Then the roster match the identity step runs (store.queries.match_roster: the look-up by ID number, then
name and level) is timed against the same function on the plaintext table, one look-up at a time,
interleaved in random order, for graduates on the roster (hits) and valid ID numbers nobody has (misses).
Printed: p50 and p99 in µs per side and the ratio encrypted / plaintext.
"""
from __future__ import annotations

import argparse
import base64
import csv
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable

from sqlalchemy import Integer, String, create_engine, select, text  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column  # noqa: E402

from rules.identity import check_digit  # noqa: E402
from store.migrate import upgrade  # noqa: E402

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建"
LEVELS = ("本科", "专科")


class PlainBase(DeclarativeBase):
    pass


class PlainRosterEntry(PlainBase):
    """The baseline: RosterEntry as it was before issue 14, the ID number in plain text."""
    __tablename__ = "plain_roster"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    exam_number: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    major: Mapped[str] = mapped_column(String(128))
    phone: Mapped[str | None] = mapped_column(String(20))


def plain_match(session, name: str, id_number: str, level: str) -> PlainRosterEntry | None:
    """store.queries.match_roster, line for line, on the plaintext table."""
    entry = session.scalar(select(PlainRosterEntry).where(PlainRosterEntry.id_number == id_number))
    if entry is None or entry.name != name or entry.level != level:
        return None
    return entry


def id_number(n: int) -> str:
    born = date(1985, 1, 1) + timedelta(days=n % 5000)
    first17 = f"110101{born:%Y%m%d}{n // 5000 % 1000:03d}"
    return first17 + check_digit(first17)


def graduate(n: int) -> dict:
    name = SURNAMES[n % len(SURNAMES)] + GIVEN[n // 20 % len(GIVEN)] + GIVEN[n // 600 % len(GIVEN)]
    return {"name": name, "id_number": id_number(n),
            "exam_number": f"0124{n:08d}", "level": LEVELS[n % 2], "major": "汉语言文学",
            "phone": f"139{n:08d}" if n % 2 else ""}


def write_config(workdir: Path, database_url: str) -> Path:
    config = workdir / "bench.toml"
    key = lambda: base64.b64encode(os.urandom(32)).decode()  # noqa: E731
    config.write_text(f"""database_url = "{database_url}"
data_dir = "{workdir / 'data'}"
secret_key = "{secrets.token_hex(32)}"
log_level = "WARNING"
[privacy]
keys = {{ 1 = "{key()}" }}
active_key = "1"
lookup_key = "{key()}"
""", encoding="utf-8")
    return config


def fresh_database(url: str, revision: str = "head") -> None:
    """An empty database at `revision` (PostgreSQL: the scratch database's schema dropped first)."""
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    upgrade(url, revision)


def import_roster(app, workdir: Path, graduates: list[dict]) -> float:
    path = workdir / "roster.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["姓名", "身份证号", "准考证号", "学历层次", "专业", "手机号"])
        for g in graduates:
            writer.writerow([g["name"], g["id_number"], g["exam_number"], g["level"], g["major"], g["phone"]])
    started = time.perf_counter()
    result = app.test_cli_runner().invoke(args=["roster", "import", str(path)])
    elapsed = time.perf_counter() - started
    if result.exit_code != 0 or f"新增 {len(graduates)}" not in result.output:
        raise SystemExit(f"bench: the roster import failed:\n{result.output}")
    return elapsed


def plain_copy(engine, graduates: list[dict]) -> float:
    PlainBase.metadata.create_all(engine)
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(PlainRosterEntry.__table__.insert(), [
            {"id": n, **{key: value or None for key, value in g.items()}} for n, g in enumerate(graduates, start=1)])
    return time.perf_counter() - started


def measure(database, probes: list[tuple[str, str, str, bool]]) -> dict[str, list[float]]:
    """Seconds per look-up, by "<side> <hit|miss>"; each probe runs on both sides, in random order."""
    from store.queries import match_roster  # the identity step's function, as it runs there

    times: dict[str, list[float]] = {}
    runs = [(side, probe) for probe in probes for side in ("encrypted", "plaintext")]
    random.Random(1).shuffle(runs)
    for start in range(0, len(runs), 100):
        with database.read() as session:
            for side, (name, number, level, on_roster) in runs[start:start + 100]:
                match = match_roster if side == "encrypted" else plain_match
                began = time.perf_counter()
                found = match(session, name, number, level)
                elapsed = time.perf_counter() - began
                if (found is not None) != on_roster:
                    raise SystemExit(f"bench: {side} match of {number[:6]}… gave {found!r}")
                session.expunge_all()  # every look-up loads its row, as a new message's session would
                times.setdefault(f"{side} {'hit' if on_roster else 'miss'}", []).append(elapsed)
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graduates", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=4_000, help="per side: four in five hits, one in five misses")
    parser.add_argument("--database-url", default="", help="a scratch PostgreSQL database (EMPTIED); default SQLite")
    args = parser.parse_args()

    from app import create_app

    workdir = Path(tempfile.mkdtemp(prefix="roster-match-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    fresh_database(url)
    app = create_app(write_config(workdir, url))
    database = app.extensions["collector"].db
    graduates = [graduate(n) for n in range(1, args.graduates + 1)]
    imported = import_roster(app, workdir, graduates)
    copied = plain_copy(database.engine, graduates)

    rng = random.Random(14)
    hits = [(g["name"], g["id_number"], g["level"], True) for g in rng.choices(graduates, k=args.lookups * 4 // 5)]
    misses = [("赵六", id_number(args.graduates + 1 + n), "本科", False) for n in range(args.lookups - len(hits))]
    measure(database, (hits + misses)[:200])  # warm the caches and the statement cache
    times = measure(database, hits + misses)
    database.dispose()

    where = "SQLite" if url.startswith("sqlite") else url.split("@")[-1]
    print(f"roster match: {args.graduates} graduates, {args.lookups} look-ups per side, {where}")
    print(f"  import: `flask roster import` (encrypted) {imported:.1f} s; "
          f"plaintext baseline bulk insert {copied:.1f} s")
    for kind in ("hit", "miss"):
        sealed, plain = times[f"encrypted {kind}"], times[f"plaintext {kind}"]
        p50s, p99s = percentile(sealed, 0.5) * 1e6, percentile(sealed, 0.99) * 1e6
        p50p, p99p = percentile(plain, 0.5) * 1e6, percentile(plain, 0.99) * 1e6
        print(f"  {kind:4}  encrypted p50 {p50s:7.0f} µs  p99 {p99s:7.0f} µs | plaintext p50 {p50p:7.0f} µs  "
              f"p99 {p99p:7.0f} µs | ratio p50 {p50s / p50p:.2f}  p99 {p99s / p99p:.2f}  "
              f"(mean {statistics.fmean(sealed) * 1e6:.0f} vs {statistics.fmean(plain) * 1e6:.0f} µs)")


if __name__ == "__main__":
    main()
