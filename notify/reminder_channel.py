"""The outbox channel of reminder campaigns. Each recipient goes by the first channel WeChat's rules allow:
a customer-service message while the candidate's 48-hour window is open and its quota lasts (45015 outside
it, 45047 over it: next channel); else the office's template message; else SMS when a phone is known;
else it is unreachable, with the reasons. Every provider call first takes a token from the channel's
shared bucket, so all workers together keep to the configured rate."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import requests
from sqlalchemy import func, select
from wechatpy.exceptions import WeChatClientException

from notify.errors import DeliveryError
from notify.outbox import Parcel
from notify.throttle import Throttle
from notify.sms import send_once
from notify.wechat import OUTSIDE_WINDOW, PERMANENT, WeChatChannel, _delivery_error, fit
from rules.quiet import quiet_until
from settings import Settings
from store.db import Database
from store.models import Message, Notification, ReminderCampaign, utcnow

CHANNEL = "reminder"
# A paused campaign's row that a sweep finds is looked at again this much later.
_PAUSED_RECHECK = timedelta(seconds=30)


class ReminderChannel:
    def __init__(self, db: Database, settings: Settings, wechat: WeChatChannel, sms_provider, throttle: Throttle):
        self.db = db
        self.settings = settings
        self.policy = settings.reminders
        self.wechat = wechat
        self.sms = sms_provider
        self.throttle = throttle

    def deliver(self, parcel: Parcel) -> str:
        self._check_campaign(parcel.payload["campaign_id"])
        reasons: list[str] = []
        if parcel.openid:
            via = self._by_wechat(parcel, reasons)
            if via:
                return via
        else:
            reasons.append("没有关注公众号")
        if parcel.phone:
            self.throttle.wait("sms", self.policy.sms_per_second)
            send_once(self.sms, parcel, "reminder", list(parcel.payload["sms_params"]))
            return "sms"
        reasons.append("没有手机号")
        raise DeliveryError("无法送达：" + "；".join(reasons), permanent=True)

    def _check_campaign(self, campaign_id: int) -> None:
        """A cancelled campaign sends nothing more; a paused one, or quiet hours, make the row wait."""
        with self.db.read() as session:
            status = session.scalar(select(ReminderCampaign.status).where(ReminderCampaign.id == campaign_id))
        if status in (None, "cancelled"):
            raise DeliveryError("活动已取消", permanent=True)
        now = datetime.now(timezone.utc)
        if status == "paused":
            raise DeliveryError("活动已暂停", retry_at=now + _PAUSED_RECHECK)
        until = quiet_until(now, self.policy.quiet_start, self.policy.quiet_end, self.settings.window.tz)
        if until is not None:
            raise DeliveryError("静默时段", retry_at=until)

    def _window(self, openid: str) -> str | None:
        """None while a customer-service message may go; else why not (window closed, quota used up:
        WeChat answers 5 messages per candidate message, [support] replies_per_window)."""
        hours = timedelta(hours=self.settings.notifications.customer_service_window_hours)
        with self.db.read() as session:
            last_heard = session.scalar(select(func.max(Message.created_at))
                                        .where(Message.openid == openid, Message.direction == "in"))
            if last_heard is not None and last_heard.tzinfo is None:  # SQLite's max() bypasses the column type
                last_heard = last_heard.replace(tzinfo=timezone.utc)
            if last_heard is None or utcnow() - last_heard >= hours:
                return "超过48小时没有收到考生的消息"
            used = session.scalar(select(func.count()).select_from(Notification)
                                  .where(Notification.openid == openid, Notification.delivered_via == "custom",
                                         Notification.sent_at >= last_heard))
        if used >= self.settings.support.replies_per_window:
            return "本次互动的客服消息条数已用完"
        return None

    def _by_wechat(self, parcel: Parcel, reasons: list[str]) -> str | None:
        why_not = self._window(parcel.openid)
        if why_not is None:
            self.throttle.wait("wechat", self.policy.wechat_per_second)
            try:
                self.wechat.wechat.send_text(parcel.openid, parcel.payload["text"])
                return "custom"
            except WeChatClientException as exc:
                if exc.errcode not in OUTSIDE_WINDOW:
                    raise _delivery_error(exc) from exc
                reasons.append(f"客服消息被拒绝（{exc.errcode}）")
            except requests.RequestException as exc:
                raise DeliveryError(f"network: {exc}") from exc
        else:
            reasons.append(why_not)
        if not self.policy.template_id:
            reasons.append("没有配置提醒模板消息")
            return None
        self.throttle.wait("wechat", self.policy.wechat_per_second)
        fields = parcel.payload.get("template_fields", {})
        data = {key: {"value": fit(key, fields.get(value, ""))} for key, value in self.policy.template_fields.items()}
        try:
            self.wechat.wechat.send_template(parcel.openid, self.policy.template_id, data,
                                             client_msg_id=parcel.provider_key)
            return "template"
        except WeChatClientException as exc:
            if exc.errcode not in PERMANENT:
                raise _delivery_error(exc) from exc
            reasons.append(f"模板消息被拒绝（{exc.errcode}）")
        except requests.RequestException as exc:
            raise DeliveryError(f"network: {exc}") from exc
        return None

