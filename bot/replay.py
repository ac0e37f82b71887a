"""Remembers the (timestamp, nonce) of each webhook request while its timestamp is still accepted.

A plain-mode `signature` covers the token, timestamp and nonce but not the body, so whoever captures
one query string could post any XML under it until the timestamp goes stale. A (timestamp, nonce)
is therefore taken by the first message that uses it; the same pair with a different message is a
forgery. The same message again is WeChat retrying (it may repeat the query string) and goes on to
the retry guard, which answers it from the first attempt.

Stores: Redis (SET NX EX) when `redis_url` is set, else the database; a Redis that fails falls back
to the database, so that protection and availability do not hang on Redis.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Protocol

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from store.db import Database
from store.models import ReplayNonce, utcnow

log = logging.getLogger(__name__)

PURGE_EVERY = 200  # inserts between two deletes of expired rows
REDIS_TIMEOUT_SECONDS = 0.5
FALLBACK_LOG_EVERY_SECONDS = 60.0


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

    def _maybe_purge(self, now: datetime) -> None:
        if next(self._counter) % PURGE_EVERY:
            return
        with self.db.session() as session:
            session.execute(delete(ReplayNonce).where(ReplayNonce.expires_at < now))


class RedisNonceStore:
    """SET NX EX under `prefix:nonce:<key>`; on any Redis error the database store answers instead."""

    def __init__(self, redis_client: Any, prefix: str, fallback: NonceStore,
                 clock: Callable[[], float] = time.monotonic):
        self.redis = redis_client
        self.prefix = prefix
        self.fallback = fallback
        self.clock = clock
        self._last_warning = float("-inf")

    def take(self, key: str, fingerprint: str, ttl_seconds: int) -> str:
        from redis.exceptions import RedisError

        name = f"{self.prefix}:nonce:{key}"
        try:
            if self.redis.set(name, fingerprint, nx=True, ex=max(1, ttl_seconds)):
                return fingerprint
            held = self.redis.get(name)
        except RedisError as exc:
            self._warn(exc)
            return self.fallback.take(key, fingerprint, ttl_seconds)
        if held is None:  # expired between the two calls: the timestamp is stale and refused anyway
            return fingerprint
        return held.decode("utf-8") if isinstance(held, bytes) else str(held)

    def _warn(self, exc: Exception) -> None:
        # Once a minute, not once a request: a dead Redis must not flood the log.
        now = self.clock()
        if now - self._last_warning >= FALLBACK_LOG_EVERY_SECONDS:
            self._last_warning = now
            log.warning("replay guard: Redis unavailable (%s); nonces go to the database", type(exc).__name__)


def build_nonce_store(settings, db: Database) -> NonceStore:
    """Redis when `redis_url` is set (keyed under the job queue's name, the app's Redis prefix), else the database."""
    database = DatabaseNonceStore(db)
    if not settings.redis_url:
        return database
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                  socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
    return RedisNonceStore(client, settings.jobs.queue_name, fallback=database)


def ttl_for(timestamp: str, max_skew_seconds: int, now: float) -> int:
    """Until the timestamp is refused as stale anyway (it is accepted up to max_skew either way)."""
    return max(1, int(int(timestamp) + max_skew_seconds - now) + 1)
