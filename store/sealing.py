"""Seals the personal values of an existing database in place, and re-seals them under a new key.

`flask db upgrade` runs `seal_existing` after the schema migration (0014 added the columns), and
`flask keys rotate` runs it after a new active key is configured. Each table is walked in primary-key
order, a batch per transaction; the batch's rows and the table's progress mark (`seal_progress`) commit
together, so a run killed anywhere goes on after the last committed batch. Rows already under the
active key are left alone, so a second run writes nothing. Older keys stay readable throughout.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Text, bindparam, func, select, type_coerce, update

from store.crypto import TOKEN_PREFIX, KeyRing
from store.db import Database
from store.models import (Candidate, InboundKey, Message, Notification, PhoneCode, ReminderCampaign,
                          ReminderRecipient, RosterEntry, SealProgress)
from store.sealed import (INLINE_TOKEN, Sealed, SealedJSON, SealedList, SealedText, hash_columns_of, hashed_value,
                          holds_sensitive_run)

BATCH = 1000

# Each model with its sealed columns; the ones with a *_hash sibling get it (re)computed too.
SEALED_COLUMNS = (
    (RosterEntry, ("id_number", "phone")),
    (Candidate, ("id_number", "phone")),
    (Notification, ("phone", "payload")),
    (ReminderRecipient, ("phone",)),
    (PhoneCode, ("phone",)),
    (ReminderCampaign, ("id_numbers",)),
    (Message, ("content",)),
    (InboundKey, ("reply_xml",)),
)


@dataclass
class TableProgress:
    table: str
    done: int
    total: int
    changed: int


def seal_existing(db: Database, ring: KeyRing, batch: int = BATCH,
                  progress: Callable[[TableProgress], None] = lambda _: None) -> dict[str, int]:
    """{table: rows rewritten}. Needs the active key only when some row is not yet under it."""
    changed = {model.__tablename__: _seal_table(db, ring, model, columns, batch, progress)
               for model, columns in SEALED_COLUMNS}
    db.checkpoint()  # the plaintext pages leave the WAL too (secure_delete zeroed them in the file)
    return changed


def _seal_table(db, ring, model, columns, batch, progress) -> int:
    table = model.__table__
    key_column = table.primary_key.columns[0]
    name = table.name
    with db.session() as session:
        mark = _mark(session, name, ring.active_key)
        if mark.finished:
            return 0
        total = session.scalar(select(func.count()).select_from(table))
        done = 0 if mark.last_key is None else session.scalar(
            select(func.count()).select_from(table).where(key_column <= _typed_key(key_column, mark.last_key)))
    hashes = [hash_column for column in columns for hash_column in hash_columns_of(table, column)]
    # The stored text as it is (tokens, plaintext) with the hashes: what decides whether a row is stale.
    stored = select(key_column, *(type_coerce(table.c[column], Text).label(column) for column in columns),
                    *(table.c[column] for column in hashes)).order_by(key_column).limit(batch)
    rewrite = update(table).where(key_column == bindparam("_key"))
    changed = 0
    while True:
        with db.session() as session:
            mark = _mark(session, name, ring.active_key)
            after = None if mark.last_key is None else _typed_key(key_column, mark.last_key)
            query = stored if after is None else stored.where(key_column > after)
            rows = session.execute(query).all()
            stale = [row for row in rows if _row_needs_sealing(table, columns, row, ring)]
            if stale:
                session.execute(rewrite, [_sealed_row(session, table, key_column, columns, row, ring) for row in stale])
            if rows:
                mark.last_key = str(getattr(rows[-1], key_column.key))
            mark.finished = len(rows) < batch
        changed += len(stale)
        done += len(rows)
        progress(TableProgress(name, done, total, changed))
        if mark.finished:
            return changed


def _mark(session, name: str, key_id: str) -> SealProgress:
    mark = session.get(SealProgress, name, with_for_update=True)
    if mark is None:
        mark = SealProgress(name=name, key_id=key_id, last_key=None, finished=False)
        session.add(mark)
        session.flush()
    elif mark.key_id != key_id:  # a new active key: walk the table again
        mark.key_id, mark.last_key, mark.finished = key_id, None, False
    return mark


def _typed_key(key_column, text: str):
    return int(text) if key_column.type.python_type is int else text


def _needs_sealing(kind, raw: str | None, ring: KeyRing) -> bool:
    if raw is None or raw == "":
        return False
    current = f"{TOKEN_PREFIX}{ring.active_key}:"
    if isinstance(kind, Sealed):
        return not raw.startswith(current)
    if isinstance(kind, SealedList):
        return any(not str(item).startswith(current) for item in json.loads(raw))
    if isinstance(kind, (SealedText, SealedJSON)):  # JSON text: its strings' runs are runs of the whole
        return holds_sensitive_run(raw) or any(not token.startswith(current) for token in INLINE_TOKEN.findall(raw))
    raise TypeError(f"{kind!r} is not a sealed type")


def _row_needs_sealing(table, columns, row, ring: KeyRing) -> bool:
    for column in columns:
        raw = getattr(row, column)
        if _needs_sealing(table.c[column].type, raw, ring):
            return True
        if raw is not None and any(getattr(row, hashed) is None for hashed in hash_columns_of(table, column)):
            return True
    return False


def _sealed_row(session, table, key_column, columns, row, ring: KeyRing) -> dict:
    dialect = session.get_bind().dialect
    values = {"_key": getattr(row, key_column.key)}
    for column in columns:
        plain = table.c[column].type.process_result_value(getattr(row, column), dialect)
        values[column] = plain  # the column's type seals it under the active key on the way in
        for hash_column in hash_columns_of(table, column):
            values[hash_column] = hashed_value(ring, hash_column, plain)
    return values


def pending_counts(db: Database, ring: KeyRing) -> dict[str, int]:
    """Rows per table not yet walked under the active key (0 everywhere once sealing is done)."""
    counts = {}
    with db.read() as session:
        for model, _ in SEALED_COLUMNS:
            table = model.__table__
            key_column = table.primary_key.columns[0]
            mark = session.get(SealProgress, table.name)
            query = select(func.count()).select_from(table)
            if mark is not None and mark.key_id == ring.active_key:
                if mark.finished:
                    counts[table.name] = 0
                    continue
                if mark.last_key is not None:
                    query = query.where(key_column > _typed_key(key_column, mark.last_key))
            counts[table.name] = session.scalar(query)
    return counts
