"""The support desk: find a candidate, read their whole story, take the conversation over from the
bot, reply as customer-service messages through the outbox, act on the candidate, hand back.
Shared by the console (/staff/support) and `flask support …`.

Every function works inside the caller's session (one transaction) and raises StaffActionError,
before changing anything, when the action does not apply. Changes are audited.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

import messages
from handlers import texts
from handlers.base import State
from notify.notices import Notice
from notify.outbox import Outbox
from rules.identity import mask_id_number, mask_personal_data
from rules.phone import mask_phone, parse_mobile
from rules.text import normalize
from settings import Settings
from staff import lookup, review
from staff.audit import record
from staff.review import StaffActionError, check_actor
from store import queries
from store.models import (AuditEvent, CannedReply, Candidate, Message, Notification, Order, Photo, Refund,
                          ReviewDecision, RosterEntry, utcnow)

SEARCH_LIMIT = 50
TEMPLATE_REASON_CHARS = 60  # a template shows the reply's beginning; the rest waits in the chat
REPLY_MAX_CHARS = 600  # WeChat takes 2048 bytes of text; a Chinese character is three
# Steps where a candidate is still on the way (a stuck one is suggested to agents).
ACTIVE_STATES = (State.INSTITUTION, State.LEVEL, State.IDENTITY, State.PHONE, State.CONFIRM, State.NOTICE,
                 State.PHOTO, State.PAYMENT)
# Where an agent may send a candidate back to, and from which steps.
SEND_BACK = {State.PHOTO: (State.PAYMENT, State.UNDER_REVIEW)}
OPENID_SHAPE = 6  # openids are 28 characters; anything this long without spaces is tried as one


# --- search -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hit:
    """One candidate (a WeChat account) or one graduate on the roster with no account yet."""
    openid: str | None
    name: str
    masked_id_number: str
    exam_number: str
    masked_phone: str
    state: str | None
    agent: str | None
    human_requested_at: datetime | None


def search(session: Session, text: str) -> list[Hit]:
    """Candidates by name (also part of it), ID number (full, or masked plus the name), phone number,
    准考证号 or openid. StaffActionError says what to type when the text reads as none of these."""
    text = normalize(text or "").strip()
    if not text:
        raise StaffActionError("请输入姓名、身份证号、手机号、准考证号或 openid")
    phone = parse_mobile(text)
    if phone is not None:
        return _hits(session, list(session.scalars(select(Candidate).where(Candidate.phone == phone))), [])
    if lookup.looks_like_graduate(text) or lookup.MASKED.match(text.split()[0].upper()):
        try:
            entry = lookup.find_graduate(session, text)
        except lookup.GraduateNotFound as exc:
            typed = list(session.scalars(select(Candidate).where(Candidate.id_number == text.upper())))
            if typed:  # an ID number typed in the chat that matched nobody on the roster
                return _hits(session, typed, [])
            raise StaffActionError(str(exc)) from exc
        return _hits(session, _candidates_of(session, entry), [entry])
    if " " not in text and len(text) >= OPENID_SHAPE and text.isascii():
        candidate = queries.find_candidate(session, text)
        return _hits(session, [candidate] if candidate else [], [])
    return _by_name(session, text)


def _by_name(session: Session, name: str) -> list[Hit]:
    entries = list(session.scalars(select(RosterEntry).where(RosterEntry.name.contains(name, autoescape=True))
                                   .order_by(RosterEntry.name, RosterEntry.id).limit(SEARCH_LIMIT)))
    candidates = list(session.scalars(select(Candidate).where(Candidate.name.contains(name, autoescape=True))
                                      .order_by(Candidate.id).limit(SEARCH_LIMIT)))
    for entry in entries:
        candidates.extend(_candidates_of(session, entry))
    return _hits(session, candidates, entries)[:SEARCH_LIMIT]


def _candidates_of(session: Session, entry: RosterEntry) -> list[Candidate]:
    return list(session.scalars(select(Candidate).where(or_(Candidate.roster_entry_id == entry.id,
                                                            Candidate.openid == entry.bound_openid))))


def _hits(session: Session, candidates: list[Candidate], entries: list[RosterEntry]) -> list[Hit]:
    hits, seen_openids, seen_entries = [], set(), set()
    for candidate in candidates:
        if candidate.openid in seen_openids:
            continue
        seen_openids.add(candidate.openid)
        entry = candidate.roster_entry
        if entry is not None:
            seen_entries.add(entry.id)
        hits.append(Hit(openid=candidate.openid, name=(entry.name if entry else candidate.name) or "-",
                        masked_id_number=mask_id_number(entry.id_number if entry else candidate.id_number),
                        exam_number=entry.exam_number if entry else "", masked_phone=mask_phone(candidate.phone),
                        state=candidate.state, agent=candidate.agent,
                        human_requested_at=candidate.human_requested_at))
    for entry in entries:
        if entry.id not in seen_entries:
            hits.append(Hit(openid=None, name=entry.name, masked_id_number=mask_id_number(entry.id_number),
                            exam_number=entry.exam_number, masked_phone="", state=None, agent=None,
                            human_requested_at=None))
    return hits


# --- one candidate's file: the roster record, the state and one timeline ----------------------------

@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # in | out | state | order | refund | review | notice | audit
    text: str
    detail: str = ""
    photo_id: int | None = None
    status: str | None = None  # a notification's delivery status, a photo's status
    error: str | None = None
    sort: int = 0
    image_message_id: int | None = None  # a photo kept while an agent held the conversation (not checked)


@dataclass(frozen=True)
class Window:
    """WeChat's customer-service window: open 48 hours after the candidate's last message, for a few
    messages (45047 after that)."""
    last_heard: datetime | None
    closes_at: datetime | None
    limit: int
    used: int
    refused_45047: bool

    def open(self, now: datetime) -> bool:
        return self.closes_at is not None and now < self.closes_at and not self.refused_45047

    @property
    def left(self) -> int:
        return 0 if self.refused_45047 else max(self.limit - self.used, 0)


@dataclass(frozen=True)
class CandidateFile:
    candidate: Candidate
    entry: RosterEntry | None
    state_since: datetime
    events: list[Event]
    window: Window
    latest_photo: Photo | None
    stamp: str  # changes whenever anything on the page would


def candidate_file(session: Session, openid: str, settings: Settings) -> CandidateFile:
    candidate = _candidate(session, openid)
    entry = candidate.roster_entry
    history = list(session.scalars(select(Message).where(Message.openid == openid).order_by(Message.id)))
    photos = _photos(session, candidate, entry)
    notices_ = list(session.scalars(select(Notification).where(Notification.openid == openid)
                                    .order_by(Notification.id)))
    events = (_message_events(history, photos, notices_) + _photo_events(session, photos)
              + _money_events(session, candidate, entry) + _notification_events(notices_)
              + _audit_events(session, candidate, entry))
    events.sort(key=lambda event: (event.at, event.sort))
    latest = max(photos.values(), key=lambda photo: photo.id) if photos else None
    return CandidateFile(candidate=candidate, entry=entry, state_since=_state_since(candidate, history),
                         events=events, window=window(session, openid, settings, history, notices_),
                         latest_photo=latest, stamp=stamp(session, openid))


def stamp(session: Session, openid: str) -> str:
    """Changes whenever the candidate's page would (a few indexed look-ups, so the page can poll it
    every second): this account's messages, notifications and row, and any newer order, refund,
    review decision or audit event at all (rare enough not to be worth a per-candidate index)."""
    messages_ = session.execute(select(func.max(Message.id)).where(Message.openid == openid)).scalar()
    notices_ = session.execute(
        select(func.count(), func.max(Notification.id),
               func.sum(case((Notification.status.in_(("sent", "dead")), 1), else_=0)))
        .where(Notification.openid == openid)).one()
    candidate = session.execute(select(Candidate.updated_at, Candidate.agent).where(Candidate.openid == openid)).one()
    rest = [session.execute(select(func.max(model.id))).scalar()
            for model in (Order, Refund, ReviewDecision, AuditEvent)]
    return "-".join(str(part) for part in (messages_, *notices_, *candidate, *rest))


def _candidate(session: Session, openid: str, lock: bool = False) -> Candidate:
    query = select(Candidate).where(Candidate.openid == openid)
    candidate = session.scalar(query.with_for_update() if lock else query)
    if candidate is None:
        raise StaffActionError(f"没有微信号 {openid} 的对话")
    return candidate


def _state_since(candidate: Candidate, history: list[Message]) -> datetime:
    for message in reversed(history):
        if message.state_after == candidate.state and message.state_before not in (None, candidate.state):
            return message.created_at
    return candidate.created_at


def _photos(session: Session, candidate: Candidate, entry: RosterEntry | None) -> dict[str, Photo]:
    """The candidate's photos (and their graduate's, uploaded from another account), by stored path."""
    query = select(Photo).where(or_(Photo.candidate_id == candidate.id,
                                    Photo.roster_entry_id == (entry.id if entry else -1))).order_by(Photo.id)
    return {photo.path: photo for photo in session.scalars(query)}


STATE_NAMES = {
    "welcome": "欢迎", "institution": "选择院校", "level": "选择层次", "identity": "填写身份", "phone": "填写手机号",
    "confirm": "确认信息", "notice": "阅读须知", "photo": "上传照片", "payment": "待支付", "under_review": "审核中",
    "approved": "审核通过",
}


def state_name(state: str | None) -> str:
    return STATE_NAMES.get(state or "", state or "-")


def _message_events(history: list[Message], photos: dict[str, Photo], notices_: list[Notification]) -> list[Event]:
    delivery = {notice.message_id: notice for notice in notices_ if notice.message_id is not None}
    events = []
    for message in history:
        photo = photos.get(message.media_path) if message.media_path else None
        notice = delivery.get(message.id)
        text = message.content
        if photo is not None:
            text = f"照片（自动检查：{'通过' if photo.verdict == 'pass' else '未通过'}"
            failures = [failure.get("rule", "?") for failure in (photo.report or {}).get("failures", [])]
            text += f"：{'、'.join(failures)}）" if failures else "）"
        elif message.media_path:
            text = "照片（客服接手期间收到，未自动检查）"
        via = {"webhook": "", "passive": "", "custom": "客服消息"}.get(message.channel, message.channel)
        if notice is not None and notice.delivered_via == "template":
            via = "模板消息"
        events.append(Event(at=message.created_at, kind=message.direction, text=text, detail=via,
                            photo_id=photo.id if photo else None, sort=message.id,
                            image_message_id=message.id if message.media_path and photo is None else None,
                            status=notice.status if notice else None,
                            error=(notice.last_error if notice else None) or message.delivery_error))
        if message.state_before and message.state_after and message.state_before != message.state_after:
            events.append(Event(at=message.created_at, kind="state", sort=message.id,
                                text=f"步骤：{state_name(message.state_before)} → {state_name(message.state_after)}"))
    return events


def _photo_events(session: Session, photos: dict[str, Photo]) -> list[Event]:
    ids = [photo.id for photo in photos.values()]
    if not ids:
        return []
    decisions = session.scalars(select(ReviewDecision).where(ReviewDecision.photo_id.in_(ids))
                                .order_by(ReviewDecision.id))
    return [Event(at=decision.decided_at, kind="review", photo_id=decision.photo_id,
                  text=f"审核{'通过' if decision.verdict == 'approved' else '不通过'}（{decision.reviewer}"
                       f"{'，复核' if decision.round == 'second' else ''}）" + (f"：{decision.reason}" if decision.reason else ""),
                  status="已撤销" if decision.undone_at else None)
            for decision in decisions]


def _money_events(session: Session, candidate: Candidate, entry: RosterEntry | None) -> list[Event]:
    conditions = [Order.openid == candidate.openid]
    if entry is not None:
        conditions.append(Order.roster_entry_id == entry.id)
    orders = list(session.scalars(select(Order).where(or_(*conditions)).order_by(Order.id)))
    events = []
    for order in orders:
        amount = f"{order.amount_fen / 100:.2f}元"
        events.append(Event(at=order.created_at, kind="order", text=f"订单 {order.out_trade_no} 创建（{amount}）"))
        if order.paid_at:
            events.append(Event(at=order.paid_at, kind="order", text=f"订单 {order.out_trade_no} 已支付（{amount}）"))
        if order.closed_at:
            events.append(Event(at=order.closed_at, kind="order",
                                text=f"订单 {order.out_trade_no} 已关闭（{order.closed_reason or '-'}）"))
    if orders:
        refunds = session.scalars(select(Refund).where(Refund.order_id.in_([order.id for order in orders])))
        events.extend(Event(at=refund.created_at, kind="refund", status=refund.status, error=refund.last_error,
                            text=f"退款 {refund.amount_fen / 100:.2f}元（{refund.reason}）") for refund in refunds)
    return events


NOTICE_KINDS = {"payment_done": "支付成功通知", "approved": "审核通过通知", "rejected": "审核不通过通知",
                "review_delay": "审核超时致歉", "refunded": "退款通知", "reply": "回复", "support_reply": "客服回复",
                "support": "客服通知"}


def _notification_events(notices_: list[Notification]) -> list[Event]:
    """SMS and template messages (a WeChat text already shows as the transcript row it wrote)."""
    return [Event(at=notice.created_at, kind="notice", status=notice.status, error=notice.last_error,
                  text=f"短信：{NOTICE_KINDS.get(notice.kind, notice.kind)}", detail=mask_phone(notice.phone))
            for notice in notices_ if notice.channel == "sms" or notice.message_id is None]


ACTIONS = {"support.take": "接手对话", "support.reply": "回复", "support.hand_back": "交还机器人",
           "support.unmasked_view": "查看完整身份证号和手机号", "support.sms": "发短信", "support.phone": "更正手机号",
           "support.send_back": "退回步骤", "support.done": "标记为已解决", "roster.unbind": "解除微信绑定",
           "review.force": "照片转人工审核", "review.approve": "审核通过", "review.reject": "审核不通过"}


def _audit_events(session: Session, candidate: Candidate, entry: RosterEntry | None) -> list[Event]:
    targets = [f"openid:{candidate.openid}"] + ([f"roster_entry:{entry.id}"] if entry else [])
    rows = session.scalars(select(AuditEvent).where(AuditEvent.target.in_(targets),
                                                    AuditEvent.action != "support.reply")  # the reply itself shows
                           .order_by(AuditEvent.id))
    return [Event(at=row.created_at, kind="audit", text=f"{row.actor}：{ACTIONS.get(row.action, row.action)}",
                  detail=" ".join(part for part in (row.detail, row.reason and f"原因：{row.reason}") if part))
            for row in rows]


def window(session: Session, openid: str, settings: Settings, history: list[Message] | None = None,
           notices_: list[Notification] | None = None) -> Window:
    if history is None:
        history = list(session.scalars(select(Message).where(Message.openid == openid, Message.direction == "in")
                                       .order_by(Message.id.desc()).limit(1)))
    last_heard = next((message.created_at for message in reversed(history) if message.direction == "in"), None)
    limit = settings.support.replies_per_window
    if last_heard is None:
        return Window(None, None, limit, 0, False)
    if notices_ is None:
        notices_ = list(session.scalars(select(Notification).where(Notification.openid == openid)))
    # Reminders spend the same customer-service quota as the agent's replies.
    since = [notice for notice in notices_
             if notice.channel in ("wechat", "reminder") and notice.created_at >= last_heard]
    used = sum(1 for notice in since if notice.delivered_via == "custom")
    refused = any("45047" in (notice.last_error or "") for notice in since)
    closes = last_heard + timedelta(hours=settings.notifications.customer_service_window_hours)
    return Window(last_heard, closes, limit, used, refused)


# --- the queue and the stuck --------------------------------------------------------------------------

@dataclass(frozen=True)
class Waiting:
    openid: str
    name: str
    masked_id_number: str
    state: str
    since: datetime
    agent: str | None
    why: str  # 人工 | stuck: what the suggestion is based on
    last_message: str = ""


def queue(session: Session) -> list[Waiting]:
    """Who asked for a human (人工) or is held by an agent, oldest request first."""
    candidates = session.scalars(select(Candidate).where(or_(Candidate.human_requested_at.is_not(None),
                                                             Candidate.agent.is_not(None)))
                                 .order_by(func.coalesce(Candidate.human_requested_at, Candidate.agent_since)))
    return [_waiting(session, candidate, candidate.human_requested_at or candidate.agent_since,
                     "人工" if candidate.human_requested_at else "客服接手中") for candidate in candidates]


def stuck(session: Session, settings: Settings, now: datetime | None = None, limit: int = 50) -> list[Waiting]:
    """Suggestions: no progress at a step for [support] stuck_hours, or the same photo refusal
    stuck_photo_failures times in a row. Candidates already in the queue are left out."""
    now = now or utcnow()
    policy = settings.support
    # The candidate row changes with every step (and nothing else the bot does to it), so its
    # updated_at is when they last made progress: one indexed-enough look-up, no transcript scan.
    idle = session.execute(
        select(Candidate, Candidate.updated_at)
        .where(Candidate.state.in_(ACTIVE_STATES), Candidate.human_requested_at.is_(None), Candidate.agent.is_(None),
               Candidate.updated_at < now - timedelta(hours=policy.stuck_hours))
        .order_by(Candidate.updated_at).limit(limit)).all()
    found = {candidate.openid: _waiting(session, candidate, _aware(at), f"在“{state_name(candidate.state)}”"
                                        f"超过{policy.stuck_hours}小时没有进展")
             for candidate, at in idle}
    for candidate, rule, at in _repeated_refusals(session, policy.stuck_photo_failures, limit):
        found.setdefault(candidate.openid, _waiting(
            session, candidate, at, f"照片连续{policy.stuck_photo_failures}次因同一问题（{rule}）未通过"))
    return sorted(found.values(), key=lambda item: item.since)[:limit]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


def _repeated_refusals(session: Session, times: int, limit: int) -> list[tuple[Candidate, str, datetime]]:
    """Candidates at the photo step whose last `times` photos were all refused for the same rules."""
    enough = (select(Photo.candidate_id).join(Candidate, Candidate.id == Photo.candidate_id)
              .where(Candidate.state == State.PHOTO, Candidate.human_requested_at.is_(None),
                     Candidate.agent.is_(None), Photo.status == "checked")
              .group_by(Photo.candidate_id).having(func.count() >= times))  # few: reports read only for these
    ranked = (select(Photo.candidate_id, Photo.status, Photo.report, Photo.created_at,
                     func.row_number().over(partition_by=Photo.candidate_id, order_by=Photo.id.desc()).label("nth"))
              .where(Photo.candidate_id.in_(enough))
              .subquery())
    last: dict[int, list] = {}
    for row in session.execute(select(ranked).where(ranked.c.nth <= times)):
        last.setdefault(row.candidate_id, []).append(row)
    found = []
    for candidate_id, photos in last.items():
        if len(photos) < times or any(photo.status != "checked" for photo in photos):
            continue
        rules = {tuple(sorted(f.get("rule", "?") for f in (photo.report or {}).get("failures", []))) for photo in photos}
        if len(rules) == 1 and next(iter(rules)):
            first = min(photo.created_at for photo in photos)
            found.append((session.get(Candidate, candidate_id), "、".join(next(iter(rules))), _aware(first)))
    found.sort(key=lambda item: item[2])
    return found[:limit]


def _waiting(session: Session, candidate: Candidate, since: datetime, why: str) -> Waiting:
    entry = candidate.roster_entry
    last = session.scalar(select(Message.content).where(Message.openid == candidate.openid, Message.direction == "in")
                          .order_by(Message.id.desc()).limit(1))
    return Waiting(openid=candidate.openid, name=(entry.name if entry else candidate.name) or "-",
                   masked_id_number=mask_id_number(entry.id_number if entry else candidate.id_number),
                   state=candidate.state, since=since, agent=candidate.agent, why=why,
                   last_message=mask_personal_data(last or ""))


# --- take over, reply, hand back ------------------------------------------------------------------

def take_over(session: Session, openid: str, agent: str, outbox: Outbox) -> Candidate:
    """The agent holds the conversation from now on: the bot stays silent (bot/conversation.py) and
    the candidate is told once. A conditional update, so of two agents only one gets it."""
    agent = check_actor(agent)
    candidate = _candidate(session, openid)
    if candidate.agent == agent:
        return candidate
    now = utcnow()
    taken = session.execute(
        update(Candidate).where(Candidate.openid == openid, Candidate.agent.is_(None))
        .values(agent=agent, agent_since=now, agent_active_at=now).execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(candidate)
    if taken != 1:
        raise StaffActionError(f"{candidate.agent} 已接手这个对话")
    outbox.add(session, _notice(openid, f"support_take:{openid}:{now.timestamp()}", messages.AGENT_TOOK_OVER))
    record(session, agent, "support.take", f"openid:{openid}")
    return candidate


def held_by(session: Session, openid: str, agent: str, lock: bool = True) -> Candidate:
    """The candidate, when this agent holds the conversation (StaffActionError otherwise)."""
    candidate = _candidate(session, openid, lock=lock)
    if candidate.agent is None:
        raise StaffActionError("请先接手这个对话")
    if candidate.agent != agent:
        raise StaffActionError(f"{candidate.agent} 正在处理这个对话")
    return candidate


def reply(session: Session, openid: str, agent: str, text: str, outbox: Outbox) -> int:
    """A customer-service message from the agent, through the outbox; returns its notification id
    (its delivery status and WeChat's answer show on the agent's page)."""
    agent = check_actor(agent)
    text = (text or "").strip()
    if not text:
        raise StaffActionError("请输入回复内容")
    if len(text) > REPLY_MAX_CHARS:
        raise StaffActionError(f"回复最多{REPLY_MAX_CHARS}字，现在是{len(text)}字")
    candidate = held_by(session, openid, agent)
    _touch(candidate, agent)
    notice = Notice(kind="support_reply", openid=openid, key=f"support_reply:{openid}:{uuid.uuid4().hex}", text=text,
                    template_fields=_template_fields(candidate, text, outbox.settings))
    ids = outbox.add(session, notice)
    record(session, agent, "support.reply", f"openid:{openid}", f"{len(text)} 字")
    return ids[0]


def _template_fields(candidate: Candidate, text: str, settings: Settings) -> dict[str, str]:
    """What a template message shows should WeChat refuse the reply as a customer-service message
    ([notifications] wechat_template_support_reply; without one the page offers SMS)."""
    entry = candidate.roster_entry
    fields = {key: value.format(**texts.office_fields(settings)) for key, value in messages.TEMPLATE_SUPPORT_REPLY.items()}
    fields.update(name=(entry.name if entry else candidate.name) or "", reason=texts.shorten(text, TEMPLATE_REASON_CHARS),
                  time=datetime.now(settings.window.tz).strftime("%Y-%m-%d %H:%M"))
    return fields


def sms(session: Session, openid: str, agent: str, outbox: Outbox, settings: Settings) -> int:
    """When WeChat refuses customer-service messages (window closed, 45047): a text message asking the
    candidate to open the account or call the office (SMS template `support_reply`)."""
    agent = check_actor(agent)
    candidate = _candidate(session, openid, lock=True)
    if not candidate.phone:
        raise StaffActionError("考生没有留手机号，无法发短信；请等考生再发消息或来电")
    notice = Notice(kind="support_reply", openid=openid, key=f"support_sms:{openid}:{uuid.uuid4().hex}",
                    text="", sms_params=(settings.office.phone,))
    notification_id = outbox.add_sms(session, notice, candidate.phone)
    _touch(candidate, agent)
    record(session, agent, "support.sms", f"openid:{openid}", mask_phone(candidate.phone))
    return notification_id


def hand_back(session: Session, openid: str, by: str, outbox: Outbox, settings: Settings, why: str = "") -> Candidate:
    """The bot answers the candidate again, from their state; they are told so and what to do next."""
    by = check_actor(by)
    candidate = _candidate(session, openid, lock=True)
    if candidate.agent is None:
        raise StaffActionError("这个对话没有人接手")
    agent = candidate.agent
    candidate.agent = candidate.agent_since = candidate.agent_active_at = candidate.handed_back_untold_at = None
    candidate.human_requested_at = None
    if window(session, openid, settings).left > 0 and window(session, openid, settings).open(utcnow()):
        text = messages.HANDED_BACK.format(next=texts.step_help(settings, candidate.state))
        outbox.add(session, _notice(openid, f"support_back:{openid}:{utcnow().timestamp()}", text))
    else:  # WeChat would refuse it: the bot's next answer says it instead (handlers/handback.py)
        candidate.handed_back_untold_at = utcnow()
    record(session, by, "support.hand_back", f"openid:{openid}", f"from {agent}" + (f": {why}" if why else ""))
    return candidate


def hand_back_idle(session: Session, outbox: Outbox, settings: Settings, now: datetime | None = None) -> list[str]:
    """Conversations whose agent did nothing for [support] idle_minutes go back to the bot."""
    cutoff = (now or utcnow()) - timedelta(minutes=settings.support.idle_minutes)
    openids = list(session.scalars(select(Candidate.openid).where(Candidate.agent.is_not(None),
                                                                  Candidate.agent_active_at < cutoff)))
    for openid in openids:
        hand_back(session, openid, "system", outbox, settings, f"{settings.support.idle_minutes} 分钟无操作")
    return openids


def resolve(session: Session, openid: str, by: str, outbox: Outbox, settings: Settings) -> Candidate:
    """Off the queue; a conversation still held goes back to the bot."""
    by = check_actor(by)
    candidate = _candidate(session, openid, lock=True)
    if candidate.human_requested_at is None and candidate.agent is None:
        raise StaffActionError(f"{openid} 不在人工客服队列中")
    if candidate.agent is not None:
        hand_back(session, openid, by, outbox, settings, "已解决")
    candidate.human_requested_at = None
    record(session, by, "support.done", f"openid:{openid}")
    return candidate


def _notice(openid: str, key: str, text: str, kind: str = "support") -> Notice:
    return Notice(kind=kind, openid=openid, key=key, text=text)


# --- the agent's actions on the candidate ---------------------------------------------------------

def send_back(session: Session, openid: str, step: str, by: str, outbox: Outbox) -> Candidate:
    """Back to an earlier step (the photo step: a new upload replaces the photo; a payment stays)."""
    by = check_actor(by)
    candidate = _candidate(session, openid, lock=True)
    allowed = SEND_BACK.get(step)
    if allowed is None:
        raise StaffActionError(f"不能退回到“{state_name(step)}”")
    if candidate.state not in allowed:
        raise StaffActionError(f"考生当前在“{state_name(candidate.state)}”，不能退回到“{state_name(step)}”")
    before = candidate.state
    if candidate.roster_entry_id is not None:
        queries.replace_submitted_photos(session, candidate.roster_entry_id)
    candidate.state = step
    _touch(candidate, by)
    outbox.add(session, _notice(openid, f"support_send_back:{openid}:{utcnow().timestamp()}",
                                messages.SENT_BACK_TO_PHOTO), state_before=before, state_after=step)
    record(session, by, "support.send_back", f"openid:{openid}", f"{before} → {step}")
    return candidate


def correct_phone(session: Session, openid: str, phone: str, by: str, outbox: Outbox) -> Candidate:
    by = check_actor(by)
    number = parse_mobile(phone or "")
    if number is None:
        raise StaffActionError("请输入11位手机号")
    candidate = _candidate(session, openid, lock=True)
    old = candidate.phone
    candidate.phone = number
    _touch(candidate, by)
    outbox.add(session, _notice(openid, f"support_phone:{openid}:{utcnow().timestamp()}",
                                messages.PHONE_CORRECTED.format(phone=mask_phone(number))))
    record(session, by, "support.phone", f"openid:{openid}", f"{mask_phone(old) or '-'} → {mask_phone(number)}")
    return candidate


def unbind(session: Session, openid: str, by: str) -> str:
    """The existing unbind (staff.review.unbind) of the graduate this account is collecting for."""
    candidate = _candidate(session, openid, lock=True)
    entry = candidate.roster_entry
    if entry is None or entry.bound_openid != openid:
        raise StaffActionError("这个微信号没有绑定考生")
    _touch(candidate, by)
    return review.unbind(session, entry.id_number, by)


def send_to_review(session: Session, openid: str, photo_id: int, by: str, why: str, outbox: Outbox) -> review.Forced:
    """A photo the checker refused goes to a reviewer anyway (who sees it was an agent's call)."""
    candidate = _candidate(session, openid, lock=True)
    photo = session.get(Photo, photo_id)
    if photo is None or photo.candidate_id != candidate.id:
        raise StaffActionError(f"照片 {photo_id} 不是这个考生的")
    forced = review.send_to_review(session, photo_id, by, f"客服 {by}：{why}" if why.strip() else "", outbox=outbox)
    _touch(candidate, by)
    return forced


def _touch(candidate: Candidate, by: str) -> None:
    if candidate.agent == by:
        candidate.agent_active_at = utcnow()


# --- unmasked views -----------------------------------------------------------------------------------

def reveal(session: Session, openid: str, by: str, reason: str, ip: str | None = None) -> Candidate:
    """Staff may see the ID and phone numbers unmasked for a stated reason; audited."""
    by = check_actor(by)
    reason = (reason or "").strip()
    if not reason:
        raise StaffActionError("请说明查看完整身份证号和手机号的原因")
    candidate = _candidate(session, openid)
    record(session, by, "support.unmasked_view", f"openid:{openid}", reason=reason[:500], ip=ip)
    return candidate


# --- canned replies -------------------------------------------------------------------------------

def canned_replies(session: Session) -> list[CannedReply]:
    """The active list; the defaults from messages.py the first time it is asked for."""
    if session.scalar(select(func.count()).select_from(CannedReply)) == 0:
        for position, (title, text) in enumerate(messages.CANNED_REPLIES):
            session.add(CannedReply(title=title, text=text, position=position, active=True, updated_by="system",
                                    updated_at=utcnow()))
        session.flush()
    return list(session.scalars(select(CannedReply).where(CannedReply.active.is_(True))
                                .order_by(CannedReply.position, CannedReply.id)))


def fill(text: str, candidate: Candidate, settings: Settings) -> str:
    """A canned reply with its placeholders filled for this candidate."""
    entry = candidate.roster_entry
    values = {"name": (entry.name if entry else candidate.name) or "",
              "office_phone": settings.office.phone,
              "deadline": texts.local_time(settings, settings.window.aware_end())}
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):
        return text


