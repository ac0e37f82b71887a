"""Helpers for the staff CLI tests: roster files and candidates put straight into the database."""
from __future__ import annotations

import secrets
from pathlib import Path

from openpyxl import Workbook
from sqlalchemy import select

from store.models import AuditEvent, Candidate, Message, Order, Photo, RosterEntry, utcnow

HEADER = ["姓名", "身份证号", "准考证号", "学历层次", "专业"]
# Fictional graduates with valid GB 11643 ID numbers (check digits computed).
ROWS = [
    ["王小明", "110101199503120118", "012420110001", "本科", "汉语言文学"],
    ["刘芳", "110102199807250225", "012420110002", "专科", "工商企业管理"],
    ["陈静", "110105199301080467", "012420110003", "本科", "计算机科学与技术"],
]
PHONE = "13912345678"


def write_csv(path: Path, rows: list[list[str]], header=HEADER, encoding: str = "utf-8") -> Path:
    lines = [",".join(header)] + [",".join(row) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list], header=HEADER) -> Path:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def db(app):
    return app.extensions["collector"].db


def entry(app, id_number: str) -> RosterEntry | None:
    with db(app).session() as session:
        return session.scalar(select(RosterEntry).where(RosterEntry.id_number == id_number))


def candidate(app, openid: str) -> Candidate | None:
    with db(app).session() as session:
        return session.scalar(select(Candidate).where(Candidate.openid == openid))


def photos(app, roster_entry_id: int) -> list[Photo]:
    with db(app).session() as session:
        return list(session.scalars(select(Photo).where(Photo.roster_entry_id == roster_entry_id).order_by(Photo.id)))


def orders(app, roster_entry_id: int) -> list[Order]:
    with db(app).session() as session:
        return list(session.scalars(select(Order).where(Order.roster_entry_id == roster_entry_id)))


def audit_events(app, action: str | None = None) -> list[AuditEvent]:
    with db(app).session() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        return list(session.scalars(query))


def transcript_rows(app, openid: str) -> list[Message]:
    with db(app).session() as session:
        return list(session.scalars(select(Message).where(Message.openid == openid).order_by(Message.id)))


def put_under_review(app, graduate: list[str], openid: str, state: str = "under_review",
                     photo_status: str = "submitted") -> int:
    """A candidate bound to the graduate, paid, with a photo that passed the checks; returns the entry id."""
    name, id_number, _, level, _ = graduate
    with db(app).session() as session:
        roster_entry = session.scalar(select(RosterEntry).where(RosterEntry.id_number == id_number))
        roster_entry.bound_openid, roster_entry.bound_at = openid, utcnow()
        person = Candidate(openid=openid, state=state, level=level, name=name, id_number=id_number, phone=PHONE,
                           roster_entry_id=roster_entry.id)
        session.add(person)
        session.flush()
        session.add(Order(out_trade_no=secrets.token_hex(8), roster_entry_id=roster_entry.id, openid=openid,
                          amount_fen=3000, status="paid", gateway="sandbox", paid_at=utcnow()))
        session.add(Photo(candidate_id=person.id, roster_entry_id=roster_entry.id, sha256="ab" * 32,
                          path=f"ab/ab/{'ab' * 32}", size_bytes=45000, verdict="pass",
                          report={"verdict": "pass", "failures": [], "metrics": {},
                                  "hints": [{"code": "glasses", "message": "戴眼镜", "value": None}]},
                          status=photo_status, created_at=utcnow()))
        session.add(Message(openid=openid, direction="in", channel="webhook", msg_type="text",
                            content=f"{name} {id_number}\n手机 {PHONE}", state_before="identity", state_after="phone",
                            created_at=utcnow()))
        session.add(Message(openid=openid, direction="in", channel="webhook", msg_type="image",
                            content="[image media_id=m1]", media_path=f"ab/ab/{'ab' * 32}", state_before="photo",
                            state_after="payment", checks={"photo": {"verdict": "pass", "failures": [],
                                                                     "hints": [{"code": "glasses"}]}},
                            created_at=utcnow()))
        return roster_entry.id
