"""The WeChat access token, shared by every process (web workers, the huey consumer, CLI commands).

Each call to WeChat's /cgi-bin/token issues a new token and the previous one dies about five minutes
later, so processes that each fetch their own token invalidate one another. The token therefore lives
in one shared store (Redis when configured, else the database) and is replaced under a lock, checking
again once the lock is held whether another process has replaced it already.

Redis is a convenience here, not a requirement: while it cannot be reached the token is shared through
the database instead (`FallbackTokenStore`), so a Redis outage never stops a photo from being downloaded.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple, Protocol

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from store.db import Database
from store.models import SharedToken

logger = logging.getLogger(__name__)

# Replace a token this long before WeChat says it expires (wechatpy does the same).
REFRESH_MARGIN_SECONDS = 60
# How long a refresh may hold the lock; a holder that dies loses it after this (Redis, PostgreSQL).
LOCK_TIMEOUT_SECONDS = 30.0
# How long to wait for another process's refresh before giving up.
WAIT_TIMEOUT_SECONDS = 40.0


class Token(NamedTuple):
    value: str
    expires_at: float  # epoch seconds


Fetch = Callable[[], Token]


class TokenLockTimeout(RuntimeError):
    """Another process held the refresh lock for longer than we were willing to wait."""


class TokenStore(Protocol):
    def get(self) -> Token | None:
        """The current token, possibly stale; None when there is none yet."""

    def refresh(self, fetch: Fetch, rejected: str | None = None) -> Token:
        """Under the store's lock: the current token if it is fresh and not `rejected` (another process
        has refreshed it already), else the result of `fetch()`, which is stored."""


def is_fresh(token: Token | None, now: float | None = None) -> bool:
    if token is None:
        return False
    return token.expires_at - (time.time() if now is None else now) > REFRESH_MARGIN_SECONDS


def reusable(token: Token | None, rejected: str | None) -> bool:
    return is_fresh(token) and token.value != rejected


class MemoryTokenStore:
    """One process's token (the default when no shared store is given: scripts, tests)."""

    def __init__(self) -> None:
        self._token: Token | None = None
        self._lock = threading.Lock()

    def get(self) -> Token | None:
        return self._token

    def refresh(self, fetch: Fetch, rejected: str | None = None) -> Token:
        with self._lock:
            if reusable(self._token, rejected):
                return self._token
            self._token = fetch()
            return self._token


class DatabaseTokenStore:
    """A row of `shared_tokens`. PostgreSQL locks it with SELECT … FOR UPDATE; on SQLite every write
    transaction is already exclusive (BEGIN IMMEDIATE, see store/db.py), which serves as the lock."""

    def __init__(self, db: Database, name: str, lock_timeout: float = LOCK_TIMEOUT_SECONDS):
        self.db = db
        self.name = name
        self.lock_timeout = lock_timeout

    def get(self) -> Token | None:
        with self.db.read() as session:  # no writer lock: only a refresh writes
            return _row_token(session.get(SharedToken, self.name))

    def refresh(self, fetch: Fetch, rejected: str | None = None) -> Token:
        with self.db.session() as session:
            self._limit_waits(session)
            self._ensure_row(session)
            row = session.scalars(select(SharedToken).where(SharedToken.name == self.name)
                                  .with_for_update()).one()
            current = _row_token(row)
            if reusable(current, rejected):
                return current
            token = fetch()
            row.value = token.value
            row.expires_at = datetime.fromtimestamp(token.expires_at, timezone.utc)
            row.updated_at = datetime.now(timezone.utc)
            return token

    def _limit_waits(self, session: Session) -> None:
        if session.get_bind().dialect.name != "postgresql":
            return  # SQLite: busy_timeout bounds the wait; a dead holder's lock dies with it
        millis = int(self.lock_timeout * 1000)
        # Waiters give up after lock_timeout; a holder stuck outside SQL is cut off by the server.
        session.execute(text(f"SET LOCAL lock_timeout = {millis}"))
        session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {millis}"))

    def _ensure_row(self, session: Session) -> None:
        """Insert the (empty) row if it is missing, so there is something to lock; concurrent inserts
        of the same name wait for each other and all but the first do nothing."""
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise NotImplementedError(f"shared tokens are not supported on {dialect}")
        values = {"name": self.name, "updated_at": datetime.now(timezone.utc)}
        session.execute(insert(SharedToken).values(**values).on_conflict_do_nothing(index_elements=["name"]))


