"""Queries shared by the conversation, the payment pages and the staff commands."""
from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from store.models import Candidate, MatchAttempt, Order, Photo, RosterEntry, utcnow


def candidate_for(session: Session, openid: str, lock: bool = False) -> Candidate:
    """The candidate row of a WeChat account, created on first contact. With lock, two messages of
    the same candidate are handled one after the other, each seeing what the other stored."""
    candidate = session.scalar(_candidate_by_openid(lock), {"openid": openid})
    if candidate is None:
        candidate = Candidate(openid=openid, state="welcome")
        session.add(candidate)
        session.flush()
    return candidate


@functools.lru_cache(maxsize=None)
def _candidate_by_openid(lock: bool):
    # Built once: every text message loads its candidate, and building the SELECT and its cache key each
    # time cost about as much as running it.
    query = select(Candidate).where(Candidate.openid == bindparam("openid"))
    return query.with_for_update() if lock else query


def find_candidate(session: Session, openid: str) -> Candidate | None:
    return session.scalar(select(Candidate).where(Candidate.openid == openid))


def roster_by_id_number(session: Session, id_number: str) -> RosterEntry | None:
    return session.scalar(select(RosterEntry).where(RosterEntry.id_number == id_number))


def match_roster(session: Session, name: str, id_number: str, level: str) -> RosterEntry | None:
    entry = roster_by_id_number(session, id_number)
    if entry is None or entry.name != name or entry.level != level:
        return None
    return entry


def failed_matches_since(session: Session, openid: str, since: datetime) -> int:
    return session.scalar(
        select(func.count()).select_from(MatchAttempt)
        .where(MatchAttempt.openid == openid, MatchAttempt.matched.is_(False), MatchAttempt.created_at >= since)
    ) or 0


def oldest_failed_match_since(session: Session, openid: str, since: datetime) -> datetime | None:
    return session.scalar(
        select(func.min(MatchAttempt.created_at))
        .where(MatchAttempt.openid == openid, MatchAttempt.matched.is_(False), MatchAttempt.created_at >= since)
    )


def match_attempts_since(session: Session, since: datetime) -> tuple[int, datetime | None]:
    """Roster look-ups by every account since `since`: how many, and the oldest one's time."""
    count, oldest = session.execute(
        select(func.count(), func.min(MatchAttempt.created_at)).where(MatchAttempt.created_at >= since)
    ).one()
    if oldest is not None and oldest.tzinfo is None:  # an aggregate skips the column's type on SQLite
        oldest = oldest.replace(tzinfo=timezone.utc)
    return count or 0, oldest


def record_match_attempt(session: Session, openid: str, matched: bool, at: datetime | None = None) -> None:
    """`at`: the conversation's clock, which the limits count by."""
    session.add(MatchAttempt(openid=openid, matched=matched, created_at=at or utcnow()))


def bind(session: Session, entry: RosterEntry, openid: str) -> bool:
    """Binds the roster entry to this account unless another account holds it (a race-safe update)."""
    result = session.execute(
        update(RosterEntry)
        .where(RosterEntry.id == entry.id,
               (RosterEntry.bound_openid.is_(None)) | (RosterEntry.bound_openid == openid))
        .values(bound_openid=openid, bound_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.refresh(entry)
    return result.rowcount == 1


def paid_order(session: Session, roster_entry_id: int) -> Order | None:
    return session.scalar(
        select(Order).where(Order.roster_entry_id == roster_entry_id, Order.status == "paid")
        .order_by(Order.paid_at).limit(1)
    )


def pending_order(session: Session, roster_entry_id: int) -> Order | None:
    return session.scalar(
        select(Order).where(Order.roster_entry_id == roster_entry_id, Order.status == "pending")
        .order_by(Order.id.desc()).limit(1)
    )


def order_by_trade_no(session: Session, out_trade_no: str) -> Order | None:
    return session.scalar(select(Order).where(Order.out_trade_no == out_trade_no))


def latest_photo(session: Session, candidate_id: int, statuses: tuple[str, ...]) -> Photo | None:
    return session.scalar(
        select(Photo).where(Photo.candidate_id == candidate_id, Photo.status.in_(statuses))
        .order_by(Photo.id.desc()).limit(1)
    )


def latest_roster_photo(session: Session, roster_entry_id: int, statuses: tuple[str, ...]) -> Photo | None:
    return session.scalar(
        select(Photo).where(Photo.roster_entry_id == roster_entry_id, Photo.status.in_(statuses))
        .order_by(Photo.id.desc()).limit(1)
    )


def replace_submitted_photos(session: Session, roster_entry_id: int) -> None:
    session.execute(
        update(Photo).where(Photo.roster_entry_id == roster_entry_id, Photo.status == "submitted")
        .values(status="replaced").execution_options(synchronize_session=False)
    )


def audit(session: Session, actor: str, action: str, target: str, detail: str | None = None,
          reason: str | None = None) -> None:
    """Kept for existing callers; staff/audit.py is where audit events are written."""
    from staff.audit import record  # staff builds on store, so store imports it only when used

    record(session, actor, action, target, detail, reason=reason)


def hour_ago(now: datetime) -> datetime:
    return now - timedelta(hours=1)


def connection_of(session: Session) -> Connection:
    """The session's connection in its current transaction, for Core statements on the hot path: looked
    up through the session once per transaction (each lookup walks its transaction state)."""
    transaction = session.get_transaction()
    held = session.info.get("core_connection")
    if transaction is not None and held is not None and held[0] is transaction:
        return held[1]
    connection = session.connection()
    session.info["core_connection"] = (session.get_transaction(), connection)
    return connection


def insert_unless_taken(session: Session, table: Table, values: dict) -> bool:
    """INSERT … ON CONFLICT DO NOTHING into a model's table on the session's connection: True when the
    row went in. SQLAlchemy's dialect inserts with ON CONFLICT are compiled afresh on every call (they
    have no cache key), about 1 ms each; this one statement per table and dialect is compiled once."""
    connection = connection_of(session)
    statement = _insert_unless_taken(table, connection.dialect.name)
    return connection.execute(statement, values).first() is not None


@functools.lru_cache(maxsize=None)
def _insert_unless_taken(table: Table, dialect: str):
    module = postgresql if dialect == "postgresql" else sqlite
    statement = _cacheable_insert(module)(table).returning(*table.primary_key.columns)
    statement._post_values_clause = _cacheable_do_nothing(module)()  # what on_conflict_do_nothing() sets
    return statement


@functools.lru_cache(maxsize=None)
def _cacheable_insert(module):
    # The dialect's Insert opts out of caching only for its ON CONFLICT clause, made cacheable below.
    return type(f"CacheableInsert_{module.__name__.rsplit('.', 1)[-1]}", (module.Insert,), {"inherit_cache": True})


@functools.lru_cache(maxsize=None)
def _cacheable_do_nothing(module):
    # No target, no WHERE: the clause renders the same every time, so its cache key is its class.
    return type(f"CacheableDoNothing_{module.__name__.rsplit('.', 1)[-1]}", (module.dml.OnConflictDoNothing,),
                {"_traverse_internals": [], "inherit_cache": True})
