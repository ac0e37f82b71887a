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
