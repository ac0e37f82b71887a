"""Reminder campaigns: who still needs a reminder (segments, counted live with set-based SQL), planning
the recipients of a campaign in one INSERT … SELECT, the campaign's states, and the worker that drives it
through the outbox.

States: draft → scheduled (a set time) → sending ⇄ paused → done; any but done → cancelled. Recipients
are planned once, when sending starts (a conditional UPDATE decides who plans, so a double click or
two workers plan once). Each recipient becomes one outbox row whose dedupe key names the campaign and
the graduate, so nobody gets a campaign twice; a recipient counts as sent only when the outbox row is
sent (the checkpoint is the row, never a fetched batch). One worker drives a campaign at a time (a lease
it renews); a worker that dies leaves its lease and its claimed rows to run out, and the next one carries on.
"""
from __future__ import annotations

import csv
import io
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable, Iterator

from sqlalchemy import String, and_, case, cast, exists, func, insert, literal, not_, or_, select, update
from sqlalchemy.orm import Session, aliased

import messages
from notify.reminder_channel import CHANNEL
from rules.identity import clean_id_number, id_number_problem, mask_id_number, mask_name
from rules.phone import mask_phone, parse_mobile
from rules.quiet import quiet_until
from settings import Settings
from staff.audit import record
from staff.review import StaffActionError
from store.models import (Candidate, Message, Notification, Photo, ReminderCampaign, ReminderRecipient, RosterEntry,
                          UtcDateTime, utcnow)

log = logging.getLogger(__name__)

SEGMENTS = {
    "never_started": "名单中但从未开始（未绑定微信）",
    "not_identified": "已关注但未填写身份",
    "stuck": "在某一步停留超过N小时",
    "photo_failed": "照片未通过且未重新上传",
    "unpaid": "照片已通过但未缴费",
    "rejected": "审核未通过且未重新上传",
    "not_approved": "所有尚未审核通过的考生",
    "id_list": "上传的身份证号名单",
}
CHANNELS = {"custom": "客服消息", "template": "模板消息", "sms": "短信", "unreachable": "无法送达"}
REASONS = {"no_account_no_phone": "未关注公众号且没有手机号",
           "window_closed_no_phone": "超过48小时未互动、没有模板消息且没有手机号"}
STATUSES = {"draft": "草稿", "scheduled": "定时", "sending": "发送中", "paused": "已暂停", "done": "已完成",
            "cancelled": "已取消"}
PLACEHOLDERS = ("姓名", "截止时间", "学历层次", "办公电话")
MAX_TEXT_CHARS = 600
MAX_ID_NUMBERS = 100_000
# Candidates past these states need no reminder (under review, or done).
FINISHED_STATES = ("under_review", "approved")


class ReminderError(StaffActionError):
    """The campaign cannot be created or changed as asked; nothing was changed."""


# --- segments ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Audience:
    segment: str
    level: str | None = None
    stuck_hours: int | None = None
    id_numbers: tuple[str, ...] = ()


def _roster_based(where) -> select:
    """Graduates on the roster, with the account bound to them (if any)."""
    c = aliased(Candidate)
    return (select(RosterEntry.id.label("roster_entry_id"), RosterEntry.bound_openid.label("openid"),
                   func.coalesce(RosterEntry.phone, c.phone).label("phone"), RosterEntry.name.label("name"),
                   RosterEntry.level.label("level"),
                   (literal("r") + cast(RosterEntry.id, String)).label("graduate_key"))
            .select_from(RosterEntry).outerjoin(c, c.openid == RosterEntry.bound_openid).where(where(c)))


def _candidate_based(where) -> select:
    """Accounts that wrote to the bot, with the roster entry they matched (if any)."""
    r = aliased(RosterEntry)
    return (select(r.id.label("roster_entry_id"), Candidate.openid.label("openid"),
                   func.coalesce(r.phone, Candidate.phone).label("phone"),
                   func.coalesce(r.name, Candidate.name).label("name"),
                   func.coalesce(r.level, Candidate.level).label("level"),
                   (literal("o") + Candidate.openid).label("graduate_key"))
            .select_from(Candidate).outerjoin(r, r.id == Candidate.roster_entry_id).where(where(Candidate)))


