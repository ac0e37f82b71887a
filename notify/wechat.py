"""The WeChat channel: a customer-service message while the candidate's 48-hour window is open
(WeChat refuses them afterwards with 45015), a template message otherwise."""
from __future__ import annotations

from datetime import timedelta

import requests
from sqlalchemy import func, select
from wechatpy.exceptions import WeChatClientException

from handlers.base import WeChatGateway
from handlers.texts import shorten
from notify.errors import DeliveryError
from notify.outbox import Parcel
from settings import NotificationSettings
from store.db import Database
from store.models import Message, utcnow

OUTSIDE_WINDOW = {45015, 45047}  # response out of time limit; too many messages without a reply
PERMANENT = {
    40003: "不是本公众号的用户（openid 无效）",
    43004: "用户已取消关注",
    43019: "用户已将公众号拉黑",
    40037: "模板消息 template_id 无效",
    47003: "模板消息参数不正确",
}


class WeChatChannel:
    def __init__(self, db: Database, wechat: WeChatGateway, settings: NotificationSettings):
        self.db = db
        self.wechat = wechat
        self.settings = settings

    def deliver(self, parcel: Parcel) -> str:
        why_not_custom = "超过48小时没有收到考生的消息"
        if self._inside_window(parcel.openid):
            try:
                self._custom(parcel)
                return "custom"
            except WeChatClientException as exc:
                if exc.errcode not in OUTSIDE_WINDOW:
                    raise _delivery_error(exc) from exc
                why_not_custom = f"客服消息被拒绝（{exc.errcode}: {exc.errmsg}）"
        return self._template(parcel, why_not_custom)

    def _inside_window(self, openid: str) -> bool:
        window = timedelta(hours=self.settings.customer_service_window_hours)
        with self.db.session() as session:
            last_heard = session.scalar(select(func.max(Message.created_at))
                                        .where(Message.openid == openid, Message.direction == "in"))
        if last_heard is None:
            return False
        if last_heard.tzinfo is None:  # SQLite's func.max() bypasses the column type
            last_heard = last_heard.replace(tzinfo=utcnow().tzinfo)
        return utcnow() - last_heard < window

    def _custom(self, parcel: Parcel) -> None:
        try:
            if parcel.payload.get("image_media_id"):
                self.wechat.send_image(parcel.openid, parcel.payload["image_media_id"])
            else:
                self.wechat.send_text(parcel.openid, parcel.payload["text"])
        except requests.RequestException as exc:
            raise DeliveryError(f"network: {exc}") from exc

    def _template(self, parcel: Parcel, why_not_custom: str) -> str:
        fields = parcel.payload.get("template_fields")
        template_id = getattr(self.settings, f"wechat_template_{parcel.kind}", "") if fields else ""
        if not template_id:
            raise DeliveryError(f"{why_not_custom}，且“{parcel.kind}”没有可用的模板消息", permanent=True)
        mapping = self.settings.template_fields(parcel.kind)
        data = {key: {"value": fit(key, fields.get(value, ""))} for key, value in mapping.items()}
        try:
            self.wechat.send_template(parcel.openid, template_id, data, client_msg_id=parcel.provider_key)
        except WeChatClientException as exc:
            raise _delivery_error(exc) from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"network: {exc}") from exc
        return "template"


# Category templates cap their values by field type (thing1 ≤ 20 characters…); longer ones are refused.
FIELD_MAX_CHARS = {"thing": 20, "phrase": 5, "name": 10, "character_string": 32, "symbol": 5, "letter": 32,
                   "number": 32, "phone_number": 17, "car_number": 8}


def fit(key: str, value: str) -> str:
    limit = FIELD_MAX_CHARS.get(key.rstrip("0123456789"))
    return value if limit is None else shorten(value, limit)


def _delivery_error(exc: WeChatClientException) -> DeliveryError:
    reason = PERMANENT.get(exc.errcode)
    if reason:
        return DeliveryError(f"{exc.errcode}: {reason}", permanent=True)
    return DeliveryError(f"{exc.errcode}: {exc.errmsg}")
