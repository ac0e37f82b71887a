"""Quiet hours: a span of local time (possibly across midnight) when no reminder is sent."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def quiet_until(now: datetime, start: str, end: str, tz: ZoneInfo) -> datetime | None:
    """When the quiet hours around `now` end (aware, in `tz`), or None when `now` is not inside them."""
    local = now.astimezone(tz)
    begins, ends = time.fromisoformat(start), time.fromisoformat(end)
    if begins == ends:
        return None
    clock = local.time().replace(tzinfo=None)
    today_end = datetime.combine(local.date(), ends, tzinfo=tz)
    if begins < ends:  # e.g. 12:00–14:00, the same day
        return today_end if begins <= clock < ends else None
    if clock >= begins:  # e.g. 21:00–08:00, evening part: ends tomorrow morning
        return today_end + timedelta(days=1)
    if clock < ends:  # the morning part
        return today_end
    return None
