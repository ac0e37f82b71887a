"""The exam office's roster: read a CSV or XLSX file, validate every row, upsert by ID number.

Reading and validating happen before anything is written, so a file that cannot be read (or lacks a
column) changes nothing. Valid rows are upserted in one transaction; invalid rows are reported with the
row number a spreadsheet user sees (the header is row 1).
"""
from __future__ import annotations

import csv
import io
import os
import re
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable
from xml.etree.ElementTree import ParseError
from zipfile import BadZipFile


from sqlalchemy import select
from sqlalchemy.orm import Session

from rules.identity import clean_id_number, clean_name, id_number_problem, name_problem
from rules.phone import parse_mobile
from store.models import RosterEntry, utcnow

COLUMNS = {"姓名": "name", "身份证号": "id_number", "准考证号": "exam_number", "学历层次": "level", "专业": "major"}
# Optional: the graduate's mobile, the only way to remind one who never followed the account (SMS).
PHONE_COLUMN = "手机号"
CSV_ENCODINGS = ("utf-8-sig", "gb18030")
# What openpyxl raises for a file that is not a (valid) workbook (besides its InvalidFileException,
# imported with openpyxl when a workbook is read: it pulls in numpy, which no other staff command needs).
XLSX_ERRORS = (BadZipFile, ParseError, OSError, KeyError, ValueError, IndexError)
LOOKUP_CHUNK = 500
EXACT_FLOAT_LIMIT = 10 ** 15
FIELD_LIMITS = {"name": 64, "exam_number": 32, "level": 16, "major": 128}

# Staff-facing wording of rules.identity's finding keys.
IDENTITY_REASONS = {
    "name.missing": "姓名为空",
    "name.characters": "姓名只能是汉字（少数民族姓名可用“·”）",
    "name.length": "姓名应为2到30个汉字",
    "id.length": "身份证号不是18位",
    "id.characters": "身份证号只能由数字和最后一位X组成",
    "id.region": "身份证号前两位不是有效的省份代码",
    "id.birthdate": "身份证号中的出生日期不正确",
    "id.checksum": "身份证号校验位不正确",
}


class RosterFileError(ValueError):
    """The file cannot be used at all (unreadable, wrong format, a column missing)."""


@dataclass(frozen=True)
class RosterRow:
    row_number: int
    name: str
    id_number: str
    exam_number: str
    level: str
    major: str
    # None: the file has no 手机号 column (phones on the roster stay as they are); "": an empty cell.
    phone: str | None = None

    def values(self) -> dict[str, str | None]:
        values = {"name": self.name, "exam_number": self.exam_number, "level": self.level, "major": self.major}
        if self.phone is not None:
            values["phone"] = parse_mobile(self.phone) if self.phone else None
        return values


@dataclass(frozen=True)
class Rejection:
    row_number: int
    reason: str


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.rejections)


# --- reading ---------------------------------------------------------------------------------------

