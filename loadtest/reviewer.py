"""The staff side of the cohort: a reviewer working through the review queue while candidates are
still arriving, with the staff functions `flask review pending/approve/reject` call (and, for every
`--cli-every`-th approval, the command itself). Runs as its own process against the run's config
(COLLECTOR_CONFIG), like a member of staff at a terminal:

    COLLECTOR_CONFIG=… python -m loadtest.reviewer --reject-every 10 --cli-every 250

Every `--reject-every`-th graduate's first photo is rejected (loadtest.cohort.rejected_first), every
other photo approved; the candidate is told through the outbox and the huey consumers. Prints one
JSON line per decision or failure, which the load test counts. Runs until SIGTERM, which lets the
decision in hand finish (and be counted).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.cohort import rejected_first  # noqa: E402

REVIEWER = "loadtest-reviewer"
REJECT_NOTE = "背景不是纯色"  # the reviewer's words after the preset reason (sent to the candidate)
IDLE_SECONDS = 0.5
STALE_SECONDS = 2.0  # a queue read is redone after this long, so the oldest photos come first again
AGAIN_AFTER_SECONDS = 5.0  # a decision that failed is tried again after this long


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.reviewer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reject-every", type=int, default=10)
    parser.add_argument("--cli-every", type=int, default=250, help="every n-th approval through `flask review approve`")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    from app import create_app

    app = create_app()
    with app.app_context():
        Reviewer(app.extensions["collector"], args.reject_every, args.cli_every, stopping).run()
    return 0


class Reviewer:
    def __init__(self, collector, reject_every: int, cli_every: int, stopping: threading.Event):
        self.collector, self.reject_every, self.cli_every = collector, reject_every, cli_every
        self.stopping = stopping
        self.rejected: set[str] = set()
        self.approvals = 0
        self.failed_at: dict[str, float] = {}  # openid -> when its last decision failed
        self.cli_failed: set[str] = set()  # the command failed for them: the function decides next time

    def run(self) -> None:
        while not self.stopping.is_set():
            pending = self._pending()
            if not pending:
                self.stopping.wait(IDLE_SECONDS)
                continue
            read = time.monotonic()
            due = [item for item in pending if item.photo_id is not None
                   and time.monotonic() - self.failed_at.get(item.openid, -AGAIN_AFTER_SECONDS) >= AGAIN_AFTER_SECONDS]
            if not due:
                self.stopping.wait(IDLE_SECONDS)
            for item in due:
                self._decide(item)
                if time.monotonic() - read > STALE_SECONDS or self.stopping.is_set():
                    break

    def _pending(self):
        from staff import review

        try:
            with self.collector.db.read() as session:
                return review.pending_reviews(session)
        except Exception as exc:  # the database went away (pg_terminate_backend): read again
            emit(kind="error", step="pending", error=f"{type(exc).__name__}: {str(exc)[:160]}")
            self.stopping.wait(IDLE_SECONDS)
            return []

    def _decide(self, item) -> None:
        from staff import review

        reject = rejected_first(item.openid, self.reject_every) and item.openid not in self.rejected
        via = "function"
        started = time.monotonic()
        try:
            if reject:
                with self.collector.db.session() as session:
                    presets = review.reject_reasons(session)
                    review.reject(session, self.collector.outbox, item.exam_number, REJECT_NOTE, REVIEWER,
                                  preset=presets[0].code if presets else None)
                self.rejected.add(item.openid)
            elif self.cli_every and (self.approvals + 1) % self.cli_every == 0 and item.openid not in self.cli_failed:
                via = "cli"
                _cli("review", "approve", item.exam_number, "--by", REVIEWER)
            else:
                with self.collector.db.session() as session:
                    review.approve(session, self.collector.outbox, item.exam_number, REVIEWER)
        except review.StaffActionError as exc:  # changed meanwhile (a new photo): the queue says again
            self.failed_at[item.openid] = time.monotonic()
            emit(kind="refused", openid=item.openid, error=str(exc)[:160])
            return
        except Exception as exc:  # the database went away mid-decision: nothing was decided
            self.failed_at[item.openid] = time.monotonic()
            if via == "cli":
                self.cli_failed.add(item.openid)
            emit(kind="error", step=f"decide ({via})", openid=item.openid,
                 error=f"{type(exc).__name__}: {str(exc)[:160]}")
            return
        if not reject:
            self.approvals += 1
        emit(kind="decided", openid=item.openid, verdict="rejected" if reject else "approved", via=via,
             ms=round((time.monotonic() - started) * 1000, 1))


def _cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [""]
        why = next((line for line in reversed(lines) if "Error" in line.split(":")[0] or line.startswith("Error")),
                   lines[-1])
        raise RuntimeError(f"flask {' '.join(args[:2])} exited {done.returncode}: {why[:200]}")


def emit(**fields) -> None:
    print(json.dumps(fields, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    sys.exit(main())
