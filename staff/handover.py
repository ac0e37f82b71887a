"""Hand-over of approved photos to the exam office: a zip of one photo per graduate plus a manifest.

A batch first claims every approved photo not yet handed over with one conditional UPDATE (two builds
at once never share a photo), commits, and only then writes the zip, photo by photo, straight to a file
under the data directory: a batch of 20 000 photos never sits in memory, and the long write holds no
database transaction (SQLite has one writer). A build that fails gives its photos back to the next one.

The CLI writes the zip in its own process; the console claims in the request and queues the writing
(huey task "handover"). The writer holds the batch with a lease it renews every chunk of photos; the
periodic job "handover" finishes a batch whose task never started or whose writer died.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from settings import Settings
from staff.audit import record
from store.db import Database
from store.crypto import DecryptError
from store.files import PhotoFiles
from store.models import HandoverBatch, Photo, ReviewDecision, RosterEntry, utcnow

FOLDER = "handover"
ORIGINALS = "photos"
NORMALISED = "480x640"
NORMALISED_SIZE = (480, 640)
MANIFEST_NAME = "manifest.xlsx"
MANIFEST_HEADER = ("姓名", "身份证号", "准考证号", "学历层次", "专业", "审核时间", "审核人", "文件名", "SHA-256")
CHUNK = 500
UNSAFE_NAME = re.compile(r"[^0-9A-Za-z_-]")
# A worker renews its hold on a batch every CHUNK photos; one that stopped renewing this long ago died.
LEASE = timedelta(minutes=10)
# A batch queued this long ago whose task never started (the queue was down) is built by the periodic job.
NOT_STARTED_AFTER = timedelta(minutes=2)

log = logging.getLogger(__name__)


class HandoverError(Exception):
    """Nothing to hand over, an unknown batch, a photo file that is missing or changed."""


@dataclass(frozen=True)
class BatchInfo:
    id: int
    status: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    photo_count: int
    size_bytes: int | None
    file_key: str
    normalised_copy: bool
    path: str | None
    error: str | None

    @classmethod
    def of(cls, batch: HandoverBatch) -> "BatchInfo":
        return cls(id=batch.id, status=batch.status, created_by=batch.created_by, created_at=batch.created_at,
                   finished_at=batch.finished_at, photo_count=batch.photo_count, size_bytes=batch.size_bytes,
                   file_key=batch.file_key, normalised_copy=batch.normalised_copy, path=batch.path,
                   error=batch.error)

    @property
    def file_name(self) -> str:
        return Path(self.path).name if self.path else ""


@dataclass(frozen=True)
class ManifestRow:
    photo_id: int
    name: str
    id_number: str
    exam_number: str
    level: str
    major: str
    reviewed_at: datetime | None
    reviewed_by: str | None
    sha256: str
    path: str


# --- building -------------------------------------------------------------------------------------

def build_batch(db: Database, settings: Settings, by: str, out_dir: Path | None = None,
                ip: str | None = None) -> BatchInfo:
    """Claims, writes and records one batch (the CLI: all in this process); copies the zip to out_dir too
    when given. HandoverError (nothing changed) when no approved photo is waiting."""
    batch_id = claim_batch(db, settings, by)
    info = finish_batch(db, settings, batch_id, ip)
    if info is None:  # the periodic job took it over in between: only after a lease of LEASE ran out
        raise HandoverError(f"报送批次 {batch_id} 已由后台任务接手，完成后可在列表中下载。")
    if out_dir is not None:
        copy_out(settings.data_dir / info.path, Path(out_dir))
    return info


def finish_batch(db: Database, settings: Settings, batch_id: int, ip: str | None = None) -> BatchInfo | None:
    """Writes a claimed batch's zip and marks it ready. None when another worker holds it or it is no
    longer building. On an error the batch fails and its photos go back to the next batch."""
    builder = secrets.token_hex(8)
    if not take_lease(db, batch_id, builder):
        return None
    try:
        path, size = write_zip(db, settings, batch_id, builder, renew=partial(renew_lease, db, batch_id, builder))
    except LeaseLost:
        raise
    except BaseException as error:
        release_batch(db, batch_id, builder, error)
        raise
    with db.session() as session:
        done = session.execute(
            update(HandoverBatch).where(HandoverBatch.id == batch_id, HandoverBatch.builder == builder,
                                        HandoverBatch.status == "building")
            .values(status="ready", path=path, size_bytes=size, finished_at=utcnow(), builder=None, lease_until=None)
            .execution_options(synchronize_session=False)).rowcount
        if done:
            batch = session.get(HandoverBatch, batch_id)
            record(session, batch.created_by, "handover.build", f"batch:{batch_id}",
                   f"{batch.photo_count} photos, {size} bytes", ip=ip)
            return BatchInfo.of(batch)
    (settings.data_dir / path).unlink(missing_ok=True)  # the worker that took over keeps its own file
    raise LeaseLost(f"报送批次 {batch_id} 已由另一个任务接手。")


class LeaseLost(HandoverError):
    """This worker was too slow: another one took the batch over (and writes it)."""


def take_lease(db: Database, batch_id: int, builder: str) -> bool:
    now = utcnow()
    with db.session() as session:
        return session.execute(
            update(HandoverBatch).where(HandoverBatch.id == batch_id, HandoverBatch.status == "building",
                                        or_(HandoverBatch.lease_until.is_(None), HandoverBatch.lease_until < now))
            .values(builder=builder, lease_until=now + LEASE).execution_options(synchronize_session=False)
        ).rowcount == 1


def renew_lease(db: Database, batch_id: int, builder: str) -> None:
    with db.session() as session:
        renewed = session.execute(
            update(HandoverBatch).where(HandoverBatch.id == batch_id, HandoverBatch.builder == builder,
                                        HandoverBatch.status == "building")
            .values(lease_until=utcnow() + LEASE).execution_options(synchronize_session=False)).rowcount
    if not renewed:
        raise LeaseLost(f"报送批次 {batch_id} 已由另一个任务接手。")


def run_job(db: Database, settings: Settings, batch_id: int, ip: str | None = None) -> None:
    """The "handover" background task the console queues after claiming a batch."""
    try:
        finish_batch(db, settings, batch_id, ip)
    except Exception:  # noqa: BLE001 - recorded on the batch (failed, with the error); the worker goes on
        log.exception("hand-over batch %s failed", batch_id)


def resume_stuck(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """The periodic "handover" job: finishes batches whose task never ran (the queue was down) or whose
    worker died (its lease ran out)."""
    now = now or utcnow()
    with db.session() as session:
        stuck = list(session.scalars(select(HandoverBatch.id).where(
            HandoverBatch.status == "building",
            or_(HandoverBatch.lease_until < now,
                and_(HandoverBatch.lease_until.is_(None), HandoverBatch.created_at < now - NOT_STARTED_AFTER)))
            .order_by(HandoverBatch.id)))
    finished = sum(1 for batch_id in stuck if _resumed(db, settings, batch_id))
    return {"stuck": len(stuck), "finished": finished}


def _resumed(db: Database, settings: Settings, batch_id: int) -> bool:
    try:
        return finish_batch(db, settings, batch_id) is not None
    except Exception:  # noqa: BLE001 - the batch records its error; the others still get their turn
        log.exception("hand-over batch %s failed", batch_id)
        return False


def claim_batch(db: Database, settings: Settings, by: str) -> int:
    with db.session() as session:
        batch = HandoverBatch(status="building", created_by=by[:64], file_key=settings.handover.file_key,
                              normalised_copy=settings.handover.normalised_copy, created_at=utcnow())
        session.add(batch)
        session.flush()
        claimed = session.execute(
            update(Photo).where(Photo.status == "approved", Photo.handover_batch_id.is_(None),
                                ~approval_can_be_undone(utcnow()))
            .values(handover_batch_id=batch.id).execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            raise HandoverError("没有待报送的照片：所有已通过审核的照片都已报送。")
        batch.photo_count = claimed
        return batch.id


def approval_can_be_undone(now: datetime):
    """An approval still inside its undo grace period is not final: it waits for the next batch."""
    return exists().where(ReviewDecision.photo_id == Photo.id, ReviewDecision.undone_at.is_(None),
                          ReviewDecision.undo_until.is_not(None), ReviewDecision.undo_until > now)


def release_batch(db: Database, batch_id: int, builder: str, error: BaseException) -> None:
    """The batch failed: its photos go back to the next batch (only by the worker still holding it)."""
    with db.session() as session:
        failed = session.execute(
            update(HandoverBatch).where(HandoverBatch.id == batch_id, HandoverBatch.builder == builder,
                                        HandoverBatch.status == "building")
            .values(status="failed", error=str(error)[:500] or type(error).__name__, finished_at=utcnow(),
                    builder=None, lease_until=None).execution_options(synchronize_session=False)).rowcount
        if failed:
            session.execute(update(Photo).where(Photo.handover_batch_id == batch_id).values(handover_batch_id=None)
                            .execution_options(synchronize_session=False))


def write_zip(db: Database, settings: Settings, batch_id: int, builder: str = "",
              renew=lambda: None) -> tuple[str, int]:
    """Writes the batch's zip (mode 0600) and returns (path relative to the data dir, size)."""
    folder = settings.data_dir / FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(settings.window.tz).strftime("%Y%m%d-%H%M%S")
    final = folder / f"handover-{batch_id:05d}-{stamp}.zip"
    partial_file = folder / f".{final.name}.{builder}.part"
    files = PhotoFiles.for_settings(settings)
    try:
        with os.fdopen(os.open(partial_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as raw, \
                zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as archive, \
                tempfile.TemporaryDirectory(dir=folder) as scratch:
            manifest = Manifest(Path(scratch) / MANIFEST_NAME)
            try:
                add_photos(archive, manifest, batch_rows(db, batch_id, renew), files, settings)
            except BaseException:
                manifest.discard()
                raise
            archive.write(manifest.save(), MANIFEST_NAME, compress_type=zipfile.ZIP_DEFLATED)
        os.replace(partial_file, final)
    finally:
        partial_file.unlink(missing_ok=True)
    return str(final.relative_to(settings.data_dir)), final.stat().st_size


def add_photos(archive: zipfile.ZipFile, manifest: "Manifest", rows, files: PhotoFiles, settings: Settings) -> None:
    """One photo at a time: read, verify, write into the zip (and its normalised copy), list it."""
    names: set[str] = set()
    for row in rows:
        name = unique_name(file_stem(row, settings.handover.file_key), names)
        data = read_photo(files, row)
        archive.writestr(f"{ORIGINALS}/{name}", data)
        if settings.handover.normalised_copy:
            archive.writestr(f"{NORMALISED}/{name}", normalised_jpeg(data))
        manifest.append(row, name, settings.window.tz)


def batch_rows(db: Database, batch_id: int, renew=lambda: None):
    """The batch's photos with their roster records, a chunk per short transaction (renewing the lease)."""
    last_id = 0
    while True:
        renew()
        with db.session() as session:
            chunk = [ManifestRow(*row) for row in session.execute(
                select(Photo.id, RosterEntry.name, RosterEntry.id_number, RosterEntry.exam_number, RosterEntry.level,
                       RosterEntry.major, Photo.reviewed_at, Photo.reviewed_by, Photo.sha256, Photo.path)
                .join(RosterEntry, RosterEntry.id == Photo.roster_entry_id)
                .where(Photo.handover_batch_id == batch_id, Photo.id > last_id).order_by(Photo.id).limit(CHUNK))]
        if not chunk:
            return
        yield from chunk
        last_id = chunk[-1].photo_id


def file_stem(row: ManifestRow, file_key: str) -> str:
    key = row.id_number if file_key == "id_number" else row.exam_number
    return UNSAFE_NAME.sub("_", key) or f"photo{row.photo_id}"


def unique_name(stem: str, taken: set[str]) -> str:
    """Two graduates with the same key (a roster typo) keep both photos: the second gets a suffix."""
    name, n = f"{stem}.jpg", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}.jpg"
    taken.add(name)
    return name


def read_photo(files: PhotoFiles, row: ManifestRow) -> bytes:
    try:
        data = files.read(row.path)
    except OSError as error:
        raise HandoverError(f"照片 {row.photo_id} 的文件无法读取：{error}") from error
    except DecryptError as error:  # the cipher's tag caught a change before the SHA-256 could
        raise HandoverError(f"照片 {row.photo_id} 的文件与入库时不一致（无法解密，SHA-256 无从核对），未报送。") from error
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise HandoverError(f"照片 {row.photo_id} 的文件与入库时不一致（SHA-256 不符），未报送。")
    return data


def normalised_jpeg(data: bytes) -> bytes:
    """The office's format: 480×640 JPEG, cropped to 3:4 around the centre, orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    fitted = ImageOps.fit(upright, NORMALISED_SIZE, method=Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fitted.save(out, "JPEG", quality=90)
    return out.getvalue()


class Manifest:
    """The manifest XLSX, streamed row by row (openpyxl write-only mode)."""

    def __init__(self, path: Path):
        from openpyxl import Workbook

        self.path = path
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet("报送清单")
        self.sheet.append(list(MANIFEST_HEADER))

    def append(self, row: ManifestRow, file_name: str, tz) -> None:
        reviewed = row.reviewed_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if row.reviewed_at else ""
        self.sheet.append([row.name, row.id_number, row.exam_number, row.level, row.major, reviewed,
                           row.reviewed_by or "", file_name, row.sha256])

    def discard(self) -> None:
        self.sheet.close()  # ends openpyxl's row writer, which would complain when collected

    def save(self) -> Path:
        self.workbook.save(self.path)
        return self.path


def copy_out(zip_path: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / zip_path.name
    shutil.copyfile(zip_path, target)
    os.chmod(target, 0o600)
    return target


# --- reading ----------------------------------------------------------------------------------------

def list_batches(session: Session) -> list[BatchInfo]:
    return [BatchInfo.of(batch) for batch in session.scalars(select(HandoverBatch).order_by(HandoverBatch.id.desc()))]


def waiting_count(session: Session) -> int:
    """Approved photos the next batch would take."""
    return session.scalar(select(func.count()).select_from(Photo).where(
        Photo.status == "approved", Photo.handover_batch_id.is_(None), ~approval_can_be_undone(utcnow())))


def batch_file(session: Session, data_dir: Path, batch_id: int, by: str, ip: str | None = None) -> Path:
    """The zip of a ready batch, for downloading again; audited."""
    batch = session.get(HandoverBatch, batch_id)
    if batch is None or batch.status != "ready" or not batch.path:
        raise HandoverError(f"报送批次 {batch_id} 不存在或尚未生成。")
    path = Path(data_dir) / batch.path
    if not path.is_file():
        raise HandoverError(f"报送批次 {batch_id} 的文件不见了：{batch.path}")
    record(session, by, "handover.download", f"batch:{batch_id}", f"{batch.photo_count} photos", ip=ip)
    return path
