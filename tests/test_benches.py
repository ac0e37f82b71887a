"""`make bench`'s webhook benches, run small, so a change to them (or to what they call) cannot leave them
broken until the next time someone measures: the webhook bench serves the bare app and the app side by
side in rounds and prints the ratios and issue 15's verdicts; the instructions bench's config builds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def test_the_webhook_bench_alternates_bare_and_app_in_rounds_and_prints_the_verdicts():
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the small bench runs on SQLite; PostgreSQL's is `make bench` with BENCH_POSTGRES_URL")
    run = subprocess.run(
        [sys.executable, "bench/webhook_bench.py", "--modes", "plain", "--clients", "2", "4", "--requests", "60",
         "--rounds", "2", "--warmup", "10", "--paced-share", "0.1", "--paced-seconds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = [line.split() for line in run.stdout.splitlines() if line.split()[:1] in (["bare"], ["app"])]
    closed = [(row[0], row[2], row[-1]) for row in rows if not row[2].endswith("p")]
    # Each round runs both servers back to back per client count, the order flipped in the second round.
    assert closed == [("bare", "2", "1"), ("app", "2", "1"), ("bare", "4", "1"), ("app", "4", "1"),
                      ("app", "2", "2"), ("bare", "2", "2"), ("app", "4", "2"), ("bare", "4", "2")], run.stdout
    paced = [(row[0], row[2]) for row in rows if row[2].endswith("p")]
    assert paced == [("bare", "4p"), ("app", "4p"), ("app", "4p"), ("bare", "4p")], run.stdout
    assert all(int(row[3]) >= 60 and row[10] == "0" for row in rows), run.stdout  # requests done, no errors
    assert "app/bare" in run.stdout and "targets plain throughput >= 0.3x: " in run.stdout, run.stdout
    assert "cpu <= 2 ms: " in run.stdout and "\nplain     0.1x" in run.stdout, run.stdout


def test_the_instructions_benchs_config_is_one_the_app_loads(tmp_path):
    import instructions_bench

    from settings import load_settings

    config = instructions_bench.write_config(tmp_path, "aes", f"sqlite:///{tmp_path / 'bench.db'}", "")
    settings = load_settings(config)
    assert settings.wechat.mode == "safe" and settings.wechat.max_clock_skew_seconds == 3600
