"""Outside dependencies and `/healthz`.

Redis is reached only through `redis_client` (short timeouts, no retries) and watched by an `Outage`:
after a failure it is left alone for a while, and the failure is logged once per interval instead of
once per attempt. `/healthz` probes the database, Redis and the job queue and reports the outbox; it
answers 503 when one of them is down. Its body carries counts and ages only, never personal data.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Flask, current_app, jsonify
from sqlalchemy import func, select

from pacing import LogEvery

log = logging.getLogger(__name__)


class Outage:
    """Whether one dependency is believed down: `failed()` after an error, `ok()` after a success.
    While down it is skipped (`is_down()`) for `retry_after` seconds, then tried again."""

    def __init__(self, name: str, retry_after: float, log_every: float, consequence: str = "",
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.retry_after = retry_after
        self.consequence = consequence
        self.clock = clock
        self._log = LogEvery(log, log_every, clock)
        self._down_until = 0.0
        self._down = False
        self._lock = threading.Lock()

    def is_down(self) -> bool:
        return self._down and self.clock() < self._down_until

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self._down = True
            self._down_until = self.clock() + self.retry_after
        self._log.log(self.name, logging.ERROR, "%s is unreachable (%s: %s)%s", self.name, type(error).__name__,
                      str(error)[:200], f"; {self.consequence}" if self.consequence else "")

    def ok(self) -> None:
        if not self._down:
            return
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            self._log.forget(self.name)
            log.info("%s answers again", self.name)


def redis_client(settings: Any, extra_socket_timeout: float = 0.0):
    """A Redis client whose every call gives up after the configured timeouts, without retrying.
    `extra_socket_timeout` is for blocking reads (huey's BRPOP waits that long for a task)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(settings.redis_url,
                                socket_timeout=settings.redis.socket_timeout_seconds + extra_socket_timeout,
                                socket_connect_timeout=settings.redis.connect_timeout_seconds,
                                retry=Retry(NoBackoff(), 0))


class RedisLink:
    """This process's Redis (when `redis_url` is set): one client with short timeouts, and one
    outage record that every user of Redis reports to and consults."""

    def __init__(self, settings: Any):
        self.client = redis_client(settings)
        self.outage = Outage("Redis", settings.redis.retry_after_seconds, settings.server.outage_log_every_seconds,
                             "meanwhile the WeChat access token is shared through the database and "
                             "notifications wait for the outbox sweep")


# -- /healthz ----------------------------------------------------------------------------------------

def register(app: Flask) -> None:
    settings = app.extensions["collector"].settings
    app.extensions["healthz_log"] = LogEvery(log, settings.server.outage_log_every_seconds)
    app.add_url_rule("/healthz", "healthz", healthz)


def healthz():
    report = check(current_app.extensions["collector"], current_app.extensions["healthz_log"])
    return jsonify(report), 200 if report["status"] == "ok" else 503


def check(collector, failures: LogEvery) -> dict:
    """{"status": "ok" | "down", "down": [names], "checks": {name: {...}}}."""
    checks = {"database": _probe("database", _database, collector, failures)}
    if collector.settings.redis_url:
        checks["redis"] = _probe("redis", _redis, collector, None)  # its outage record logs it
    checks["queue"] = (_probe("queue", _queue, collector, failures) if checks.get("redis", {}).get("ok", True)
                       else {"ok": False, "error": "redis is down"})
    down = sorted(name for name, result in checks.items() if not result["ok"])
    return {"status": "down" if down else "ok", "down": down, "checks": checks}


def _probe(name: str, probe: Callable[[Any], dict], collector, failures: LogEvery | None) -> dict:
    started = time.perf_counter()
    try:
        result = {"ok": True, **probe(collector)}
    except Exception as error:  # noqa: BLE001 - any failure means this dependency is down
        result = {"ok": False, "error": type(error).__name__}
        if failures is not None:
            failures.log(name, logging.ERROR, "healthz: the %s is down (%s: %s)", name, type(error).__name__,
                         str(error)[:200])
    else:
        if failures is not None:
            failures.forget(name)
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _database(collector) -> dict:
    from store.models import Notification

    with collector.db.read() as session:
        pending, oldest = session.execute(select(func.count(), func.min(Notification.created_at))
                                          .where(Notification.status == "pending")).one()
    age = None
    if oldest is not None:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=timezone.utc)
        age = round((datetime.now(timezone.utc) - oldest).total_seconds())
    return {"pending_notifications": pending, "oldest_pending_notification_seconds": age}


def _redis(collector) -> dict:
    link = collector.jobs.redis
    try:
        link.client.ping()
    except Exception as error:
        link.outage.failed(error)
        raise
    link.outage.ok()
    return {}


def _queue(collector) -> dict:
    return {"depth": collector.jobs.huey.pending_count()}