def save_canned_reply(session: Session, by: str, title: str, text: str, reply_id: int | None = None,
                      active: bool = True) -> CannedReply:
    by = check_actor(by)
    title, text = (title or "").strip(), (text or "").strip()
    if not title or not text:
        raise StaffActionError("请填写标题和内容")
    if len(title) > 32 or len(text) > REPLY_MAX_CHARS:
        raise StaffActionError(f"标题最多32字，内容最多{REPLY_MAX_CHARS}字")
    try:
        text.format(name="", office_phone="", deadline="")
    except (KeyError, IndexError, ValueError) as exc:
        raise StaffActionError("内容里的占位符只能是 {name}、{office_phone}、{deadline}") from exc
    row = session.get(CannedReply, reply_id) if reply_id else None
    if reply_id and row is None:
        raise StaffActionError(f"没有编号为 {reply_id} 的常用回复")
    if row is None:
        position = (session.scalar(select(func.max(CannedReply.position))) or 0) + 1
        row = CannedReply(position=position)
        session.add(row)
    row.title, row.text, row.active, row.updated_by, row.updated_at = title, text, active, by, utcnow()
    session.flush()
    record(session, by, "support.canned_reply", f"canned_reply:{row.id}", f"{title}{'' if active else '（停用）'}")
    return row