def read_table(path: Path) -> list[list[str]]:
    """All rows of the file as lists of strings (header first). RosterFileError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise RosterFileError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path.read_bytes(), path)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path)
    raise RosterFileError(f"unsupported file type {suffix or '(none)'}: use .csv or .xlsx")


def _read_csv(data: bytes, path: Path) -> list[list[str]]:
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        try:
            return list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise RosterFileError(f"{path}: not a valid CSV file: {exc}") from exc
    raise RosterFileError(f"{path}: neither UTF-8 nor GB18030 text")


def _read_xlsx(path: Path) -> list[list[str]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            sheet = workbook.worksheets[0]
            return [[_cell_text(value) for value in row] for row in sheet.iter_rows(values_only=True)]
        finally:
            workbook.close()
    except (InvalidFileException, *XLSX_ERRORS) as exc:
        raise RosterFileError(f"{path}: not a readable XLSX file: {exc}") from exc


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        # Excel keeps 15 significant digits: a longer number (an ID number typed into a number cell)
        # has lost its last digits, so it stays in E notation and is rejected rather than guessed.
        return f"{value:.14E}" if abs(value) >= EXACT_FLOAT_LIMIT else str(int(value))
    return str(value)


# --- parsing and validation ----------------------------------------------------------------------

def header_positions(header: list[str]) -> dict[str, int]:
    """Field name → column index. Headers may be in any order and padded with spaces."""
    cleaned = [cell.strip().lstrip("\ufeff").strip() for cell in header]
    missing = [title for title in COLUMNS if title not in cleaned]
    if missing:
        raise RosterFileError(f"missing column(s): {', '.join(missing)} (缺少列：{'、'.join(missing)})")
    positions = {name: cleaned.index(title) for title, name in COLUMNS.items()}
    if PHONE_COLUMN in cleaned:
        positions["phone"] = cleaned.index(PHONE_COLUMN)
    return positions


def parse_rows(table: list[list[str]], levels: Iterable[str], today: date) -> tuple[list[RosterRow], list[Rejection]]:
    if not table:
        raise RosterFileError("the file is empty (文件为空)")
    positions = header_positions(table[0])
    level_names = tuple(levels)
    rows: list[RosterRow] = []
    rejections: list[Rejection] = []
    for index, cells in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines at the end of a sheet
        row = _row_from_cells(index, cells, positions)
        problems = row_problems(row, level_names, today)
        if problems:
            rejections.append(Rejection(index, "；".join(problems)))
        else:
            rows.append(row)
    return _drop_duplicates(rows, rejections)


def _row_from_cells(row_number: int, cells: list[str], positions: dict[str, int]) -> RosterRow:
    def cell(name: str) -> str:
        position = positions[name]
        return cells[position].strip() if position < len(cells) else ""

    return RosterRow(row_number=row_number, name=clean_name(cell("name")), id_number=clean_id_number(cell("id_number")),
                     exam_number=cell("exam_number"), level=cell("level"), major=cell("major"),
                     phone=cell("phone") if "phone" in positions else None)


def row_problems(row: RosterRow, levels: tuple[str, ...], today: date) -> list[str]:
    problems = []
    name_key = name_problem(row.name)
    if name_key:
        problems.append(f"姓名无效：{IDENTITY_REASONS[name_key]} ({name_key})")
    if not row.id_number:
        problems.append("身份证号为空")
    elif "E+" in row.id_number:
        problems.append("身份证号在Excel中存成了数字，末几位已丢失：请把该列设为文本格式后重新填写")
    elif id_key := id_number_problem(row.id_number, today):
        problems.append(f"身份证号无效：{IDENTITY_REASONS[id_key]} ({id_key})")
    if row.level not in levels:
        problems.append(f"学历层次“{row.level}”无效，应为：{'、'.join(levels)}")
    if not row.exam_number:
        problems.append("准考证号为空")
    if not row.major:
        problems.append("专业为空")
    if row.phone and parse_mobile(row.phone) is None:
        problems.append("手机号不是有效的11位手机号码")
    problems.extend(_too_long(row))
    return problems


def _too_long(row: RosterRow) -> list[str]:
    titles = {name: title for title, name in COLUMNS.items()}
    return [f"{titles[name]}过长（最多{limit}字）" for name, limit in FIELD_LIMITS.items()
            if len(getattr(row, name)) > limit]


def _drop_duplicates(rows: list[RosterRow], rejections: list[Rejection]) -> tuple[list[RosterRow], list[Rejection]]:
    """An ID number on several rows is ambiguous: every one of those rows is rejected."""
    by_id: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_id[row.id_number].append(row.row_number)
    kept = []
    for row in rows:
        numbers = by_id[row.id_number]
        if len(numbers) > 1:
            rejections.append(Rejection(row.row_number, f"身份证号在文件中重复（第{'、'.join(map(str, numbers))}行）"))
        else:
            kept.append(row)
    rejections.sort(key=lambda rejection: rejection.row_number)
    return kept, rejections


# --- writing -------------------------------------------------------------------------------------

def upsert(session: Session, rows: list[RosterRow], commit: bool = True) -> ImportResult:
    """Adds new graduates and updates changed ones; a WeChat binding is never touched.
    commit=False only counts what it would do (the dry run staff see before committing)."""
    existing = _existing_entries(session, [row.id_number for row in rows])
    result = ImportResult()
    now = utcnow()
    for row in rows:
        entry = existing.get(row.id_number)
        if entry is None:
            if commit:
                session.add(RosterEntry(id_number=row.id_number, created_at=now, updated_at=now, **row.values()))
            result.added += 1
        elif all(getattr(entry, name) == value for name, value in row.values().items()):
            result.unchanged += 1
        else:
            if commit:
                for name, value in row.values().items():
                    setattr(entry, name, value)
                entry.updated_at = now
            result.updated += 1
    if commit:
        session.flush()
    return result


def _existing_entries(session: Session, id_numbers: list[str]) -> dict[str, RosterEntry]:
    found: dict[str, RosterEntry] = {}
    for start in range(0, len(id_numbers), LOOKUP_CHUNK):
        chunk = id_numbers[start:start + LOOKUP_CHUNK]
        for entry in session.scalars(select(RosterEntry).where(RosterEntry.id_number.in_(chunk))):
            found[entry.id_number] = entry
    return found


def import_roster(session: Session, path: Path, levels: Iterable[str], today: date,
                  commit: bool = True) -> ImportResult:
    """Reads, validates and upserts the file. RosterFileError (nothing written) if it cannot be used.
    commit=False writes nothing and reports what committing would do."""
    rows, rejections = parse_rows(read_table(path), levels, today)
    result = upsert(session, rows, commit)
    result.rejections = rejections
    return result


# --- uploads kept between the dry run and the commit (the console) -------------------------------

UPLOAD_FOLDER = "roster-uploads"
UPLOAD_SUFFIXES = (".csv", ".xlsx", ".xlsm")
UPLOAD_TOKEN = re.compile(r"[A-Za-z0-9_-]{22}(\.csv|\.xlsx|\.xlsm)")
UPLOAD_MAX_AGE_SECONDS = 24 * 3600


def keep_upload(data_dir: Path, file_name: str, data: bytes) -> str:
    """Stores an uploaded roster file (mode 0600) under the data directory; returns the token that names
    it. RosterFileError for a file type the import cannot read."""
    suffix = Path(file_name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise RosterFileError(f"unsupported file type {suffix or '(none)'}: use .csv or .xlsx（请上传 CSV 或 XLSX 文件）")
    folder = Path(data_dir) / UPLOAD_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _drop_old_uploads(folder)
    token = secrets.token_urlsafe(16) + suffix
    with os.fdopen(os.open(folder / token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(data)
    return token


def kept_upload(data_dir: Path, token: str) -> Path:
    """The file a token names; RosterFileError when the token is malformed or the file is gone."""
    path = Path(data_dir) / UPLOAD_FOLDER / token
    if not UPLOAD_TOKEN.fullmatch(token) or not path.is_file():
        raise RosterFileError("the uploaded file is gone: upload it again（上传的文件已失效，请重新上传）")
    return path


def _drop_old_uploads(folder: Path) -> None:
    """Files of dry runs nobody committed are personal data too: they go after a day."""
    cutoff = time.time() - UPLOAD_MAX_AGE_SECONDS
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def import_audited(session: Session, path: Path, levels: Iterable[str], today: date, by: str, source_name: str,
                   commit: bool = True, ip: str | None = None) -> ImportResult:
    """The import as staff run it (CLI and console): committed imports and dry runs are both audited."""
    from staff.audit import record

    result = import_roster(session, path, levels, today, commit=commit)
    record(session, by, "roster.import" if commit else "roster.preview", source_name[:128],
           f"added {result.added}, updated {result.updated}, unchanged {result.unchanged}, "
           f"rejected {result.rejected}", ip=ip)
    return result
