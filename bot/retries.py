"""WeChat retries a message up to three times when it gets no answer in 5 s. Each message is taken in
once: a retry gets the first attempt's reply, or an empty answer while that attempt still runs."""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from store.db import Database
from store.models import InboundKey, utcnow

log = logging.getLogger(__name__)

KEEP_KEYS_FOR = timedelta(days=1)  # far beyond WeChat's retry horizon (about 15 s)
PURGE_EVERY = 500


@dataclass(frozen=True)
class Seen:
    """A retry of a message already taken in: its stored reply, or None while still running."""
    reply_xml: str | None


class RetryGuard:
    def __init__(self, db: Database):
        self.db = db
        self._counter = itertools.count(1)

    def claim(self, key: str) -> Seen | None:
        """None when this is the first attempt (now claimed); a Seen when it is a retry."""
        self._maybe_purge()
        try:
            with self.db.session() as session:
                session.add(InboundKey(key=key, done=False, created_at=utcnow()))
            return None
        except IntegrityError:
            with self.db.session() as session:
                row = session.get(InboundKey, key)
                return Seen(row.reply_xml if row is not None and row.done else None)

    def finish(self, key: str, reply_xml: str) -> None:
        with self.db.session() as session:
            row = session.get(InboundKey, key)
            row.reply_xml = reply_xml
            row.done = True

    def release(self, key: str) -> None:
        with self.db.session() as session:
            session.execute(delete(InboundKey).where(InboundKey.key == key, InboundKey.done.is_(False)))

    def _maybe_purge(self) -> None:
        if next(self._counter) % PURGE_EVERY:
            return
        with self.db.session() as session:
            session.execute(delete(InboundKey).where(InboundKey.created_at < utcnow() - KEEP_KEYS_FOR))
