"""Queries shared by the conversation, the payment pages and the staff commands."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, configure_mappers, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from store import driver
from store.db import connection_of
from store.models import Candidate, InboundKey, MatchAttempt, Order, Photo, RosterEntry, utcnow


@dataclass(frozen=True)
class CandidateRead:
    """candidate_for's read of a row, queued to go out with the statement before it (queue_candidate)."""
    openid: str
    lock: bool
    queued: driver.Queued


def queue_candidate(session: Session, claim_key: str, claim_owner: str, openid: str, lock: bool) -> CandidateRead:
    """candidate_for's read, queued right after the retry claim `claim_key` of `claim_owner` (bot/retries.py):
    on PostgreSQL the claim and the read make one round trip. The read finds the row only if the claim is that
    owner's: a claim another attempt holds means the message is not this one's to run, and its row lock (with
    lock) is not taken then, so an attempt never waits for a candidate while holding another's claim."""
    return CandidateRead(openid, lock, driver.queue(session, _CLAIMED_CANDIDATE_BY_OPENID[lock], {
        "openid": openid, "claim_key": claim_key, "claim_owner": claim_owner}))


def candidate_for(session: Session, openid: str, lock: bool = False, read: CandidateRead | None = None) -> Candidate:
    """The candidate row of a WeChat account, created on first contact. With lock, two messages of
    the same candidate are handled one after the other, each seeing what the other stored. `read`: the same
    read, queued with the claim this session's transaction holds (queue_candidate)."""
    candidate = _loaded_candidate(session, openid, lock, read)
    if candidate is None:
        candidate = Candidate(openid=openid, state="welcome")
        session.add(candidate)
        session.flush()
    return candidate


def snapshot_candidate(connection: Connection, openid: str) -> Candidate | None:
    """The candidate row of a WeChat account as a snapshot connection (store.db.snapshot) reads it, or None
    before their first message is stored: detached, its columns loaded, nothing loaded lazily."""
    rows = driver.execute_on(connection, _CANDIDATE_BY_OPENID[False], {"openid": openid})
    return _candidate_from(rows[0]) if rows else None


def _loaded_candidate(session: Session, openid: str, lock: bool, read: CandidateRead | None) -> Candidate | None:
    """Every text message loads its candidate: the row is read on the driver (store/driver.py) and made
    the session's persistent object as if the ORM had loaded it; one the session holds already is kept
    as it is, as an ORM query would. A locked row's changes are written in the commit's batch
    (driver.update_at_commit)."""
    if read is not None and (read.openid, read.lock) != (openid, lock):
        raise ValueError(f"the queued read is of {read.openid} (lock {read.lock}), not {openid} (lock {lock})")
    rows = read.queued.rows() if read is not None else driver.execute(session, _CANDIDATE_BY_OPENID[lock],
                                                                       {"openid": openid})
    if not rows:
        return None
    candidate = session.identity_map.get(identity_key(Candidate, rows[0][_CANDIDATE_ID]))
    if candidate is None:
        candidate = _candidate_from(rows[0])
        session.add(candidate)  # roster_entry loads lazily
    if lock:  # the row is this transaction's until it ends: its changes can go out with the COMMIT
        driver.update_at_commit(session, candidate)
    return candidate


def _candidate_from(row: tuple) -> Candidate:
    candidate = _CANDIDATE_CLASS.new_instance()  # filled in as ORM loading does, not attribute by attribute
    candidate.__dict__.update(zip(_CANDIDATE_KEYS, row))
    make_transient_to_detached(candidate)  # as freshly loaded: no changes to flush
    return candidate


_CANDIDATES = Candidate.__table__
# _candidate_from fills in instances as ORM loading does, which needs the mappers' attributes set up. Any ORM
# query would do that first; a fresh web worker whose first message is read ahead (帮助 on SQLite) makes none.
configure_mappers()
_CANDIDATE_CLASS = Candidate.__mapper__.class_manager
_CANDIDATE_KEYS = tuple(Candidate.__mapper__.get_property_by_column(column).key for column in _CANDIDATES.columns)
_CANDIDATE_ID = _CANDIDATE_KEYS.index("id")


def _candidate_by_openid(lock: bool) -> driver.DriverStatement:
    query = select(_CANDIDATES).where(_CANDIDATES.c.openid == bindparam("openid"))
    return driver.DriverStatement(query.with_for_update() if lock else query)


_CANDIDATE_BY_OPENID = {lock: _candidate_by_openid(lock) for lock in (False, True)}
_CLAIMS = InboundKey.__table__


def _claimed_candidate_by_openid(lock: bool) -> driver.DriverStatement:
    claimed = exists().where(_CLAIMS.c.key == bindparam("claim_key"), _CLAIMS.c.owner == bindparam("claim_owner"))
    query = select(_CANDIDATES).where(_CANDIDATES.c.openid == bindparam("openid"), claimed)
    return driver.DriverStatement(query.with_for_update(of=_CANDIDATES) if lock else query)


_CLAIMED_CANDIDATE_BY_OPENID = {lock: _claimed_candidate_by_openid(lock) for lock in (False, True)}


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


def queue_insert_unless_taken(session: Session, table: Table, values: dict) -> driver.Queued:
    """INSERT … ON CONFLICT DO NOTHING into a model's table, queued in the session's transaction
    (store/driver.queue): its rows, one when the row went in. `values` names every column the row gets
    (store/driver.py fills in no defaults)."""
    dialect = connection_of(session).dialect.name
    return driver.queue(session, _insert_unless_taken(table, dialect, tuple(values)), values)


@functools.lru_cache(maxsize=None)
def _insert_unless_taken(table: Table, dialect: str, columns: tuple[str, ...]) -> driver.DriverStatement:
    # SQLAlchemy's dialect inserts with ON CONFLICT have no cache key: built once per table, dialect and
    # columns here, and run on the driver.
    module = postgresql if dialect == "postgresql" else sqlite
    statement = _cacheable_insert(module)(table).returning(*table.primary_key.columns)
    statement._post_values_clause = _cacheable_do_nothing(module)()  # what on_conflict_do_nothing() sets
    return driver.DriverStatement(statement, columns)


@functools.lru_cache(maxsize=None)
def _cacheable_insert(module):
    # The dialect's Insert opts out of caching only for its ON CONFLICT clause, made cacheable below.
    return type(f"CacheableInsert_{module.__name__.rsplit('.', 1)[-1]}", (module.Insert,), {"inherit_cache": True})


@functools.lru_cache(maxsize=None)
def _cacheable_do_nothing(module):
    # No target, no WHERE: the clause renders the same every time, so its cache key is its class.
    return type(f"CacheableDoNothing_{module.__name__.rsplit('.', 1)[-1]}", (module.dml.OnConflictDoNothing,),
                {"_traverse_internals": [], "inherit_cache": True})
