"""What each event tells the candidate: the WeChat text, the template-message fields and the SMS
template with its parameters. The sentences themselves live in messages.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import messages
from handlers.texts import shorten, yuan
from settings import Settings

# Tencent Cloud SMS caps each template variable's length; longer reasons are cut.
SMS_PARAM_MAX_CHARS = 20


@dataclass(frozen=True)
class Notice:
    """One thing to tell one candidate. `key` names the event (one notice per event, however often
    the event is reported); the outbox writes one row per channel under it."""
    kind: str  # payment_done | approved | rejected | review_delay | refunded | reply
    openid: str
    key: str
    text: str
    image_media_id: str | None = None
    # Filled for the events the notice promises by SMS and template message too; empty for replies.
    template_fields: dict[str, str] = field(default_factory=dict)
    sms_params: tuple[str, ...] | None = None

    @property
    def by_sms(self) -> bool:
        return self.sms_params is not None


def reply(openid: str, key: str, text: str | None, image_media_id: str | None = None) -> Notice:
    """A conversation reply that could not go back in the webhook's answer (a deferred verdict)."""
    return Notice(kind="reply", openid=openid, key=key, text=text or "", image_media_id=image_media_id)


def payment_done(settings: Settings, openid: str, out_trade_no: str, amount_fen: int, name: str) -> Notice:
    fee, hours = yuan(amount_fen), str(settings.collection.review_hours)
    return Notice(
        kind="payment_done", openid=openid, key=f"payment_done:{out_trade_no}",
        text=messages.PAYMENT_DONE.format(fee=fee, review_hours=hours),
        template_fields=_fields(settings, messages.TEMPLATE_PAYMENT_DONE, name=name,
                                amount=messages.TEMPLATE_AMOUNT.format(fee=fee)),
        sms_params=(fee, hours),
    )


def approved(settings: Settings, openid: str, photo_id: int, name: str) -> Notice:
    return Notice(
        kind="approved", openid=openid, key=f"approved:{photo_id}", text=messages.APPROVED,
        template_fields=_fields(settings, messages.TEMPLATE_APPROVED, name=name), sms_params=(_cut(name),),
    )


def rejected(settings: Settings, openid: str, photo_id: int, name: str, reason: str) -> Notice:
    return Notice(
        kind="rejected", openid=openid, key=f"rejected:{photo_id}", text=messages.REJECTED.format(reason=reason),
        template_fields=_fields(settings, messages.TEMPLATE_REJECTED, name=name, reason=reason),
        sms_params=(_cut(name), _cut(reason)),
    )


def sent_to_review(settings: Settings, openid: str, photo_id: int, paid: bool) -> Notice:
    """Staff put a photo the checker refused in front of a reviewer (WeChat only: the verdict follows)."""
    hours = str(settings.collection.review_hours)
    text = (messages.SENT_TO_REVIEW.format(review_hours=hours) if paid else
            messages.SENT_TO_REVIEW_PAY_FIRST.format(fee=yuan(settings.collection.fee_fen), review_hours=hours))
    return Notice(kind="reply", openid=openid, key=f"sent_to_review:{photo_id}", text=text)


def review_delay(settings: Settings, openid: str, photo_id: int | None, name: str, since: datetime) -> Notice:
    """One apology per photo under review (per wait, should a review have no photo row)."""
    hours = str(settings.collection.review_hours)
    waited_for = photo_id if photo_id is not None else f"{openid}@{since.isoformat()}"
    return Notice(
        kind="review_delay", openid=openid, key=f"review_delay:{waited_for}",
        text=messages.REVIEW_DELAYED.format(review_hours=hours),
        template_fields=_fields(settings, messages.TEMPLATE_REVIEW_DELAYED, name=name),
        sms_params=(hours,),
    )


def refunded(settings: Settings, openid: str, out_refund_no: str, amount_fen: int) -> Notice:
    """A double payment went back (WeChat only: WeChat Pay itself also tells the payer)."""
    return Notice(kind="refunded", openid=openid, key=f"refunded:{out_refund_no}",
                  text=messages.REFUNDED.format(fee=yuan(amount_fen)))


def _fields(settings: Settings, texts: dict[str, str], **values: str) -> dict[str, str]:
    """What a template message can show (TEMPLATE_VALUES); config maps them onto the template's fields."""
    fields = {key: text.format(review_hours=settings.collection.review_hours) for key, text in texts.items()}
    fields["time"] = datetime.now(settings.window.tz).strftime("%Y-%m-%d %H:%M")
    fields.update(values)
    return fields


def _cut(value: str) -> str:
    return shorten(value, SMS_PARAM_MAX_CHARS)