def _latest_photo_status(candidate):
    return (select(Photo.status).where(Photo.candidate_id == candidate.id).order_by(Photo.id.desc()).limit(1)
            .correlate(candidate).scalar_subquery())


def segment_query(audience: Audience, settings: Settings, now: datetime) -> select:
    segment = audience.segment
    if segment == "never_started":
        query = _roster_based(lambda c: RosterEntry.bound_openid.is_(None))
    elif segment == "not_approved":
        query = _roster_based(lambda c: not_(exists().where(Photo.roster_entry_id == RosterEntry.id,
                                                           Photo.status == "approved")))
    elif segment == "id_list":
        query = _roster_based(lambda c: RosterEntry.id_number.in_(list(audience.id_numbers)))
    elif segment == "not_identified":
        query = _candidate_based(lambda c: and_(c.roster_entry_id.is_(None), c.state.not_in(FINISHED_STATES)))
    elif segment == "stuck":
        hours = audience.stuck_hours or settings.reminders.stuck_hours
        since = literal(now - timedelta(hours=hours), UtcDateTime())
        query = _candidate_based(lambda c: and_(c.state.not_in(FINISHED_STATES), c.updated_at < since))
    elif segment == "photo_failed":
        query = _candidate_based(lambda c: and_(c.state == "photo", _latest_photo_status(c) == "checked"))
    elif segment == "unpaid":
        query = _candidate_based(lambda c: c.state == "payment")
    elif segment == "rejected":
        query = _candidate_based(lambda c: and_(c.state == "photo", _latest_photo_status(c) == "rejected"))
    else:
        raise ReminderError(f"没有这个人群：{segment}（可选：{'、'.join(SEGMENTS)}）")
    base = query.subquery("audience")
    if audience.level:
        return select(base).where(base.c.level == audience.level)
    return select(base)


def _with_channels(audience_query: select, settings: Settings, now: datetime):
    """The audience with the channel WeChat's rules give each one now, and why the unreachable are."""
    base = audience_query.subquery("reached")
    window = timedelta(hours=settings.notifications.customer_service_window_hours)
    last_heard = (select(func.max(Message.created_at))
                  .where(Message.openid == base.c.openid, Message.direction == "in").scalar_subquery())
    # Customer-service messages already sent since the candidate last wrote: WeChat takes only a few.
    quota_used = (select(func.count()).select_from(Notification)
                  .where(Notification.openid == base.c.openid, Notification.delivered_via == "custom",
                         Notification.sent_at >= last_heard).scalar_subquery())
    template = literal(bool(settings.reminders.template_id))
    channel = case(
        (and_(base.c.openid.is_not(None), last_heard >= literal(now - window, UtcDateTime()),
              quota_used < settings.support.replies_per_window), "custom"),
        (and_(base.c.openid.is_not(None), template), "template"),
        (base.c.phone.is_not(None), "sms"),
        else_="unreachable")
    reason = case((channel != "unreachable", None),
                  (base.c.openid.is_(None), "no_account_no_phone"),
                  else_="window_closed_no_phone")
    return base, channel.label("channel"), reason.label("reason")


@dataclass
class Counts:
    total: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    unreachable_by_reason: dict[str, int] = field(default_factory=dict)


def count(session: Session, settings: Settings, audience: Audience, now: datetime | None = None) -> Counts:
    """How many the audience holds now, per channel, and why the unreachable are (one GROUP BY)."""
    now = now or utcnow()
    base, channel, reason = _with_channels(segment_query(audience, settings, now), settings, now)
    inner = select(channel, reason).select_from(base).subquery()
    counts = Counts(by_channel={name: 0 for name in CHANNELS})
    for name, why, number in session.execute(select(inner.c.channel, inner.c.reason, func.count())
                                             .group_by(inner.c.channel, inner.c.reason)):
        counts.total += number
        counts.by_channel[name] = counts.by_channel.get(name, 0) + number
        if why:
            counts.unreachable_by_reason[why] = counts.unreachable_by_reason.get(why, 0) + number
    return counts


