"""The collection window: is collection open at a given moment?"""
from __future__ import annotations

from datetime import datetime
from enum import Enum


class WindowStatus(Enum):
    NOT_YET_OPEN = "not_yet_open"
    OPEN = "open"
    CLOSED = "closed"


def window_status(now: datetime, start: datetime, end: datetime) -> WindowStatus:
    """All three are timezone-aware; the end is inclusive."""
    if now < start:
        return WindowStatus.NOT_YET_OPEN
    if now > end:
        return WindowStatus.CLOSED
    return WindowStatus.OPEN
