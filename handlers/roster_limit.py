"""The global limit on roster look-ups: many accounts together may not probe the roster faster than
[collection] allows. Counted in the database (match_attempts), so every server process shares it, and
alerted in the log once per interval for all processes together (alert_marks)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.base import Context
from store import queries
from store.models import AlertMark

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    name: str
    length: timedelta
    limit: int


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
        if claim_alert(ctx.session, f"roster-lookups-{window.name}", ctx.now, window.length):
            log.warning("ALERT roster look-ups over the global limit: %d in the last %s (limit %d); "
                        "refusing look-ups: many accounts may be probing ID numbers", count, window.name,
                        window.limit)
        minutes = _minutes_until(oldest + window.length, ctx.now) if oldest else 1
        wait = max(wait or 0, minutes)
    return wait


def claim_alert(session: Session, name: str, now: datetime, quiet_for: timedelta) -> bool:
    """True for the one caller, in any process, that should log the alert `name` now; the others stay
    quiet until quiet_for has passed."""
    mark = session.get(AlertMark, name)  # no lock: while it is quiet, refused look-ups never wait here
    if mark is None:
        try:
            with session.begin_nested():
                session.add(AlertMark(name=name, quiet_until=now + quiet_for))
        except IntegrityError:  # another process logged it this very moment
            return False
        return True
    if mark.quiet_until > now:
        return False
    return session.execute(
        update(AlertMark).where(AlertMark.name == name, AlertMark.quiet_until <= now)
        .values(quiet_until=now + quiet_for).execution_options(synchronize_session=False)
    ).rowcount == 1


def _minutes_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds() / 60))