def segment_counts(session: Session, settings: Settings, level: str | None = None,
                   stuck_hours: int | None = None) -> dict[str, Counts]:
    return {name: count(session, settings, Audience(name, level, stuck_hours))
            for name in SEGMENTS if name != "id_list"}


# --- text --------------------------------------------------------------------------------------------

def check_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ReminderError("提醒内容不能为空。")
    if len(text) > MAX_TEXT_CHARS:
        raise ReminderError(f"提醒内容最多{MAX_TEXT_CHARS}字，现在{len(text)}字。")
    unknown = [name for name in re.findall(r"\{([^{}]*)\}", text) if name not in PLACEHOLDERS]
    if unknown:
        raise ReminderError(f"不认识的占位符：{'、'.join('{' + n + '}' for n in unknown)}；"
                            f"可用：{'、'.join('{' + n + '}' for n in PLACEHOLDERS)}")
    return text


def deadline_text(settings: Settings) -> str:
    end = settings.window.aware_end()
    return f"{end.month}月{end.day}日{end:%H:%M}"


def render(text: str, settings: Settings, name: str | None, level: str | None = None) -> str:
    values = {"姓名": name or messages.REMINDER_NO_NAME, "截止时间": deadline_text(settings),
              "学历层次": level or "", "办公电话": settings.office.phone}
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


@dataclass(frozen=True)
class Preview:
    counts: Counts
    name: str | None  # masked
    text: str | None  # with the masked name


def preview(session: Session, settings: Settings, audience: Audience, text: str) -> Preview:
    """Per-channel counts and the text as one real recipient of the audience would read it, their name masked."""
    text = check_text(text)
    now = utcnow()
    counts = count(session, settings, audience, now)
    sample = session.execute(segment_query(audience, settings, now).limit(1)).first()
    if sample is None:
        return Preview(counts, None, None)
    shown_name = mask_name(sample.name) if sample.name else None  # a screen shows names masked, the text too
    return Preview(counts, shown_name, render(text, settings, shown_name, sample.level))


# --- the campaign's states -----------------------------------------------------------------------------

def parse_id_numbers(raw: str | Iterable[str], today: date) -> tuple[str, ...]:
    """ID numbers from a pasted or uploaded list (any separators); ReminderError names the bad ones."""
    text = raw if isinstance(raw, str) else "\n".join(raw)
    tokens = [clean_id_number(token) for token in re.split(r"[\s,;，；、]+", text) if token.strip()]
    bad = [token for token in tokens if id_number_problem(token, today)]
    if bad:
        raise ReminderError(f"{len(bad)} 个身份证号无效，例如第一个：{mask_id_number(bad[0])}；请改正后再上传。")
    if not tokens:
        raise ReminderError("名单里没有身份证号。")
    if len(tokens) > MAX_ID_NUMBERS:
        raise ReminderError(f"名单最多 {MAX_ID_NUMBERS} 个身份证号。")
    return tuple(dict.fromkeys(tokens))


def create(session: Session, settings: Settings, audience: Audience, text: str, by: str,
           send_at: datetime | None = None, ip: str | None = None) -> ReminderCampaign:
    if audience.segment not in SEGMENTS:
        raise ReminderError(f"没有这个人群：{audience.segment}（可选：{'、'.join(SEGMENTS)}）")
    levels = [level.name for level in settings.collection.levels]
    if audience.level and audience.level not in levels:
        raise ReminderError(f"学历层次应为：{'、'.join(levels)}")
    if audience.segment == "id_list" and not audience.id_numbers:
        raise ReminderError("“上传的身份证号名单”需要一份身份证号名单。")
    if audience.stuck_hours is not None and audience.stuck_hours < 1:
        raise ReminderError("停留小时数至少为1。")
    text = check_text(text)
    if send_at is not None and send_at <= utcnow():
        raise ReminderError("定时发送的时间已经过去。")
    campaign = ReminderCampaign(segment=audience.segment, level=audience.level or None,
                                stuck_hours=audience.stuck_hours, id_numbers=list(audience.id_numbers) or None,
                                text=text, status="draft", send_at=send_at, planned_count=0, created_by=by,
                                created_at=utcnow())
    session.add(campaign)
    session.flush()
    record(session, by, "reminders.create", f"campaign {campaign.id}",
           f"segment {audience.segment}, level {audience.level or '-'}", ip=ip)
    return campaign


