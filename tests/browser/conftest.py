"""Browser tests: the real app served by waitress on a free 127.0.0.1 port, driven by Playwright through
Debian's chromium (never a downloaded browser). Skipped with a reason when chromium is not installed.

Fixtures:
- `serve(app) -> base_url`: serves any app (e.g. from make_app(console={...})) for the test's length.
- `console`: a LiveConsole (the default test config, the console's Secure cookie flag off for http):
  `.url`, `.app` (inspect its database), `.add_user(name, role, password=None) -> password`.
- `browser` (one per test session), `page` (a fresh context per test: 1366×768, zh-CN, Asia/Shanghai),
  `new_page()` for more contexts in one test (two reviewers at once).
- `sign_in(page, base_url, name, password)` and `shoot(page, name)` (docs/screenshots/<name>.png).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import waitress
from waitress import wasyncore
from flask import Flask

from staff import accounts

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# `make screenshots` refreshes the README's pictures; an ordinary test run leaves the tracked files alone.
SCREENSHOTS = (DOCS_SCREENSHOTS if os.environ.get("COLLECTOR_SCREENSHOTS") == "docs"
               else Path(tempfile.gettempdir()) / "collector-screenshots")
VIEWPORT = {"width": 1366, "height": 768}
# No internet on the test machines: nothing may phone home or wait for it.
CHROMIUM_ARGS = ["--no-sandbox", "--lang=zh-CN", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                 "--disable-sync", "--no-first-run", "--disable-extensions", "--metrics-recording-only", "--mute-audio"]
TEST_PASSWORD = "correct-horse-42"


def chromium_path() -> str | None:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium installed (Debian: apt-get install chromium fonts-noto-cjk; .ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser):
    """new_page() → a page in its own browser context (own cookies), closed after the test."""
    contexts = []

    def open_page():
        context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def serve():
    """serve(app) → the base URL of app served by waitress in a thread; stopped after the test."""
    servers = []

    def start(app: Flask) -> str:
        server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
        thread = threading.Thread(target=server.run, name="console-live-server", daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.effective_port}"

    yield start
    for server, thread in servers:
        # Closed in the server's own thread: closing its sockets from here while its loop sits in select()
        # made that select fail now and then (EBADF, an unhandled exception in the server thread).
        server.trigger.pull_trigger(lambda server=server: wasyncore.close_all(server._map))
        thread.join(5)
        server.task_dispatcher.shutdown()


@dataclass
class LiveConsole:
    app: Flask
    url: str

    def add_user(self, name: str, role: str, password: str = TEST_PASSWORD) -> str:
        """An account created the way `flask users add` does; returns its password."""
        with self.app.extensions["collector"].db.session() as session:
            accounts.add_user(session, name, role, password, by="test")
        return password


def console_settings(**overrides) -> dict:
    """The [console] section for tests: plain http on 127.0.0.1, so no Secure cookie flag."""
    return {"secure_cookies": False, **overrides}


@pytest.fixture
def console(make_app, serve) -> LiveConsole:
    app = make_app(console=console_settings())
    return LiveConsole(app, serve(app))


def sign_in(page, base_url: str, name: str, password: str = TEST_PASSWORD) -> None:
    """Signs in through the form, as a person would; the caller checks where it landed."""
    page.goto(f"{base_url}/staff/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def shoot(page, name: str) -> Path:
    """Saves a screenshot of the page as <name>.png: into docs/screenshots (shown in the README) under
    `make screenshots`, else into a temporary folder."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
