"""Hand-over batches through the real CLI (`flask handover build/list`) on a migrated database.

Set TEST_DATABASE_URL to run them on PostgreSQL."""
from __future__ import annotations

import hashlib
import io
import stat
import threading
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from openpyxl import load_workbook
from PIL import Image
from sqlalchemy import select, update

from staff import handover
from store.files import PhotoFiles
from store.models import HandoverBatch, Photo
from tests.staff_fixtures import ROWS, audit_events, db, put_under_review, write_csv

HEADER = ["姓名", "身份证号", "准考证号", "学历层次", "专业", "审核时间", "审核人", "文件名", "SHA-256"]


def small_jpeg(seed: int, size=(300, 400)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (seed * 40 % 256, 120, 200)).save(out, "JPEG", quality=85)
    return out.getvalue()


def under_review_with_photo(app, graduate, openid: str, data: bytes) -> None:
    """A paid candidate under review whose photo's bytes are really stored under the data directory."""
    entry_id = put_under_review(app, graduate, openid)
    stored = app.extensions["collector"].services.photo_files.put(data)  # encrypted, like an upload
    with db(app).session() as session:
        session.execute(update(Photo).where(Photo.roster_entry_id == entry_id)
                        .values(sha256=stored.sha256, path=stored.relative_path, size_bytes=stored.size_bytes))


def approve(cli, graduate) -> None:
    result = cli("review", "approve", graduate[1], "--by", "审核员甲")
    assert result.exit_code == 0, result.output


def read_zip(path: Path) -> tuple[dict[str, bytes], list[list[str]]]:
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    workbook = load_workbook(io.BytesIO(files.pop("manifest.xlsx")), read_only=True)
    rows = [[str(cell) if cell is not None else "" for cell in row] for row in workbook.worksheets[0].iter_rows(values_only=True)]
    workbook.close()
    return files, rows


def test_build_puts_each_approved_photo_in_the_zip_once_with_its_manifest(cli, app, imported, tmp_path):
    photos = {}
    for n, graduate in enumerate(ROWS[:2]):
        photos[graduate[2]] = small_jpeg(n)
        under_review_with_photo(app, graduate, f"o_handover_{n}", photos[graduate[2]])
        approve(cli, graduate)
    under_review_with_photo(app, ROWS[2], "o_handover_2", small_jpeg(2))  # not approved: stays out

    result = cli("handover", "build", "--out", str(tmp_path / "out"), "--by", "管理员")
    assert result.exit_code == 0, result.output
    assert "2 张照片" in result.output
    copies = list((tmp_path / "out").glob("*.zip"))
    assert len(copies) == 1
    files, manifest = read_zip(copies[0])

    assert files == {f"photos/{exam_number}.jpg": data for exam_number, data in photos.items()}
    assert manifest[0] == HEADER
    by_file = {row[7]: row for row in manifest[1:]}
    assert set(by_file) == {f"{key}.jpg" for key in photos}
    for graduate in ROWS[:2]:
        row = by_file[f"{graduate[2]}.jpg"]
        assert row[:5] == graduate
        assert row[6] == "审核员甲" and row[5].startswith("20")
        assert row[8] == hashlib.sha256(photos[graduate[2]]).hexdigest()

    stored = app.extensions["collector"].settings.data_dir / "handover" / copies[0].name
    assert stored.read_bytes() == copies[0].read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert [event.target for event in audit_events(app, "handover.build")] == ["batch:1"]


def test_a_photo_approved_later_goes_into_the_next_batch_and_nothing_twice(cli, app, imported):
    under_review_with_photo(app, ROWS[0], "o_handover_0", small_jpeg(0))
    under_review_with_photo(app, ROWS[1], "o_handover_1", small_jpeg(1))
    approve(cli, ROWS[0])
    assert cli("handover", "build").exit_code == 0

    again = cli("handover", "build")
    assert again.exit_code == 1 and "没有待报送的照片" in again.output
    approve(cli, ROWS[1])
    assert cli("handover", "build").exit_code == 0

    with db(app).session() as session:
        batches = session.scalars(select(HandoverBatch).order_by(HandoverBatch.id)).all()
        assert [(b.status, b.photo_count) for b in batches] == [("ready", 1), ("ready", 1)]
        data_dir = app.extensions["collector"].settings.data_dir
        second, _ = read_zip(data_dir / batches[1].path)
    assert list(second) == [f"photos/{ROWS[1][2]}.jpg"]
    listing = cli("handover", "list")
    assert listing.exit_code == 0 and "待报送（已通过未报送）：0 张" in listing.output
    assert listing.output.count("已生成") == 2


