"""Finding one graduate from what staff type or are shown: the full ID number, the 准考证号, or the
masked ID number as screens show it, with the name (`110101********0118 王小明`). One place, so
every command and page accepts the same things."""
from __future__ import annotations

import re

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from rules.identity import clean_id_number, clean_name, mask_id_number
from rules.text import normalize
from store.models import RosterEntry
from store.sealed import LookupValue, masked_form

MASKED = re.compile(r"^(\d{6})\*+(\d{3}[\dX])$")
FULL_ID = re.compile(r"^\d{17}[\dX]$")
EXAM_NUMBER = re.compile(r"^[0-9A-Z]{6,32}$")
CHOICES_SHOWN = 5

WHAT_TO_TYPE = "请输入完整身份证号、准考证号，或“掩码身份证号 姓名”（如 110101********0118 王小明）"


class GraduateNotFound(Exception):
    """Nothing or more than one graduate matches; the message says what to type instead."""


def find_graduate(session: Session, text: str) -> RosterEntry:
    """The one roster entry `text` names, or GraduateNotFound saying why and what to type."""
    words = normalize(text or "").split()
    if not words:
        raise GraduateNotFound(WHAT_TO_TYPE)
    key = clean_id_number(words[0])
    name = clean_name("".join(words[1:])) or None  # the roster import's rule: dot variants folded
    if FULL_ID.match(key):
        return _one(_by_id_number(session, key, name), text)
    if MASKED.match(key):
        return _one(_by_masked(session, key, name), text, masked=True)
    if EXAM_NUMBER.match(key):
        return _one(_by_exam_number(session, key, name), text)
    raise GraduateNotFound(f"看不懂“{shown(text)}”。{WHAT_TO_TYPE}")


def looks_like_graduate(text: str) -> bool:
    """Whether `text` has the shape of something find_graduate reads (else it may be an openid)."""
    words = normalize(text or "").split()
    if not words:
        return False
    key = clean_id_number(words[0])
    return bool(FULL_ID.match(key) or MASKED.match(key) or (EXAM_NUMBER.match(key) and key.isdigit()))


def _by_id_number(session: Session, id_number: str, name: str | None) -> list[RosterEntry]:
    entries = list(session.scalars(select(RosterEntry).where(RosterEntry.id_number == id_number)))
    return _named(entries, name)


def _by_exam_number(session: Session, exam_number: str, name: str | None) -> list[RosterEntry]:
    entries = list(session.scalars(select(RosterEntry).where(RosterEntry.exam_number == exam_number)
                                   .order_by(RosterEntry.id)))
    return _named(entries, name)


def _by_masked(session: Session, masked: str, name: str | None) -> list[RosterEntry]:
    head, tail = MASKED.match(masked).groups()
    # Only the keyed hash of what the mask shows is stored: compare that (store/sealed.py).
    query = select(RosterEntry).where(
        RosterEntry.id_number_masked_hash == literal(masked_form(head + tail), LookupValue()))
    if name is not None:
        query = query.where(RosterEntry.name == name)
    return list(session.scalars(query.order_by(RosterEntry.id).limit(CHOICES_SHOWN + 1)))


def _named(entries: list[RosterEntry], name: str | None) -> list[RosterEntry]:
    return [entry for entry in entries if name is None or entry.name == name]


def _one(entries: list[RosterEntry], text: str, masked: bool = False) -> RosterEntry:
    if len(entries) == 1:
        return entries[0]
    if not entries:
        raise GraduateNotFound(f"名单中没有“{shown(text)}”。{WHAT_TO_TYPE}")
    choices = "；".join(f"{entry.name} 准考证号 {entry.exam_number}" for entry in entries[:CHOICES_SHOWN])
    more = "等" if len(entries) > CHOICES_SHOWN else ""
    hint = "请加上姓名，或" if masked and " " not in text.strip() else "请"
    raise GraduateNotFound(f"“{shown(text)}”对应多名考生（{choices}{more}），{hint}改用准考证号。")


def shown(text: str) -> str:
    """What the user typed, back to them with any full ID number masked."""
    return " ".join(mask_id_number(word) if FULL_ID.match(clean_id_number(word)) else word
                    for word in normalize(text or "").split())
