"""A small cohort (20 candidates, 8 at a time) through a real `flask serve` process on SQLite and the
huey consumer, driven like WeChat (AES, 5 s timeout, three retries of the same MsgId), with the server
killed with SIGKILL mid-run and restarted: every message answered, nothing doubled, the database right.
The full run (300 candidates, 48 at a time, PostgreSQL + Redis too) is `make loadtest`."""
from __future__ import annotations

import os

import pytest

from loadtest.cluster import Profile
from loadtest.run import Options, run
from tests.conftest import SHARED_PHOTOS


def test_a_small_cohort_is_answered_through_a_server_kill(tmp_path):
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the small load test runs on SQLite; the PostgreSQL profile is in `make loadtest`")
    if not (SHARED_PHOTOS / "labels.json").exists():
        pytest.skip(f"labelled sample photos not found at {SHARED_PHOTOS}: the walk needs one that passes")
    options = Options(candidates=20, concurrency=8, kill_at=0.4, restart_after=2.0, custom_wait=15.0,
                      photos=SHARED_PHOTOS)

    result = run(Profile("sqlite", servers=1), "sqlite×1 + kill", kill=True, options=options)

    report = result.render()
    assert result.fault is not None and result.fault.back_after is not None, report
    assert result.fault.in_flight > 0, report  # the kill hit a process with work in hand
    counts = result.counts()
    assert counts["messages"] >= 20 * 9 and counts["missing"] == 0, report
    assert counts["duplicates"] == 0 and counts["two pay links"] == 0, report
    assert counts["paid"] == 20, report
    assert result.database.problems == 0, report
    assert not result.failed, report