def test_id_number_as_file_key_and_a_normalised_copy(make_app, tmp_path):
    app = make_app(handover={"file_key": "id_number", "normalised_copy": True})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["roster", "import", str(write_csv(tmp_path / "r.csv", ROWS))]).exit_code == 0
    original = small_jpeg(3, size=(600, 900))
    under_review_with_photo(app, ROWS[0], "o_handover_0", original)
    assert runner.invoke(args=["review", "approve", ROWS[0][1]]).exit_code == 0
    result = runner.invoke(args=["handover", "build", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    files, manifest = read_zip(next((tmp_path / "out").glob("*.zip")))
    assert files[f"photos/{ROWS[0][1]}.jpg"] == original
    with Image.open(io.BytesIO(files[f"480x640/{ROWS[0][1]}.jpg"])) as copy:
        assert (copy.format, copy.size) == ("JPEG", (480, 640))
    assert manifest[1][7] == f"{ROWS[0][1]}.jpg"


def test_a_photo_file_that_changed_fails_the_batch_and_gives_the_photos_back(cli, app, imported):
    under_review_with_photo(app, ROWS[0], "o_handover_0", small_jpeg(0))
    approve(cli, ROWS[0])
    files = PhotoFiles(app.extensions["collector"].settings.photo_dir)
    with db(app).session() as session:
        photo = session.scalar(select(Photo).where(Photo.status == "approved"))
    path = files.path(photo.path)
    good = path.read_bytes()
    path.write_bytes(good + b"tampered")

    result = cli("handover", "build")
    assert result.exit_code == 1 and "SHA-256" in result.output
    with db(app).session() as session:
        assert session.scalar(select(Photo.handover_batch_id).where(Photo.id == photo.id)) is None
        assert session.scalar(select(HandoverBatch.status)) == "failed"
    assert not list((app.extensions["collector"].settings.data_dir / "handover").glob("*.zip*"))

    path.write_bytes(good)
    assert cli("handover", "build").exit_code == 0


def test_two_builds_at_once_never_share_a_photo(cli, app, imported):
    for n, graduate in enumerate(ROWS):
        under_review_with_photo(app, graduate, f"o_handover_{n}", small_jpeg(n))
        approve(cli, graduate)
    collector = app.extensions["collector"]
    outcomes, start = [], threading.Barrier(2)

    def build():
        start.wait()
        try:
            outcomes.append(handover.build_batch(collector.db, collector.settings, "管理员"))
        except handover.HandoverError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = []
    for outcome in outcomes:
        if isinstance(outcome, handover.BatchInfo):
            files, _ = read_zip(collector.settings.data_dir / outcome.path)
            names += list(files)
    assert sorted(names) == sorted(f"photos/{graduate[2]}.jpg" for graduate in ROWS)
    with db(app).session() as session:
        claimed = session.execute(select(Photo.handover_batch_id)).scalars().all()
    assert None not in claimed and len(claimed) == len(ROWS)


def test_download_of_a_batch_is_audited(cli, app, imported):
    under_review_with_photo(app, ROWS[0], "o_handover_0", small_jpeg(0))
    approve(cli, ROWS[0])
    assert cli("handover", "build").exit_code == 0
    collector = app.extensions["collector"]
    with collector.db.session() as session:
        path = handover.batch_file(session, collector.settings.data_dir, 1, "管理员")
    assert path.is_file()
    assert [(e.actor, e.target) for e in audit_events(app, "handover.download")] == [("管理员", "batch:1")]
    with collector.db.session() as session, pytest.raises(handover.HandoverError):
        handover.batch_file(session, collector.settings.data_dir, 99, "管理员")


def test_a_batch_whose_task_never_ran_is_finished_by_the_periodic_job(cli, app, imported):
    under_review_with_photo(app, ROWS[0], "o_handover_0", small_jpeg(0))
    approve(cli, ROWS[0])
    collector = app.extensions["collector"]
    batch_id = handover.claim_batch(collector.db, collector.settings, "管理员")  # the console, queue down

    assert cli("jobs", "run", "handover").exit_code == 0  # just queued: its task may still come
    assert _status(app, batch_id) == "building"
    with db(app).session() as session:
        session.execute(update(HandoverBatch).values(
            created_at=datetime.now(timezone.utc) - handover.NOT_STARTED_AFTER - timedelta(seconds=1)))
    result = cli("jobs", "run", "handover")
    assert result.exit_code == 0, result.output
    assert _status(app, batch_id) == "ready"
    assert [(e.actor, e.target) for e in audit_events(app, "handover.build")] == [("管理员", f"batch:{batch_id}")]


def test_a_worker_that_stopped_renewing_is_taken_over_and_cannot_spoil_the_batch(cli, app, imported):
    under_review_with_photo(app, ROWS[0], "o_handover_0", small_jpeg(0))
    approve(cli, ROWS[0])
    collector = app.extensions["collector"]
    batch_id = handover.claim_batch(collector.db, collector.settings, "管理员")
    assert handover.take_lease(collector.db, batch_id, "dead-worker")
    assert not handover.take_lease(collector.db, batch_id, "second-worker")  # held: nobody else writes it
    with db(app).session() as session:
        session.execute(update(HandoverBatch).values(lease_until=datetime.now(timezone.utc) - timedelta(seconds=1)))

    assert cli("jobs", "run", "handover").exit_code == 0
    assert _status(app, batch_id) == "ready"
    with pytest.raises(handover.LeaseLost):
        handover.renew_lease(collector.db, batch_id, "dead-worker")
    handover.release_batch(collector.db, batch_id, "dead-worker", RuntimeError("late"))
    assert _status(app, batch_id) == "ready"
    with db(app).session() as session:
        assert session.scalar(select(Photo.handover_batch_id)) == batch_id


def _status(app, batch_id: int) -> str:
    with db(app).session() as session:
        return session.get(HandoverBatch, batch_id).status


def test_the_handover_settings_are_checked():
    from settings import ConfigError, settings_from_mapping

    assert settings_from_mapping({}).handover.file_key == "exam_number"
    chosen = settings_from_mapping({"handover": {"file_key": "id_number", "normalised_copy": True}}).handover
    assert (chosen.file_key, chosen.normalised_copy) == ("id_number", True)
    with pytest.raises(ConfigError, match="file_key"):
        settings_from_mapping({"handover": {"file_key": "姓名"}})
    with pytest.raises(ConfigError, match="unknown setting"):
        settings_from_mapping({"handover": {"folder": "x"}})
