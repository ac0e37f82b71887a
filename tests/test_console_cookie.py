"""The console's session cookie outside the browser tests (which run on plain http, so without Secure)."""
from __future__ import annotations

import re

from staff import accounts
from tests.staff_fixtures import db


def sign_in(client, name: str, password: str):
    form = client.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    return client.post("/staff/login", data={"name": name, "password": password, "csrf_token": token})


def test_by_default_the_session_cookie_is_secure_httponly_lax_and_console_only(app):
    with db(app).session() as session:
        accounts.add_user(session, "李老师", "admin", "a-long-password", by="test")
    response = sign_in(app.test_client(), "李老师", "a-long-password")
    assert response.status_code == 302
    [cookie] = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("staff_session=")]
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")[1:]}
    assert {"Secure", "HttpOnly", "SameSite", "Path"} <= attributes
    assert "SameSite=Lax" in cookie and "Path=/staff/" in cookie
    assert "Expires" not in attributes  # gone when the browser closes; idle expiry is on the server


def test_candidate_pages_never_set_the_staff_cookie(app):
    response = app.test_client().get("/healthz")
    assert response.headers.getlist("Set-Cookie") == []
