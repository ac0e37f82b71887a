"""Staff commands that never look at a photo do not import the photo checker's image stack (OpenCV,
mediapipe) nor print the face models' warnings; `photo explain` writes nowhere near the input photo.

The commands run as staff run them: `flask --app app …` in a subprocess, with `python -X importtime`
listing every module the process imported."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from staff.photo import photo_group
from store.migrate import upgrade
from tests.conftest import AES_KEY, APPID, SECRET, TOKEN
from tests.journey import write_config
from tests.staff_fixtures import ROWS, write_csv

ROOT = Path(__file__).resolve().parents[1]
PHOTO_STACK = ("cv2", "mediapipe")
MODEL_WARNINGS = ("TensorFlow", "W0000", "absl::", "inference_feedback_manager")


def run_flask(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLLECTOR_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "flask", "--app", "app", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def imported_modules(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture
def config(tmp_path, fake_wechat, database_url) -> Path:
    path = write_config(tmp_path, database_url=database_url, api_base_url=fake_wechat.base_url, token=TOKEN,
                        appid=APPID, secret=SECRET, aes_key=AES_KEY, sections={})
    upgrade(database_url)
    return path


@pytest.mark.parametrize("command", [
    ["roster", "import", "{roster}"],
    ["review", "pending"],
    ["handover", "list"],
    ["users", "list"],
])
def test_commands_without_photos_never_load_the_photo_checker(config, tmp_path, command):
    roster = write_csv(tmp_path / "roster.csv", ROWS)
    result = run_flask(config, *[arg.format(roster=roster) for arg in command])
    assert result.returncode == 0, result.stdout + result.stderr
    modules = imported_modules(result.stderr)
    assert "flask" in modules  # importtime really listed the process's imports
    assert [name for name in PHOTO_STACK if name in modules] == []
    warnings = [line for line in result.stderr.splitlines()
                if not line.startswith("import time:") and any(mark in line for mark in MODEL_WARNINGS)]
    assert warnings == []


def test_explain_writes_to_a_temporary_file_not_beside_the_photo(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "candidate.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (480, 640), (200, 200, 200)).save(buffer, "JPEG")
    photo.write_bytes(buffer.getvalue())

    result = CliRunner().invoke(photo_group, ["explain", str(photo)])

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["candidate.jpg"]
    written = Path(result.output.strip().splitlines()[-1].removeprefix("已写入 ").strip())
    try:
        assert written.parent != folder and written.read_bytes().startswith(b"\x89PNG")
    finally:
        written.unlink(missing_ok=True)