def _row_token(row: SharedToken | None) -> Token | None:
    if row is None or row.value is None or row.expires_at is None:
        return None
    return Token(row.value, row.expires_at.timestamp())


class RedisTokenStore:
    """A JSON value under `name`, replaced under a redis-py Lock (SET NX PX) named `name:lock`."""

    def __init__(self, redis_client: Any, name: str, lock_timeout: float = LOCK_TIMEOUT_SECONDS,
                 wait_timeout: float = WAIT_TIMEOUT_SECONDS):
        self.redis = redis_client
        self.name = name
        self.lock_timeout = lock_timeout
        self.wait_timeout = wait_timeout

    def get(self) -> Token | None:
        raw = self.redis.get(self.name)
        if raw is None:
            return None
        data = json.loads(raw)
        return Token(data["value"], float(data["expires_at"]))

    def refresh(self, fetch: Fetch, rejected: str | None = None) -> Token:
        from redis.exceptions import LockError

        lock = self.redis.lock(f"{self.name}:lock", timeout=self.lock_timeout,
                               blocking_timeout=self.wait_timeout, thread_local=False)
        if not lock.acquire():
            raise TokenLockTimeout(f"{self.name}: another process held the refresh lock "
                                   f"for more than {self.wait_timeout} s")
        try:
            current = self.get()
            if reusable(current, rejected):
                return current
            token = fetch()
            self._put(token)
            return token
        finally:
            try:
                lock.release()
            except LockError:  # held past lock_timeout: it has lapsed, possibly been taken by another
                logger.warning("%s: the refresh lock lapsed before it was released", self.name)

    def _put(self, token: Token) -> None:
        ttl_ms = max(1, int((token.expires_at - time.time()) * 1000))
        payload = json.dumps({"value": token.value, "expires_at": token.expires_at})
        self.redis.set(self.name, payload, px=ttl_ms)


class FallbackTokenStore:
    """Redis first; the database while Redis is down (any Redis error, a timeout included). Once Redis
    answers again its token may be one the database path has since retired: WeChat then rejects it
    (40001) and the client replaces it once, as with any token another process retired."""

    def __init__(self, primary: RedisTokenStore, fallback: DatabaseTokenStore, outage: Any):
        self.primary = primary
        self.fallback = fallback
        self.outage = outage

    def get(self) -> Token | None:
        return self._either(lambda store: store.get())

    def refresh(self, fetch: Fetch, rejected: str | None = None) -> Token:
        fetch_once = _FetchOnce(fetch)  # a token fetched before Redis failed is stored, not fetched again
        return self._either(lambda store: store.refresh(fetch_once, rejected))

    def _either(self, use: Callable[[TokenStore], Any]) -> Any:
        from redis.exceptions import RedisError

        if not self.outage.is_down():
            try:
                result = use(self.primary)
            except RedisError as error:
                self.outage.failed(error)
            else:
                self.outage.ok()
                return result
        return use(self.fallback)


class _FetchOnce:
    def __init__(self, fetch: Fetch):
        self.fetch = fetch
        self.token: Token | None = None

    def __call__(self) -> Token:
        if self.token is None:
            self.token = self.fetch()
        return self.token


def build_token_store(settings: Any, db: Database, redis: Any = None) -> TokenStore:
    """Redis when `redis_url` is set (keyed under the job queue's name, the app's Redis prefix), with
    the database standing in while Redis is down; else the database. `redis`: the app's
    health.RedisLink, shared with the job queue (one is made when it is not given)."""
    name = f"wechat-access-token:{settings.wechat.appid}"
    # A refresh holds the lock for one token request; give it ample room beyond the HTTP timeout.
    lock_timeout = max(LOCK_TIMEOUT_SECONDS, 3 * settings.wechat.http_timeout_seconds)
    database = DatabaseTokenStore(db, name, lock_timeout=lock_timeout)
    if not settings.redis_url:
        return database
    if redis is None:
        from health import RedisLink

        redis = RedisLink(settings)
    primary = RedisTokenStore(redis.client, f"{settings.jobs.queue_name}:{name}", lock_timeout=lock_timeout,
                              wait_timeout=lock_timeout + 10)
    return FallbackTokenStore(primary, database, redis.outage)
