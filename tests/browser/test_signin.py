"""Sign-in to the staff console in a real browser."""
from __future__ import annotations

from tests.browser.conftest import shoot, sign_in


def test_signing_in_opens_the_home_page(console, page):
    console.add_user("李老师", "admin")
    page.goto(f"{console.url}/staff/")
    assert page.url.startswith(f"{console.url}/staff/login")
    shoot(page, "signin")
    sign_in(page, console.url, "李老师")
    assert page.url == f"{console.url}/staff/"
    assert "你好，李老师" in page.inner_text("main")
    shoot(page, "home")