def audience_of(campaign: ReminderCampaign) -> Audience:
    return Audience(campaign.segment, campaign.level, campaign.stuck_hours, tuple(campaign.id_numbers or ()))


def get(session: Session, campaign_id: int) -> ReminderCampaign:
    campaign = session.get(ReminderCampaign, campaign_id)
    if campaign is None:
        raise ReminderError(f"没有编号为 {campaign_id} 的提醒活动。")
    return campaign


def send(session: Session, settings: Settings, campaign_id: int, by: str, at: datetime | None = None,
         ip: str | None = None) -> ReminderCampaign:
    """Sends now (plans the recipients at once) or at a set time. Again on a campaign already sending or
    scheduled, it changes nothing (a double click)."""
    campaign = get(session, campaign_id)
    if campaign.status in ("sending", "scheduled", "done"):
        return campaign
    if campaign.status != "draft":
        raise ReminderError(f"活动{STATUSES[campaign.status]}，不能发送。")
    at = at or campaign.send_at
    if at is not None and at > utcnow():
        _move(session, campaign, ("draft",), "scheduled", send_at=at)
        record(session, by, "reminders.schedule", f"campaign {campaign.id}", at.isoformat(), ip=ip)
        return campaign
    start(session, settings, campaign)
    record(session, by, "reminders.send", f"campaign {campaign.id}", f"{campaign.planned_count} planned", ip=ip)
    return campaign


def start(session: Session, settings: Settings, campaign: ReminderCampaign) -> bool:
    """draft/scheduled → sending, and the recipients planned, in the caller's transaction. False when
    another request or worker started it first."""
    if not _move(session, campaign, ("draft", "scheduled"), "sending", planned_at=utcnow()):
        return False
    campaign.planned_count = plan(session, settings, campaign)
    return True


def _move(session: Session, campaign: ReminderCampaign, from_states: tuple[str, ...], to: str, **values) -> bool:
    """A conditional UPDATE: only one of two concurrent requests moves the campaign."""
    moved = session.execute(update(ReminderCampaign)
                            .where(ReminderCampaign.id == campaign.id, ReminderCampaign.status.in_(from_states))
                            .values(status=to, **values).execution_options(synchronize_session=False)).rowcount
    session.refresh(campaign)
    return moved == 1


def plan(session: Session, settings: Settings, campaign: ReminderCampaign) -> int:
    """Every recipient as one row, in one INSERT … SELECT; the unreachable are planned as skipped."""
    now = utcnow()
    base, channel, reason = _with_channels(segment_query(audience_of(campaign), settings, now), settings, now)
    rows = select(literal(campaign.id), base.c.graduate_key, base.c.roster_entry_id, base.c.openid, base.c.phone,
                  base.c.name, channel, case((channel == "unreachable", "skipped"), else_="planned"), reason)
    session.execute(insert(ReminderRecipient).from_select(
        ["campaign_id", "graduate_key", "roster_entry_id", "openid", "phone", "name", "planned_channel", "status",
         "reason"], rows))
    return session.scalar(select(func.count()).where(ReminderRecipient.campaign_id == campaign.id)) or 0


def pause(session: Session, campaign_id: int, by: str, ip: str | None = None) -> ReminderCampaign:
    campaign = get(session, campaign_id)
    if not _move(session, campaign, ("sending", "scheduled"), "paused"):
        raise ReminderError(f"活动{STATUSES[campaign.status]}，不能暂停。")
    record(session, by, "reminders.pause", f"campaign {campaign.id}", ip=ip)
    return campaign


