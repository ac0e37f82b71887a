"""Token buckets shared by every worker: at most `rate` messages per second per channel, whichever process
sends them. In Redis when it is configured (one Lua script, the server's clock), otherwise in the database
(a compare-and-set on the bucket's row, so two processes never spend the same token)."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from store.db import Database
from store.models import ThrottleBucket

log = logging.getLogger(__name__)

# Refill the bucket for the time elapsed, take one token if there is one; else say how long to wait.
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""


class Throttle:
    """`wait(name, rate)` returns once a token of bucket `name` was taken (sleeping as long as needed)."""

    def __init__(self, db: Database, redis_client=None, prefix: str = "photo-collector-throttle",
                 sleep: Callable[[float], None] = time.sleep):
        self.db = db
        self.redis = redis_client
        self.prefix = prefix
        self.sleep = sleep
        self._script = redis_client.register_script(_TAKE) if redis_client is not None else None

    def wait(self, name: str, rate: float) -> float:
        """Blocks until a token is taken; returns the seconds spent waiting."""
        waited = 0.0
        while True:
            pause = self.try_take(name, rate)
            if pause <= 0:
                return waited
            self.sleep(pause)
            waited += pause

    def try_take(self, name: str, rate: float) -> float:
        """Takes a token and returns 0, or returns how many seconds until one is due."""
        capacity = max(1.0, rate)  # at most one second's worth in a burst
        if self._script is not None:
            try:
                return float(self._script(keys=[f"{self.prefix}:{name}"], args=[rate, capacity]))
            except Exception as exc:  # noqa: BLE001 - Redis down: the database bucket still limits
                log.warning("throttle %s: Redis failed (%s), using the database", name, type(exc).__name__)
        return self._take_from_database(name, rate, capacity)

    def _take_from_database(self, name: str, rate: float, capacity: float) -> float:
        while True:
            now = datetime.now(timezone.utc)
            with self.db.session() as session:
                row = session.execute(select(ThrottleBucket.tokens, ThrottleBucket.updated_at)
                                      .where(ThrottleBucket.name == name)).first()
                if row is None:
                    if self._create(session, name, capacity - 1, now):
                        return 0.0
                    continue
                tokens = min(capacity, row.tokens + max(0.0, (now - row.updated_at).total_seconds()) * rate)
                if tokens < 1:
                    return (1 - tokens) / rate
                swapped = session.execute(
                    update(ThrottleBucket)
                    .where(ThrottleBucket.name == name, ThrottleBucket.updated_at == row.updated_at)
                    .values(tokens=tokens - 1, updated_at=now)
                    .execution_options(synchronize_session=False)).rowcount
            if swapped == 1:
                return 0.0
            # another worker took a token between our read and our write: read again

    @staticmethod
    def _create(session, name: str, tokens: float, now: datetime) -> bool:
        try:
            with session.begin_nested():
                session.add(ThrottleBucket(name=name, tokens=tokens, updated_at=now))
        except IntegrityError:
            return False
        return True
