"""Staff commands that check no photo start without the heavy parts: face models, OpenCV, numpy,
openpyxl (roster files only) and alembic (`flask db` only) are never imported."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("mediapipe", "cv2", "numpy", "openpyxl", "alembic", "PIL")


def imported_modules(config: Path, *command: str) -> set[str]:
    env = {**os.environ, "COLLECTOR_CONFIG": str(config)}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "flask", "--app", "app", *command],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return {match.group(1).split(".")[0] for match in re.finditer(r"^import time:.*\|\s+(\S+)$", run.stderr, re.M)}


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "startup.toml"
    path.write_text(f'database_url = "sqlite:///{tmp_path / "c.db"}"\ndata_dir = "{tmp_path / "data"}"\n',
                    encoding="utf-8")
    env = {**os.environ, "COLLECTOR_CONFIG": str(path)}
    subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    return path


@pytest.mark.parametrize("command", [("review", "pending"), ("outbox", "status"), ("support", "queue")])
def test_staff_commands_import_no_heavy_module(config, command):
    modules = imported_modules(config, *command)
    assert "flask" in modules  # the measurement works
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


FIRST_REQUEST_THEN_WARM_UP = """
import gc, app
served = app.create_app()
before = gc.get_freeze_count()
assert served.test_client().get("/healthz").status_code in (200, 503)
app._warm_up_thread.join(120)
print(before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_a_served_app_puts_what_it_built_out_of_the_collectors_reach_once_warmed_up(config):
    """A full collection walked all of the app, its libraries and the face models (some 200 000 objects,
    127-161 ms on one request's time); frozen after the warm-up, it walks only what requests made."""
    env = {**os.environ, "COLLECTOR_CONFIG": str(config)}
    run = subprocess.run([sys.executable, "-c", FIRST_REQUEST_THEN_WARM_UP], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    before, frozen, still_tracked = map(int, run.stdout.split()[-3:])
    assert before == 0
    assert frozen > 100_000  # the models alone bring most of them
    assert still_tracked < frozen / 10