def resume(session: Session, campaign_id: int, by: str, ip: str | None = None) -> ReminderCampaign:
    campaign = get(session, campaign_id)
    target = "sending" if campaign.planned_at is not None else "scheduled"
    if not _move(session, campaign, ("paused",), target):
        raise ReminderError(f"活动{STATUSES[campaign.status]}，不能继续。")
    record(session, by, "reminders.resume", f"campaign {campaign.id}", ip=ip)
    return campaign


def cancel(session: Session, campaign_id: int, by: str, ip: str | None = None) -> ReminderCampaign:
    campaign = get(session, campaign_id)
    if not _move(session, campaign, ("draft", "scheduled", "sending", "paused"), "cancelled", finished_at=utcnow()):
        raise ReminderError(f"活动{STATUSES[campaign.status]}，不能取消。")
    record(session, by, "reminders.cancel", f"campaign {campaign.id}", ip=ip)
    return campaign


def list_campaigns(session: Session, limit: int = 50) -> list[ReminderCampaign]:
    return list(session.scalars(select(ReminderCampaign).order_by(ReminderCampaign.id.desc()).limit(limit)))


# --- progress ------------------------------------------------------------------------------------------

@dataclass
class Progress:
    campaign_id: int
    status: str
    planned: int = 0  # recipients to send to (skipped not included)
    sent: int = 0
    failed: int = 0
    waiting: int = 0
    sent_by_channel: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    rate_per_second: float = 0.0
    seconds_left: float | None = None
    quiet_until: datetime | None = None
    send_at: datetime | None = None

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    @property
    def percent(self) -> int:
        if self.status == "done" or not self.planned:
            return 100 if self.status == "done" else 0
        return int(100 * (self.sent + self.failed) / self.planned)


RATE_WINDOW_SECONDS = 60


def progress(session: Session, settings: Settings, campaign_id: int, now: datetime | None = None) -> Progress:
    """Counts of the campaign's recipients by outcome (a GROUP BY over recipients and their outbox rows)."""
    now = now or utcnow()
    campaign = get(session, campaign_id)
    result = Progress(campaign.id, campaign.status, send_at=campaign.send_at)
    rows = session.execute(
        select(ReminderRecipient.status, ReminderRecipient.reason, Notification.status, Notification.delivered_via,
               func.count())
        .select_from(ReminderRecipient).outerjoin(Notification, Notification.id == ReminderRecipient.notification_id)
        .where(ReminderRecipient.campaign_id == campaign.id)
        .group_by(ReminderRecipient.status, ReminderRecipient.reason, Notification.status,
                  Notification.delivered_via))
    for status, reason, sent_status, via, number in rows:
        if status == "skipped":
            result.skipped_by_reason[reason] = result.skipped_by_reason.get(reason, 0) + number
            continue
        result.planned += number
        if sent_status == "sent":
            result.sent += number
            result.sent_by_channel[via] = result.sent_by_channel.get(via, 0) + number
        elif sent_status == "dead":
            result.failed += number
        else:
            result.waiting += number
    if result.failed:
        for error, number in session.execute(
                select(Notification.last_error, func.count()).select_from(ReminderRecipient)
                .join(Notification, Notification.id == ReminderRecipient.notification_id)
                .where(ReminderRecipient.campaign_id == campaign.id, Notification.status == "dead")
                .group_by(Notification.last_error).order_by(func.count().desc()).limit(5)):
            result.failed_by_reason[error or "-"] = number
    recent = session.scalar(
        select(func.count()).select_from(ReminderRecipient)
        .join(Notification, Notification.id == ReminderRecipient.notification_id)
        .where(ReminderRecipient.campaign_id == campaign.id, Notification.status == "sent",
               Notification.sent_at >= literal(now - timedelta(seconds=RATE_WINDOW_SECONDS), UtcDateTime()))) or 0
    result.rate_per_second = recent / RATE_WINDOW_SECONDS
    if result.waiting and campaign.status == "sending":
        rate = result.rate_per_second or min(settings.reminders.wechat_per_second, settings.reminders.sms_per_second)
        result.seconds_left = result.waiting / rate
    if campaign.status == "sending":
        result.quiet_until = quiet_until(now, settings.reminders.quiet_start, settings.reminders.quiet_end,
                                         settings.window.tz)
    return result


