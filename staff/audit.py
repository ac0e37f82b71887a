"""The audit log: the one place that writes audit events, and the search and CSV export the admins'
audit page uses. Every sign-in, account change, unmasked view and decision is recorded here."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from rules.identity import mask_personal_data
from store.models import AuditEvent, utcnow

CSV_HEADER = ("时间", "操作人", "操作", "对象", "详情", "原因", "地址")
CSV_BATCH = 2000


def record(session: Session, actor: str, action: str, target: str, detail: str | None = None,
           reason: str | None = None, ip: str | None = None) -> AuditEvent:
    """Adds an audit event to the session's transaction: it is kept exactly when the action is."""
    event = AuditEvent(actor=actor[:64], action=action[:64], target=target[:128], detail=detail,
                       reason=reason, ip=ip, created_at=utcnow())
    session.add(event)
    return event


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page asks for. Dates are local calendar days, both ends included."""
    actor: str = ""
    action: str = ""
    target: str = ""
    since: date | None = None
    until: date | None = None

    def as_query_args(self) -> dict[str, str]:
        args = {"actor": self.actor, "action": self.action, "target": self.target,
                "since": self.since.isoformat() if self.since else "",
                "until": self.until.isoformat() if self.until else ""}
        return {key: value for key, value in args.items() if value}

    def describe(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.as_query_args().items()) or "全部"


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def search(session: Session, wanted: AuditFilter, tz: ZoneInfo, page: int = 1, per_page: int = 50) -> AuditPage:
    """Newest first. actor and action match exactly; target matches any part."""
    query = _filtered(select(AuditEvent), wanted, tz)
    total = session.scalar(_filtered(select(func.count(AuditEvent.id)), wanted, tz))
    page = max(1, page)
    events = session.scalars(query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
                             .limit(per_page).offset((page - 1) * per_page))
    return AuditPage(list(events), total or 0, page, per_page)


def actions(session: Session) -> list[str]:
    """Every action seen so far, for the page's filter list."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def export_csv(session: Session, wanted: AuditFilter, tz: ZoneInfo) -> Iterator[str]:
    """The filtered events as CSV text (UTF-8 with BOM so Excel reads the Chinese), oldest first, one chunk
    per batch of rows, so a long log is never held in memory at once. Personal numbers stay masked."""
    yield "\ufeff" + _csv_chunk([CSV_HEADER])
    columns = select(AuditEvent.id, AuditEvent.created_at, AuditEvent.actor, AuditEvent.action, AuditEvent.target,
                     AuditEvent.detail, AuditEvent.reason, AuditEvent.ip)
    last_id = 0
    while True:
        batch = session.execute(_filtered(columns, wanted, tz).where(AuditEvent.id > last_id)
                                .order_by(AuditEvent.id).limit(CSV_BATCH)).all()
        if not batch:
            return
        yield _csv_chunk(_csv_row(row, tz) for row in batch)
        last_id = batch[-1].id


def _csv_row(row, tz: ZoneInfo) -> tuple[str, ...]:
    return (row.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), row.actor, row.action,
            mask_personal_data(row.target), mask_personal_data(row.detail or ""),
            mask_personal_data(row.reason or ""), row.ip or "")


def _csv_chunk(rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for values in rows:
        writer.writerow([_defuse_formula(value) for value in values])
    return buffer.getvalue()


def _defuse_formula(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by Excel; staff-typed reasons must not be.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _filtered(query: Select, wanted: AuditFilter, tz: ZoneInfo) -> Select:
    if wanted.actor:
        query = query.where(AuditEvent.actor == wanted.actor)
    if wanted.action:
        query = query.where(AuditEvent.action == wanted.action)
    if wanted.target:
        query = query.where(AuditEvent.target.contains(wanted.target, autoescape=True))
    if wanted.since:
        query = query.where(AuditEvent.created_at >= datetime.combine(wanted.since, time(0), tz))
    if wanted.until:
        query = query.where(AuditEvent.created_at < datetime.combine(wanted.until + timedelta(days=1), time(0), tz))
    return query
