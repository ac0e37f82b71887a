"""Issue 8.7: the data folder and what is in it are the owner's only, and a placeholder secret_key
does not serve.

Under umask 022 the data folder used to be 0755 and collector.db (+WAL, -shm), huey.db, sms.jsonl
and the photos 0644: names, ID numbers, phones and faces readable by every local user.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import rules.photo
from sqlalchemy.engine import make_url

from app import WEAK_SECRET_KEY, create_app
from tests.conftest import AES_KEY, APPID, SECRET, TOKEN
from tests.journey import GRADUATES, Chat, seed_roster, write_config
from tests.conftest import simulator_for

PROJECT = Path(__file__).resolve().parents[1]


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def config_for(tmp_path, database_url, fake_wechat, **sections) -> Path:
    return write_config(tmp_path, database_url=database_url, api_base_url=fake_wechat.base_url, token=TOKEN,
                        appid=APPID, secret=SECRET, aes_key=AES_KEY, sections=sections)


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" else None


def test_every_data_file_is_private_after_a_full_journey_under_umask_022(tmp_path, database_url, fake_wechat, photo):
    passing_photo = photo("webmorph_004_03_blue_ok.jpg")
    data = tmp_path / "data"
    if sqlite_path(database_url) is not None:  # as `make run` has it: the database in the data folder
        database_url = f"sqlite:///{data / 'collector.db'}"
    with umask(0o022):
        # The order of `make run`: the app first (it prepares the data folder), then the migrations.
        app = create_app(config_for(tmp_path, database_url, fake_wechat, jobs={"immediate": False}))
        try:
            cli(app, "db", "upgrade")
            graduate = seed_roster(app)[0]
            chat = Chat(app, simulator_for(app), fake_wechat, "o_file_modes_000000000000001")
            chat.walk_to_photo(graduate)
            rules.photo.warm_up()  # the verdict must come in the passive reply, not later
            assert chat.pay(chat.pay_link(chat.send_photo(passing_photo))).status_code == 200
            cli(app, "review", "approve", graduate["id_number"], "--by", "李老师")
            cli(app, "jobs", "run", "outbox")  # the console SMS provider writes sms.jsonl
            # While the database is open: its -wal and -shm go when the last connection closes.
            modes = {path: mode(path) for path in data.rglob("*")}
        finally:
            app.extensions["collector"].db.dispose()

    names = {path.name for path in modes}
    expected = {"photos", "huey.db", "sms.jsonl"}
    if sqlite_path(database_url) is not None:
        expected |= {"collector.db", "collector.db-wal", "collector.db-shm"}
    assert expected <= names, names
    assert any(path.is_file() for path in (data / "photos").rglob("*"))
    assert mode(data) == 0o700
    for path, found in modes.items():
        assert found == (0o700 if path.is_dir() else 0o600), path


def test_an_install_made_under_umask_022_is_narrowed_at_start(tmp_path, fake_wechat):
    data = tmp_path / "data"
    (data / "photos" / "ab").mkdir(parents=True, mode=0o755)
    database = data / "collector.db"
    for path in (database, data / "collector.db-wal", data / "huey.db"):
        path.write_bytes(b"")
        path.chmod(0o644)
    data.chmod(0o755)

    app = create_app(config_for(tmp_path, f"sqlite:///{database}", fake_wechat, jobs={"immediate": False}))
    app.extensions["collector"].db.dispose()

    assert (mode(data), mode(data / "photos")) == (0o700, 0o700)
    assert [mode(p) for p in (database, data / "collector.db-wal", data / "huey.db")] == [0o600] * 3


# --- the placeholder secret_key ---------------------------------------------------------------------

@pytest.mark.parametrize("key", ["change-me", ""])
def test_a_placeholder_secret_key_refuses_to_serve(tmp_path, database_url, fake_wechat, key):
    config = config_for(tmp_path, database_url, fake_wechat, server={"port": free_port()})
    config.write_text(config.read_text(encoding="utf-8").replace('secret_key = "test-secret-key"',
                                                               f'secret_key = "{key}"'), encoding="utf-8")
    app = create_app(config)
    try:
        # A process of its own, with a deadline: were it to serve, it would never return.
        served = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "serve"], cwd=PROJECT, timeout=60,
                                env={**os.environ, "COLLECTOR_CONFIG": str(config)}, capture_output=True, text=True)
        assert served.returncode != 0 and WEAK_SECRET_KEY in served.stderr, served.stderr
        assert "Serving on" not in served.stdout
        client = app.test_client()
        for response in (client.get("/healthz"), client.post("/wechat?signature=x", data=b"<xml/>")):
            assert response.status_code == 503
            assert response.get_data(as_text=True) == WEAK_SECRET_KEY
        cli(app, "db", "upgrade")  # other commands still work, so the config can be put right
        cli(app, "outbox", "status")
    finally:
        app.extensions["collector"].db.dispose()


def test_a_real_secret_key_serves(app):
    assert app.test_client().get("/healthz").status_code == 200


def test_make_run_writes_a_random_secret_key_into_a_private_config(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    keys = []
    for run in ("first", "second"):
        folder = tmp_path / run
        folder.mkdir()
        shutil.copy(PROJECT / "config.example.toml", folder)
        with umask(0o022):
            subprocess.run(["make", "--no-print-directory", "-f", str(PROJECT / "Makefile"), "config.toml"],
                           cwd=folder, check=True, capture_output=True)
        config = folder / "config.toml"
        assert mode(config) == 0o600
        [line] = [line for line in config.read_text(encoding="utf-8").splitlines() if line.startswith("secret_key")]
        keys.append(line)
        assert "change-me" not in line and len(line) > len('secret_key = ""') + 32
        example = (PROJECT / "config.example.toml").read_text(encoding="utf-8").splitlines()
        generated = ("secret_key", "keys = ", "active_key", "lookup_key")  # the photo keys: tests/test_personal_data.py
        assert [x for x in config.read_text(encoding="utf-8").splitlines() if not x.startswith(generated)] == \
            [x for x in example if not x.startswith(generated)]
    assert keys[0] != keys[1]