# --- the delivery report ---------------------------------------------------------------------------------

REPORT_HEADER = ["姓名", "身份证号", "手机号", "计划渠道", "实际渠道", "状态", "原因", "发送时间"]


def report_rows(session: Session, settings: Settings, campaign_id: int, unmasked: bool = False,
                chunk: int = 2000) -> Iterator[list[str]]:
    get(session, campaign_id)
    tz = settings.window.tz
    query = (select(ReminderRecipient, RosterEntry.id_number, Notification.status, Notification.delivered_via,
                    Notification.last_error, Notification.sent_at)
             .outerjoin(RosterEntry, RosterEntry.id == ReminderRecipient.roster_entry_id)
             .outerjoin(Notification, Notification.id == ReminderRecipient.notification_id)
             .where(ReminderRecipient.campaign_id == campaign_id).order_by(ReminderRecipient.id))
    for recipient, id_number, status, via, error, sent_at in session.execute(query.execution_options(yield_per=chunk)):
        phone = parse_mobile(recipient.phone or "") or recipient.phone or ""
        if recipient.status == "skipped":
            state, why = "未发送", REASONS.get(recipient.reason, recipient.reason or "")
        else:
            state = {"sent": "已发送", "dead": "失败"}.get(status, "等待发送")
            why = error if status == "dead" else ""
        yield [recipient.name or "" if unmasked else mask_name(recipient.name) if recipient.name else "",
               (id_number or "") if unmasked else mask_id_number(id_number) if id_number else "",
               phone if unmasked else mask_phone(phone) if phone else "",
               CHANNELS.get(recipient.planned_channel, recipient.planned_channel),
               CHANNELS.get(via, via or ""), state, why or "",
               sent_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if sent_at else ""]


def report_csv(session: Session, settings: Settings, campaign_id: int, by: str, reason: str | None = None,
               ip: str | None = None) -> Iterator[str]:
    """The delivery report as CSV text chunks: masked, or in full when a reason is given (audited)."""
    unmasked = bool(reason and reason.strip())
    record(session, by, "reminders.report_unmasked" if unmasked else "reminders.report", f"campaign {campaign_id}",
           reason=reason.strip() if unmasked else None, ip=ip)
    rows = list(report_rows(session, settings, campaign_id, unmasked))

    def chunks() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(REPORT_HEADER)
        for index, row in enumerate(rows, start=1):
            writer.writerow([_defused(cell) for cell in row])
            if index % 2000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
    return chunks()


