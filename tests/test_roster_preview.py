"""The roster import's dry run (what the console shows before committing) and kept uploads."""
from __future__ import annotations

import os
import stat
from datetime import date

import pytest
from sqlalchemy import func, select

from staff import roster
from store.models import RosterEntry
from tests.staff_fixtures import ROWS, audit_events, db, write_csv

LEVELS = ("专科", "本科")
TODAY = date(2026, 11, 29)


def count(app) -> int:
    with db(app).session() as session:
        return session.scalar(select(func.count()).select_from(RosterEntry))


def test_a_dry_run_reports_what_committing_would_do_and_writes_nothing(app, tmp_path):
    first = write_csv(tmp_path / "first.csv", ROWS[:2])
    with db(app).session() as session:
        roster.import_audited(session, first, LEVELS, TODAY, "管理员", "first.csv")
    changed = [ROWS[0], [ROWS[1][0], ROWS[1][1], ROWS[1][2], ROWS[1][3], "行政管理"], ROWS[2],
               ["王小明", "110101199503120119", "x", "本科", "法学"], ["", "", "", "硕士", ""]]
    second = write_csv(tmp_path / "second.csv", changed)

    with db(app).session() as session:
        preview = roster.import_audited(session, second, LEVELS, TODAY, "管理员", "second.csv", commit=False)
    assert (preview.added, preview.updated, preview.unchanged) == (1, 1, 1)
    assert [r.row_number for r in preview.rejections] == [5, 6]
    assert "校验位" in preview.rejections[0].reason and "学历层次" in preview.rejections[1].reason
    assert count(app) == 2
    with db(app).session() as session:
        assert session.scalar(select(RosterEntry.major).where(RosterEntry.id_number == ROWS[1][1])) == ROWS[1][4]

    with db(app).session() as session:
        done = roster.import_audited(session, second, LEVELS, TODAY, "管理员", "second.csv")
    assert (done.added, done.updated, done.unchanged, done.rejected) == (1, 1, 1, 2)
    assert count(app) == 3
    assert [e.action for e in audit_events(app) if e.action.startswith("roster.")] == \
        ["roster.import", "roster.preview", "roster.import"]


def test_an_upload_is_kept_privately_under_a_token(tmp_path):
    token = roster.keep_upload(tmp_path, "名单.xlsx", b"PK\x03\x04data")
    path = roster.kept_upload(tmp_path, token)
    assert path.read_bytes() == b"PK\x03\x04data" and path.suffix == ".xlsx"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.parent == tmp_path / roster.UPLOAD_FOLDER


@pytest.mark.parametrize("token", ["../../etc/passwd", "x.csv", "A" * 22 + ".exe", ""])
def test_a_forged_token_is_refused(tmp_path, token):
    roster.keep_upload(tmp_path, "a.csv", b"x")
    with pytest.raises(roster.RosterFileError):
        roster.kept_upload(tmp_path, token)


def test_other_file_types_are_refused_and_old_uploads_go(tmp_path):
    with pytest.raises(roster.RosterFileError):
        roster.keep_upload(tmp_path, "名单.pdf", b"%PDF")
    old = roster.kept_upload(tmp_path, roster.keep_upload(tmp_path, "old.csv", b"x"))
    os.utime(old, (0, 0))
    roster.keep_upload(tmp_path, "new.csv", b"y")
    assert not old.exists()


def signed_in_admin(make_app):
    from tests.browser.conftest import TEST_PASSWORD, console_settings
    from staff import accounts

    app = make_app(console=console_settings())
    with db(app).session() as session:
        accounts.add_user(session, "admin1", "admin", TEST_PASSWORD, by="test")
    client = app.test_client()
    client.post("/staff/login", data={"csrf_token": csrf_token(client, "/staff/login"), "name": "admin1",
                                      "password": TEST_PASSWORD})
    return app, client


def csrf_token(client, path: str) -> str:
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def test_a_roster_of_30000_rows_is_larger_than_the_webhook_limit_and_still_uploads(make_app):
    import io

    app, client = signed_in_admin(make_app)
    rows = ["姓名,身份证号,准考证号,学历层次,专业"] + [
        f"考生,110101199001{n:06d},0124{n:08d},本科,汉语言文学与新闻传播学专业方向{n}" for n in range(30000)]
    data = "\n".join(rows).encode()
    assert len(data) > app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/staff/roster/preview", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client, "/staff/roster"), "file": (io.BytesIO(data), "big.csv")})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    import re

    counts = {name: int(value) for name, value in re.findall(r'data-count="(\w+)">(\d+)<', page)}
    assert counts["added"] + counts["rejected"] == 30000 and counts["added"] > 0  # every row was read
    assert count(app) == 0
    too_big = client.post("/staff/roster/preview", content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client, "/staff/roster"), "file": (io.BytesIO(b"x" * (21 * 1024 * 1024)), "a.csv")})
    assert too_big.status_code == 413 and "文件太大" in too_big.get_data(as_text=True)
