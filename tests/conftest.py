"""Shared fixtures: an app on a fresh database, a fake WeChat API on 127.0.0.1, a simulated WeChat.

Set TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run on PostgreSQL.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app import create_app
from standins.simulator import WeChatSimulator, flask_transport
from standins.wechat_api import FakeWeChatAPI
from store.migrate import upgrade
from store.models import Base
from tests.journey import Chat, seed_roster, write_config
from tests.staff_fixtures import ROWS, write_csv

APPID = "wx1234567890abcdef"
SECRET = "test-secret"
TOKEN = "test-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SHARED_PHOTOS = Path(os.environ.get("COLLECTOR_SHARED_PHOTOS",
                                    Path(__file__).resolve().parents[1] / ".." / "shared" / "photos"))


@pytest.fixture
def fake_wechat():
    with FakeWeChatAPI(APPID, SECRET) as fake:
        yield fake


@pytest.fixture
def database_url(tmp_path):
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path / 'collector.db'}"
    engine = create_engine(url)
    try:
        engine.connect().close()
    except OperationalError as exc:
        pytest.skip(f"TEST_DATABASE_URL is set but the database is not reachable: {exc.orig}")
    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    return url


@pytest.fixture
def make_app(tmp_path, fake_wechat, database_url):
    """make_app(**sections) → an app whose config file has these TOML sections merged in."""
    apps = []

    def factory(**sections):
        config = write_config(tmp_path, database_url=database_url, api_base_url=fake_wechat.base_url,
                              token=TOKEN, appid=APPID, secret=SECRET, aes_key=AES_KEY, sections=sections)
        upgrade(database_url)
        app = create_app(config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["collector"].db.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


def simulator_for(app, aes: bool = False, clock=None) -> WeChatSimulator:
    kwargs = {"clock": clock} if clock else {}
    return WeChatSimulator(TOKEN, APPID, AES_KEY, flask_transport(app.test_client()), aes=aes, **kwargs)


@pytest.fixture
def wechat(app):
    return simulator_for(app)


@pytest.fixture
def roster(app):
    return seed_roster(app)


@pytest.fixture
def chat(app, wechat, fake_wechat, roster):
    """A candidate's phone: chat.say("…") returns the bot's reply text."""
    return Chat(app, wechat, fake_wechat, openid="o_candidate_1")


@pytest.fixture
def photo():
    """photo("name.jpg") → the bytes of a labelled sample photo from ../shared/photos."""
    def read(name: str) -> bytes:
        path = SHARED_PHOTOS / name
        if not path.exists():
            pytest.skip(f"labelled sample photos not found at {SHARED_PHOTOS}")
        return path.read_bytes()
    return read


@pytest.fixture
def cli(app):
    """cli("roster", "import", PATH) → click's result of `flask roster import PATH` on this app."""
    runner = app.test_cli_runner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(args=list(args), input=input)
    return invoke


@pytest.fixture
def imported(cli, tmp_path):
    """The staff fixtures' roster, imported through `flask roster import`."""
    result = cli("roster", "import", str(write_csv(tmp_path / "roster.csv", ROWS)))
    assert result.exit_code == 0, result.output
    return ROWS