def _defused(cell: str) -> str:
    """A spreadsheet must not run a cell as a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@") else cell


# --- the worker ------------------------------------------------------------------------------------------

@dataclass
class Driven:
    sent: int = 0
    failed: int = 0
    outcome: str = ""


def drive(collector, campaign_id: int, max_seconds: float | None = None) -> Driven:
    """Sends the campaign's recipients one by one while this worker holds the campaign; stops when it is
    done, paused, cancelled, in quiet hours, or after max_seconds."""
    driver = secrets.token_hex(8)
    driven = Driven()
    if not _acquire(collector, campaign_id, driver):
        driven.outcome = "busy"
        return driven
    deadline = time.monotonic() + max_seconds if max_seconds else None
    look_for_stuck_at = 0.0
    try:
        while True:
            driven.outcome = _ready(collector, campaign_id, driver)
            if driven.outcome != "sending":
                return driven
            if deadline is not None and time.monotonic() > deadline:
                driven.outcome = "slice"
                return driven
            notification_id = None
            if time.monotonic() >= look_for_stuck_at:
                notification_id = _stuck_row(collector, campaign_id)
                if notification_id is None:  # none now; a row left by a dying worker shows up after its lease
                    look_for_stuck_at = time.monotonic() + STUCK_LOOK_EVERY_SECONDS
            notification_id = notification_id or _claim_next(collector, campaign_id)
            if notification_id is None:
                driven.outcome = _finish_if_done(collector, campaign_id)
                return driven
            outcome = collector.outbox.deliver(notification_id)
            driven.sent += outcome == "sent"
            driven.failed += outcome == "dead"
            if outcome == "deferred":
                driven.outcome = "deferred"
                return driven
    finally:
        _release(collector, campaign_id, driver)


# How often a driver looks for rows of its campaign that a dead worker left (they come back after a lease).
STUCK_LOOK_EVERY_SECONDS = 1.0


def _acquire(collector, campaign_id: int, driver: str) -> bool:
    """Takes the campaign's lease; a lease about to run out (its worker died) is waited for once."""
    for attempt in range(2):
        now = utcnow()
        with collector.db.session() as session:
            taken = session.execute(
                update(ReminderCampaign)
                .where(ReminderCampaign.id == campaign_id, ReminderCampaign.status.in_(("sending", "scheduled")),
                       or_(ReminderCampaign.lease_until.is_(None), ReminderCampaign.lease_until < now))
                .values(driver=driver, lease_until=now + _lease(collector))
                .execution_options(synchronize_session=False)).rowcount
            held_until = None if taken else session.scalar(
                select(ReminderCampaign.lease_until).where(ReminderCampaign.id == campaign_id,
                                                           ReminderCampaign.status.in_(("sending", "scheduled"))))
        if taken:
            return True
        if attempt or held_until is None or held_until - now > _lease(collector) + timedelta(seconds=1):
            return False
        time.sleep(max(0.0, (held_until - now).total_seconds()) + 0.1)
    return False


def _lease(collector) -> timedelta:
    return timedelta(seconds=collector.settings.reminders.lease_seconds)


def _ready(collector, campaign_id: int, driver: str) -> str:
    """Renews the lease and says whether to send now: sending, or why not."""
    settings = collector.settings
    now = utcnow()
    with collector.db.session() as session:
        campaign = session.get(ReminderCampaign, campaign_id)
        if campaign is None or campaign.driver != driver:
            return "lost"
        if campaign.lease_until is None or campaign.lease_until - now < _lease(collector) / 2:
            campaign.lease_until = now + _lease(collector)  # renewed at half time: one write, not one per message
        if campaign.status == "scheduled":
            if campaign.send_at is not None and campaign.send_at > now:
                return "scheduled"
            if start(session, settings, campaign):
                log.info("reminder campaign %s started: %s recipients", campaign.id, campaign.planned_count)
        if campaign.status != "sending":
            return campaign.status
    if quiet_until(now, settings.reminders.quiet_start, settings.reminders.quiet_end, settings.window.tz):
        return "quiet"
    return "sending"


def _stuck_row(collector, campaign_id: int) -> int | None:
    """A row of this campaign a dead worker claimed (its lease ran out) or a crash left unsent."""
    now = utcnow()
    with collector.db.session() as session:
        return session.scalar(
            select(Notification.id).join(ReminderRecipient, ReminderRecipient.notification_id == Notification.id)
            .where(ReminderRecipient.campaign_id == campaign_id, ReminderRecipient.status == "queued",
                   or_(and_(Notification.status == "pending", Notification.next_attempt_at <= now),
                       and_(Notification.status == "sending", Notification.lease_until < now)))
            .order_by(Notification.id).limit(1))


def _claim_next(collector, campaign_id: int) -> int | None:
    """The next planned recipient becomes one outbox row, in one transaction; None when none is left."""
    settings = collector.settings
    for _ in range(20):  # another worker may take the same recipient first: try the next one
        with collector.db.session() as session:
            recipient = session.scalar(
                select(ReminderRecipient)
                .where(ReminderRecipient.campaign_id == campaign_id, ReminderRecipient.status == "planned")
                .order_by(ReminderRecipient.id).limit(1))
            if recipient is None:
                return None
            claimed = session.execute(
                update(ReminderRecipient)
                .where(ReminderRecipient.id == recipient.id, ReminderRecipient.status == "planned")
                .values(status="queued").execution_options(synchronize_session=False)).rowcount
            if claimed != 1:
                continue
            campaign = session.get(ReminderCampaign, campaign_id)
            row = _notification(session, settings, campaign, recipient)
            session.add(row)
            session.flush()
            recipient.notification_id = row.id
            return row.id
    return None


