"""Remembers the (timestamp, nonce) of each webhook request while its timestamp is still accepted.

A plain-mode `signature` covers the token, timestamp and nonce but not the body, so whoever captures
one query string could post any XML under it until the timestamp goes stale. A (timestamp, nonce)
is therefore taken by the first message that uses it; the same pair with a different message is a
forgery. The same message again is WeChat retrying (it may repeat the query string) and goes on to
the retry guard, which answers it from the first attempt.

Stores: Redis (SET NX EX) when `redis_url` is set, else the database; while Redis is down the
database stands in, so that neither protection nor availability hangs on Redis.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from store import queries
from store.db import Database
from store.models import ReplayNonce, utcnow

PURGE_EVERY = 200  # inserts between two deletes of expired rows


class NonceStore(Protocol):
    def take(self, key: str, fingerprint: str, ttl_seconds: int) -> str:
        """Records fingerprint under key unless the key is taken; returns the fingerprint that holds it."""


def nonce_key(timestamp: str, nonce: str) -> str:
    return hashlib.sha256(f"{timestamp}\n{nonce}".encode("utf-8")).hexdigest()


def fingerprint(message_data: dict) -> str:
    """The message itself, whatever its encoding or XML layout: a retry of it has the same one."""
    canonical = json.dumps(message_data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class MemoryNonceStore:
    """One process only: for a WeChatProtocol used on its own (tools, tests of the protocol)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._seen: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, fingerprint: str, ttl_seconds: int) -> str:
        now = self.clock()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v[1] > now}
            held = self._seen.get(key)
            if held is not None and held[1] > now:
                return held[0]
            self._seen[key] = (fingerprint, now + ttl_seconds)
            return fingerprint


class DatabaseNonceStore:
    def __init__(self, db: Database):
        self.db = db
        self._counter = itertools.count(1)

    def take(self, key: str, fingerprint: str, ttl_seconds: int) -> str:
        now = utcnow()
        self._maybe_purge(now)
        try:
            with self.db.session() as session:
                session.add(ReplayNonce(key=key, fingerprint=fingerprint,
                                        expires_at=now + timedelta(seconds=ttl_seconds)))
            return fingerprint
        except IntegrityError:
            with self.db.session() as session:
                row = session.get(ReplayNonce, key)
                if row is None:  # purged in between: expired, and the timestamp check refuses it anyway
                    return fingerprint
                return row.fingerprint

    def queue_in(self, session, key: str, fingerprint: str, ttl_seconds: int) -> Callable[[], str]:
        """take() in the caller's transaction (the webhook's one transaction per message), which a
        forged pair rolls back: its INSERT queued there (store/driver.queue; on PostgreSQL it goes out with
        the message's claim), and what take() would return once it has. Call maybe_purge() first, outside it."""
        expires = utcnow() + timedelta(seconds=ttl_seconds)
        # As durable as the message's transaction: a read-only answer's does not wait for the disk
        # (driver.commit_relaxed), so a database crash in the next ~0.6 s may lose the pair, as Redis's
        # appendfsync everysec may lose the RedisNonceStore's last second. See docs/deploy.md, "PostgreSQL".
        inserted = queries.queue_insert_unless_taken(session, ReplayNonce.__table__,
                                                     dict(key=key, fingerprint=fingerprint, expires_at=expires))

        def holder() -> str:
            if inserted.rows():
                return fingerprint
            held = session.scalar(select(ReplayNonce.fingerprint).where(ReplayNonce.key == key))
            return fingerprint if held is None else held
        return holder

    def maybe_purge(self) -> None:
        self._maybe_purge(utcnow())

    def _maybe_purge(self, now: datetime) -> None:
        if next(self._counter) % PURGE_EVERY:
            return
        with self.db.session() as session:
            session.execute(delete(ReplayNonce).where(ReplayNonce.expires_at < now))


class RedisNonceStore:
    """SET NX EX under `prefix:nonce:<key>`. While Redis is down (the app's shared health.Outage) the
    database store answers instead; for a clock-skew window after that the database is asked too, since
    a pair taken there during the outage is unknown to Redis."""

    def __init__(self, redis_client: Any, prefix: str, fallback: NonceStore, outage: Any,
                 remember_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.redis = redis_client
        self.prefix = prefix
        self.fallback = fallback
        self.outage = outage
        self.remember_seconds = remember_seconds
        self.clock = clock
        self._fallback_until = float("-inf")

    def take(self, key: str, fingerprint: str, ttl_seconds: int) -> str:
        from redis.exceptions import RedisError

        if self.outage.is_down():
            return self._take_in_database(key, fingerprint, ttl_seconds)
        try:
            held = self._take_in_redis(key, fingerprint, ttl_seconds)
        except RedisError as error:
            self.outage.failed(error)
            return self._take_in_database(key, fingerprint, ttl_seconds)
        self.outage.ok()
        if held == fingerprint and self.clock() < self._fallback_until:
            return self.fallback.take(key, fingerprint, ttl_seconds)
        return held

    def _take_in_redis(self, key: str, fingerprint: str, ttl_seconds: int) -> str:
        name = f"{self.prefix}:nonce:{key}"
        # The command itself: redis-py's set() wrapper around it costs a sixth of the call (callgrind).
        if self.redis.execute_command("SET", name, fingerprint, "NX", "EX", max(1, ttl_seconds)):
            return fingerprint
        held = self.redis.get(name)
        if held is None:  # expired between the two calls: the timestamp is stale and refused anyway
            return fingerprint
        return held.decode("utf-8") if isinstance(held, bytes) else str(held)

    def _take_in_database(self, key: str, fingerprint: str, ttl_seconds: int) -> str:
        self._fallback_until = self.clock() + self.remember_seconds
        return self.fallback.take(key, fingerprint, ttl_seconds)


def build_nonce_store(settings, db: Database, redis: Any = None) -> NonceStore:
    """The database on PostgreSQL, or when no `redis_url` is set: the pair goes into the message's own
    transaction, on PostgreSQL in the same round trip as its claim. Redis (keyed under the job queue's name,
    the app's Redis prefix) for SQLite beside a Redis: there its SET stays outside the one writer lock; the
    database stands in while Redis is down. `redis`: the app's health.RedisLink.

    On PostgreSQL with Redis, measured in process (2 000 messages of 帮助, 1 Dec 2026): 0.90 ms of CPU a
    message with the pair in the database, though then it cost a round trip of its own, against 0.98 ms with
    Redis's SET; the Redis client's call is dearer than a statement more in a transaction."""
    database = DatabaseNonceStore(db)
    if not settings.redis_url or db.engine.dialect.name == "postgresql":
        return database
    if redis is None:
        from health import RedisLink

        redis = RedisLink(settings)
    # Pairs stay valid for up to twice the skew (a timestamp that far ahead of the clock, then behind).
    return RedisNonceStore(redis.client, settings.jobs.queue_name, fallback=database, outage=redis.outage,
                           remember_seconds=2 * settings.wechat.max_clock_skew_seconds)


def ttl_for(timestamp: str, max_skew_seconds: int, now: float) -> int:
    """Until the timestamp is refused as stale anyway (it is accepted up to max_skew either way)."""
    return max(1, int(int(timestamp) + max_skew_seconds - now) + 1)
