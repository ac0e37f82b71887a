"""Per-process limits: how often one problem is logged, and how many expensive calls run at once."""
from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class LogEvery:
    """Logs a recurring problem once per `seconds` for each key; the next line says how many were
    left out. A dependency that is down fails every attempt, and one line per attempt drowns the log."""

    def __init__(self, logger: logging.Logger, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.seconds = seconds
        self.clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, key: str, level: int, message: str, *args: Any) -> bool:
        """Logs unless `key` was logged less than `seconds` ago; True when it was logged."""
        with self._lock:
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.seconds:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return False
            self._last[key] = now
            skipped = self._skipped.pop(key, 0)
        if skipped:
            message += " (%d more like this since the last line)"
            args = (*args, skipped)
        self.logger.log(level, message, *args)
        return True

    def forget(self, key: str) -> None:
        """The problem is over: its next occurrence is logged at once."""
        with self._lock:
            self._last.pop(key, None)
            self._skipped.pop(key, None)


class RepeatFilter(logging.Filter):
    """A logging filter for code we do not own (huey's consumer): the same message template passes
    once per `seconds`, without its traceback after the first time."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = f"{record.name}:{record.msg}"
        with self._lock:
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.seconds:
                return False
            self._last[key] = now
        return True


def at_most(at_once: int, func: Callable[..., T]) -> Callable[..., T]:
    """`func`, run by at most `at_once` threads of this process at a time; the rest wait their turn."""
    slots = threading.BoundedSemaphore(max(1, at_once))

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> T:
        with slots:
            return func(*args, **kwargs)

    bounded.at_once = max(1, at_once)  # type: ignore[attr-defined]
    return bounded
