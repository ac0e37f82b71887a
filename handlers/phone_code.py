"""Step 5, with [sms] verify_phone: a 6-digit code by SMS to the number typed, so that the verdict SMS go
to a number the candidate holds. Sent through the configured SMS provider (notify/sms.py); a limited number
of sends an hour per account (the first and the resends), valid for minutes, a limited number of tries.
Only an HMAC of the code is stored."""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from sqlalchemy import func, select, update

import messages
from handlers.base import Context, Outcome, Reply, State
from notify.sms import build_sms_provider
from rules.credentials import scrub_credentials
from rules.phone import mask_phone
from rules.text import compact
from store.models import PhoneCode

log = logging.getLogger(__name__)

RESEND = {"重发", "重新发送", "重发验证码", "再发一次", "没收到", "没有收到"}
_CODE = re.compile(r"[0-9]{6}")


def answer(ctx: Context, text: str) -> Outcome | str | None:
    """A resend or a code typed: its outcome, or the verified phone number; None for anything else."""
    said = compact(text)
    if said in RESEND:
        pending = _latest(ctx)
        if pending is None:
            return Outcome(Reply(messages.CODE_NONE), State.PHONE)
        return send(ctx, pending.phone)
    if _CODE.fullmatch(said):
        return verify(ctx, said)
    return None


def send(ctx: Context, phone: str) -> Outcome:
    sms = ctx.settings.sms
    since = ctx.now - timedelta(hours=1)
    sent, oldest = ctx.session.execute(
        select(func.count(), func.min(PhoneCode.created_at))
        .where(PhoneCode.openid == ctx.candidate.openid, PhoneCode.created_at >= since)).one()
    if sent >= sms.codes_per_hour:
        minutes = max(1, math.ceil((oldest + timedelta(hours=1) - ctx.now).total_seconds() / 60))
        return Outcome(Reply(messages.CODE_TOO_MANY.format(minutes=minutes)), State.PHONE,
                       checks={"phone_code": "too_many"})
    _retire(ctx)  # a resend replaces the code sent before
    code = f"{secrets.randbelow(10 ** 6):06d}"
    ctx.session.add(PhoneCode(openid=ctx.candidate.openid, phone=phone, code_hash=_digest(ctx, phone, code),
                              tries=0, created_at=ctx.now,
                              expires_at=ctx.now + timedelta(minutes=sms.code_valid_minutes)))
    failed = _deliver(ctx, phone, code)
    if failed:
        return Outcome(Reply(messages.CODE_SEND_FAILED), State.PHONE, checks={"phone_code": "send_failed"})
    text = messages.CODE_SENT.format(phone=mask_phone(phone), minutes=sms.code_valid_minutes)
    return Outcome(Reply(text), State.PHONE, checks={"phone_code": "sent"})


def verify(ctx: Context, typed: str) -> Outcome | str:
    pending = _latest(ctx)
    if pending is None:
        return Outcome(Reply(messages.CODE_NONE), State.PHONE)
    if pending.expires_at <= ctx.now:
        return Outcome(Reply(messages.CODE_EXPIRED), State.PHONE, checks={"phone_code": "expired"})
    if pending.tries >= ctx.settings.sms.code_tries:
        return Outcome(Reply(messages.CODE_LOCKED), State.PHONE, checks={"phone_code": "locked"})
    if not hmac.compare_digest(pending.code_hash, _digest(ctx, pending.phone, typed)):
        pending.tries += 1
        left = ctx.settings.sms.code_tries - pending.tries
        text = messages.CODE_WRONG.format(left=left) if left > 0 else messages.CODE_LOCKED
        return Outcome(Reply(text), State.PHONE, checks={"phone_code": "wrong"})
    pending.used_at = ctx.now
    return pending.phone


def _latest(ctx: Context) -> PhoneCode | None:
    return ctx.session.scalars(
        select(PhoneCode).where(PhoneCode.openid == ctx.candidate.openid, PhoneCode.used_at.is_(None))
        .order_by(PhoneCode.id.desc()).limit(1)).first()


def _retire(ctx: Context) -> None:
    ctx.session.execute(update(PhoneCode).where(PhoneCode.openid == ctx.candidate.openid,
                                                PhoneCode.used_at.is_(None)).values(used_at=ctx.now)
                        .execution_options(synchronize_session=False))


def _digest(ctx: Context, phone: str, code: str) -> str:
    key = ctx.settings.secret_key.encode()
    return hmac.new(key, f"{ctx.candidate.openid}|{phone}|{code}".encode(), hashlib.sha256).hexdigest()


def _deliver(ctx: Context, phone: str, code: str) -> bool:
    """Sends the code, without holding the candidate's row lock; True when sending failed. A send still
    running when the reply is due goes on in the background (the reply says the code is on its way)."""
    provider = build_sms_provider(ctx.settings)
    remaining = ctx.settings.wechat.reply_budget_seconds - (time.monotonic() - ctx.started) - 0.5
    ctx.release()
    job = ctx.services.submit(provider.send, phone, "phone_code", [code])
    try:
        job.result(timeout=max(0.0, remaining))
    except FutureTimeout:
        log.warning("verification SMS to %s still being sent when the reply was due", mask_phone(phone))
    except Exception as exc:  # noqa: BLE001 - the candidate is told and can resend
        log.warning("verification SMS to %s failed: %s", mask_phone(phone), scrub_credentials(str(exc)))
        ctx.reload()
        return True
    ctx.reload()
    return False