def _notification(session: Session, settings: Settings, campaign: ReminderCampaign,
                  recipient: ReminderRecipient) -> Notification:
    level = session.scalar(select(RosterEntry.level).where(RosterEntry.id == recipient.roster_entry_id)) \
        if recipient.roster_entry_id else None
    text = render(campaign.text, settings, recipient.name, level)
    name = recipient.name or messages.REMINDER_NO_NAME
    payload = {"campaign_id": campaign.id, "text": text,
               "template_fields": {"title": messages.REMINDER_TEMPLATE_TITLE, "name": name, "text": text,
                                   "deadline": deadline_text(settings), "next": messages.REMINDER_TEMPLATE_NEXT},
               "sms_params": [name, deadline_text(settings)]}
    now = utcnow()
    return Notification(dedupe_key=f"reminder:{campaign.id}:{recipient.graduate_key}", kind="reminder",
                        channel=CHANNEL, openid=recipient.openid or "", phone=recipient.phone, payload=payload,
                        status="pending", attempts=0, next_attempt_at=now, created_at=now)


def _finish_if_done(collector, campaign_id: int) -> str:
    """Done once nothing is planned and every row is sent or dead; rows waiting for a retry are left to
    the outbox sweep, and the periodic job looks again."""
    with collector.db.session() as session:
        open_rows = session.scalar(
            select(func.count()).select_from(ReminderRecipient)
            .outerjoin(Notification, Notification.id == ReminderRecipient.notification_id)
            .where(ReminderRecipient.campaign_id == campaign_id,
                   or_(ReminderRecipient.status == "planned",
                       and_(ReminderRecipient.status == "queued", Notification.status.not_in(("sent", "dead"))))))
        if open_rows:
            return "waiting"
        session.execute(update(ReminderCampaign)
                        .where(ReminderCampaign.id == campaign_id, ReminderCampaign.status == "sending")
                        .values(status="done", finished_at=utcnow()).execution_options(synchronize_session=False))
    return "done"


def _release(collector, campaign_id: int, driver: str) -> None:
    with collector.db.session() as session:
        session.execute(update(ReminderCampaign)
                        .where(ReminderCampaign.id == campaign_id, ReminderCampaign.driver == driver)
                        .values(driver=None, lease_until=None).execution_options(synchronize_session=False))


def active_campaigns(collector) -> list[int]:
    """Campaigns a worker should drive now: sending, or scheduled and due."""
    now = utcnow()
    with collector.db.read() as session:
        return list(session.scalars(
            select(ReminderCampaign.id).where(or_(
                ReminderCampaign.status == "sending",
                and_(ReminderCampaign.status == "scheduled", ReminderCampaign.send_at <= now)))
            .order_by(ReminderCampaign.id)))


def kick(collector) -> dict[str, int]:
    """The periodic job (and a consumer starting): queue a driver for every campaign that should run.
    A campaign whose worker is alive keeps it; one whose worker died is taken over."""
    ids = active_campaigns(collector)
    for campaign_id in ids:
        collector.jobs.enqueue("remind", campaign_id)
    return {"campaigns": len(ids)}


def register_jobs(collector) -> None:
    from functools import partial

    collector.jobs.task("remind", partial(drive, collector))
    collector.jobs.every("reminders", collector.settings.jobs.sweep_every_minutes, partial(kick, collector),
                         "drive reminder campaigns that are due (after quiet hours, a set time, a dead worker)")
    huey = collector.jobs.huey
    if not huey.immediate:
        huey.on_startup(name="reminders")(lambda: kick(collector))
