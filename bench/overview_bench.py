"""Overview page bench: /staff/overview with N candidates in SQLite, through the Flask test client.

    .venv/bin/python bench/overview_bench.py [--candidates 50000] [--runs 7]

A throw-away SQLite database gets N candidates spread over the conversation's steps and both levels, with
their roster entries, photos (some failed with the checker's findings, some passed, approved or rejected)
and paid orders, spread over the last three weeks; all inserted set-based (INSERT … SELECT over a recursive
sequence). An admin signs in through the real form; the page is then fetched `--runs` times. Printed: the
first (cold) and median (warm) page time, each figure's query time, and the console's home page as the
baseline of the same run (ratio). The target is under 1 s.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable

from sqlalchemy import func, select, text  # noqa: E402

from app import create_app  # noqa: E402
from staff import accounts, overview  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.models import Candidate, Order, Photo  # noqa: E402

PASSWORD = "bench-password-42"
STATES = ("welcome", "institution", "level", "identity", "phone", "confirm", "notice", "photo", "payment",
          "under_review", "approved")
FAILURES = ('[{"rule": "background.color"}, {"rule": "head.size"}]', '[{"rule": "quality.sharpness"}]',
            '[{"rule": "face.glasses"}, {"rule": "background.uniform"}, {"rule": "head.position"}]')

# Candidate n: state STATES[n % 11]; level 专科/本科 from the level step on; created within 21 days.
SEED = [
    """WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count)
    INSERT INTO roster_entries (id, name, id_number, exam_number, level, major, created_at, updated_at)
    SELECT n, '考生' || n, printf('110101199001%06d', n), printf('0124%08d', n),
           CASE n % 2 WHEN 0 THEN '本科' ELSE '专科' END, '汉语言文学', datetime('now', '-30 days'),
           datetime('now', '-30 days') FROM seq""",
    """WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count)
    INSERT INTO candidates (id, openid, state, level, name, id_number, roster_entry_id, created_at, updated_at)
    SELECT n, 'o_bench_' || n, json_extract(:states_json, '$[' || (n % 11) || ']'),
           CASE WHEN n % 11 >= 3 THEN CASE n % 2 WHEN 0 THEN '本科' ELSE '专科' END END,
           CASE WHEN n % 11 >= 4 THEN '考生' || n END, CASE WHEN n % 11 >= 4 THEN printf('110101199001%06d', n) END,
           CASE WHEN n % 11 >= 5 THEN n END,
           datetime('now', printf('-%d minutes', n % (21 * 24 * 60))), datetime('now') FROM seq""",
    # A failed upload for every candidate from the photo step on, and a passed one from payment on.
    """INSERT INTO photos (candidate_id, roster_entry_id, sha256, path, size_bytes, verdict, report, status, created_at)
    SELECT id, roster_entry_id, printf('%064d', id), 'x', 40000, 'fail',
           '{"verdict": "fail", "failures": ' || json_extract(:failures_json, '$[' || (id % 3) || ']') || ', "hints": []}', 'checked',
           datetime(created_at, '+10 minutes') FROM candidates WHERE state IN ('photo', 'payment', 'under_review', 'approved')""",
    """INSERT INTO photos (candidate_id, roster_entry_id, sha256, path, size_bytes, verdict, report, status,
                           reviewed_at, reviewed_by, created_at)
    SELECT id, roster_entry_id, printf('%064d', id + 1000000), 'x', 40000, 'pass',
           '{"verdict": "pass", "failures": [], "hints": []}',
           CASE state WHEN 'approved' THEN 'approved' WHEN 'under_review' THEN 'submitted' ELSE 'submitted' END,
           CASE state WHEN 'approved' THEN datetime(created_at, printf('+%d hours', 1 + id % 60)) END,
           CASE state WHEN 'approved' THEN 'reviewer' || (id % 5) END,
           datetime(created_at, '+20 minutes') FROM candidates WHERE state IN ('payment', 'under_review', 'approved')""",
    """INSERT INTO orders (out_trade_no, roster_entry_id, openid, amount_fen, status, gateway, created_at, paid_at)
    SELECT printf('B%015d', id), roster_entry_id, openid, 3000, 'paid', 'sandbox', datetime(created_at, '+25 minutes'),
           datetime(created_at, '+30 minutes') FROM candidates WHERE state IN ('under_review', 'approved')""",
]


def config_text(tmp: Path) -> str:
    return f"""database_url = "sqlite:///{tmp / 'bench.db'}"
data_dir = "{tmp / 'data'}"
log_level = "WARNING"
secret_key = "overview-bench-secret-key-0123456789abcdef"
[console]
secure_cookies = false
[jobs]
immediate = true
"""


def seed(app, count: int) -> float:
    import json

    started = time.perf_counter()
    with app.extensions["collector"].db.session() as session:
        for statement in SEED:
            session.execute(text(statement), {"count": count, "states_json": json.dumps(STATES),
                                              "failures_json": json.dumps(FAILURES)})
        accounts.add_user(session, "bench-admin", "admin", PASSWORD, by="bench")
    return time.perf_counter() - started


def sign_in(client) -> None:
    page = client.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/staff/login", data={"csrf_token": token, "name": "bench-admin", "password": PASSWORD})
    assert response.status_code in (302, 303), response.status_code


def timed_get(client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (path, response.status_code)
    return elapsed


def query_times(app) -> dict[str, float]:
    collector = app.extensions["collector"]
    tz = collector.settings.window.tz
    parts = {"funnel": lambda s: overview.funnel_by_level(s), "per day": lambda s: overview.volume_by_day(s, tz),
             "top failures": lambda s: overview.top_failures(s), "backlog/SLA": lambda s: overview.review_backlog(s),
             "reviewers": lambda s: overview.reviewer_figures(s)}
    times = {}
    for name, run in parts.items():
        with collector.db.session() as session:
            started = time.perf_counter()
            run(session)
            times[name] = time.perf_counter() - started
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        config = tmp / "config.toml"
        config.write_text(config_text(tmp), encoding="utf-8")
        app = create_app(config)
        upgrade(app.extensions["collector"].settings.database_url)
        seconds = seed(app, args.candidates)
        with app.extensions["collector"].db.session() as session:
            counts = [session.scalar(select(func.count()).select_from(model)) for model in (Candidate, Photo, Order)]
        print(f"overview: {counts[0]} candidates, {counts[1]} photos, {counts[2]} paid orders in SQLite "
              f"(seeded set-based in {seconds:.1f} s)")
        client = app.test_client()
        sign_in(client)
        import app as app_module  # the first request started loading the face models: not part of the page

        if app_module._warm_up_thread is not None:
            app_module._warm_up_thread.join(120)
        cold = timed_get(client, "/staff/overview")
        warm = [timed_get(client, "/staff/overview") for _ in range(args.runs)]
        home = [timed_get(client, "/staff/") for _ in range(args.runs)]
        median, baseline = statistics.median(warm), statistics.median(home)
        print("| page | first ms | median ms | max ms |")
        print("|---|---|---|---|")
        print(f"| /staff/overview | {cold * 1000:.0f} | {median * 1000:.0f} | {max(warm) * 1000:.0f} |")
        print(f"| /staff/ (baseline) | - | {baseline * 1000:.1f} | {max(home) * 1000:.1f} |")
        print(f"overview / baseline: {median / baseline:.0f}×")
        print("queries: " + ", ".join(f"{name} {ms * 1000:.0f} ms" for name, ms in query_times(app).items()))
        app.extensions["collector"].db.dispose()
    if median >= 1.0:
        print(f"FAILED: the overview took {median:.2f} s (target: under 1 s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
