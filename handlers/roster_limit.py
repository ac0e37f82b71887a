"""The global limit on roster look-ups: many accounts together may not probe the roster faster than
[collection] allows. Counted in the database (match_attempts), so every server process shares it."""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from handlers.base import Context
from store import queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    name: str
    length: timedelta
    limit: int


class _Alerts:
    """One warning per window length and process, however many look-ups are refused meanwhile."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._refused: dict[str, int] = {}

    def refused(self, window: Window, count: int) -> None:
        with self._lock:
            self._refused[window.name] = self._refused.get(window.name, 0) + 1
            last = self._last.get(window.name)
            if last is not None and time.monotonic() - last < window.length.total_seconds():
                return
            self._last[window.name] = time.monotonic()
            refused, self._refused[window.name] = self._refused[window.name], 0
        log.warning("ALERT roster look-ups over the global limit: %d in the last %s (limit %d); "
                    "refused %d look-up(s) since the last alert: many accounts may be probing ID numbers",
                    count, window.name, window.limit, refused)


alerts = _Alerts()


def windows(ctx: Context) -> list[Window]:
    collection = ctx.settings.collection
    return [w for w in (Window("minute", timedelta(minutes=1), collection.max_roster_lookups_per_minute),
                        Window("hour", timedelta(hours=1), collection.max_roster_lookups_per_hour)) if w.limit > 0]


def minutes_to_wait(ctx: Context) -> int | None:
    """None when a look-up may run now; else whole minutes until the busiest window has room again."""
    wait = None
    for window in windows(ctx):
        count, oldest = queries.match_attempts_since(ctx.session, ctx.now - window.length)
        if count < window.limit:
            continue
        alerts.refused(window, count)
        minutes = _minutes_until(oldest + window.length, ctx.now) if oldest else 1
        wait = max(wait or 0, minutes)
    return wait


def _minutes_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds() / 60))
