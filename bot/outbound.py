"""Customer-service messages: recorded in the transcript, sent once the transaction has committed."""
from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from handlers.base import Reply, WeChatGateway
from store.db import Database
from store.models import Candidate, Message, utcnow

log = logging.getLogger(__name__)


class Outbound:
    def __init__(self, db: Database, wechat: WeChatGateway):
        self.db = db
        self.wechat = wechat

    def text(self, session: Session, openid: str, text: str, checks: dict | None = None) -> None:
        """Tells the candidate something outside a reply (payment done, review verdict…)."""
        state = session.query(Candidate.state).filter(Candidate.openid == openid).scalar()
        row = Message(openid=openid, direction="out", channel="custom", msg_type="text", content=text,
                      state_before=state, state_after=state, checks=checks, created_at=utcnow())
        session.add(row)
        self.deliver_after_commit(session, row, Reply(text))

    def deliver_after_commit(self, session: Session, row: Message, reply: Reply) -> None:
        session.flush()
        message_id, openid = row.id, row.openid
        self.db.after_commit(session, lambda: self._deliver(message_id, openid, reply))

    def _deliver(self, message_id: int, openid: str, reply: Reply) -> None:
        try:
            if reply.image_media_id:
                self.wechat.send_image(openid, reply.image_media_id)
            else:
                self.wechat.send_text(openid, reply.text)
        except Exception as exc:
            log.warning("customer-service message %s to %s not delivered: %s", message_id, openid, exc)
            with self.db.session() as session:
                session.get(Message, message_id).delivery_error = str(exc)[:500]
