"""The overview's figures: the funnel per level, volume per day, the most frequent photo failures and
the review backlog with its SLA. Every figure is one set-based query (GROUP BY in the database); no
row is looped over in Python, so the page stays fast with tens of thousands of candidates.

The funnel is a snapshot of where each WeChat account stands now:
followed (any account that wrote or subscribed) → identified (gave a valid name and ID number: looked up on
the roster at least once, or past that step) → roster matched
→ photo passed (a photo passed the checks) → paid → approved.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select, text
from sqlalchemy.orm import Session

from handlers.base import State
from store.models import Candidate, MatchAttempt, Order, Photo, utcnow

UNKNOWN_LEVEL = "未选择"
DAYS = 14
TOP_FAILURES = 10

# The roster is matched as soon as name and ID number are complete; the phone is asked for after that.
MATCHED = (State.PHONE, State.CONFIRM, State.NOTICE, State.PHOTO, State.PAYMENT, State.UNDER_REVIEW,
           State.APPROVED)

RULE_TITLES = {
    "file.format": "不是JPEG格式", "file.size": "文件大小不符", "image.resolution": "分辨率不足",
    "image.aspect": "宽高比不符", "image.color": "不是彩色照片", "image.orientation": "照片方向不正",
    "face.count": "未检测到唯一人脸",
    "background.color": "背景颜色不符", "background.uniform": "背景不均匀", "background.contrast": "背景与人物对比不足",
    "head.size": "头部大小不符", "head.position": "头部位置不正", "face.pose": "没有正对镜头",
    "face.eyes": "眼睛未睁开", "face.mouth": "嘴巴未闭合", "face.glasses": "眼镜反光或遮挡",
    "quality.sharpness": "照片模糊", "quality.exposure": "曝光不当", "quality.color": "偏色",
}


@dataclass(frozen=True)
class FunnelRow:
    level: str
    followed: int = 0
    identified: int = 0
    matched: int = 0
    passed: int = 0
    paid: int = 0
    approved: int = 0

    STEPS = ("followed", "identified", "matched", "passed", "paid", "approved")

    def counts(self) -> list[int]:
        return [getattr(self, step) for step in self.STEPS]


STEP_TITLES = ("关注", "填写身份", "名单匹配", "照片通过", "已缴费", "审核通过")


@dataclass(frozen=True)
class DayRow:
    day: date
    candidates: int = 0
    photos: int = 0
    paid: int = 0
    decided: int = 0


@dataclass(frozen=True)
class FailureRow:
    rule: str
    count: int

    @property
    def title(self) -> str:
        return RULE_TITLES.get(self.rule, self.rule)


@dataclass(frozen=True)
class Backlog:
    waiting: int
    overdue: int
    decided: int
    decided_in_time: int
    sla_hours: int

    @property
    def in_time_share(self) -> float | None:
        return self.decided_in_time / self.decided if self.decided else None


@dataclass(frozen=True)
class Overview:
    funnel: list[FunnelRow]
    total: FunnelRow
    days: list[DayRow]
    failures: list[FailureRow]
    backlog: Backlog
    generated_at: datetime
    reviewers: list | None = field(default=None)


def overview(session: Session, tz: ZoneInfo, review_hours: int = 48, today: date | None = None) -> Overview:
    funnel = funnel_by_level(session)
    total = FunnelRow("合计", **{step: sum(getattr(row, step) for row in funnel) for step in FunnelRow.STEPS})
    return Overview(funnel=funnel, total=total, days=volume_by_day(session, tz, today), failures=top_failures(session),
                    backlog=review_backlog(session, review_hours), generated_at=utcnow(),
                    reviewers=reviewer_figures(session))


# --- the funnel ------------------------------------------------------------------------------------

def funnel_by_level(session: Session) -> list[FunnelRow]:
    level = func.coalesce(Candidate.level, UNKNOWN_LEVEL).label("level")
    # One pass over photos and one over orders, joined by key: much cheaper than EXISTS per candidate.
    photos = (select(Photo.candidate_id.label("candidate_id"),
                     func.max(case((Photo.verdict == "pass", 1), else_=0)).label("passed"),
                     func.max(case((Photo.status == "approved", 1), else_=0)).label("approved"))
              .group_by(Photo.candidate_id).subquery())
    paid = select(Order.roster_entry_id.label("roster_entry_id")).where(Order.status == "paid") \
        .group_by(Order.roster_entry_id).subquery()
    # A graduate not on the roster stays at the identity step: their look-up shows they gave name and ID.
    looked_up = select(MatchAttempt.openid.label("openid")).group_by(MatchAttempt.openid).subquery()
    identified = or_(Candidate.state.in_(MATCHED), looked_up.c.openid.is_not(None))
    query = (select(level, func.count(), _count_if(identified),
                    _count_if(Candidate.state.in_(MATCHED)), func.coalesce(func.sum(photos.c.passed), 0),
                    _count_if(paid.c.roster_entry_id.is_not(None)), func.coalesce(func.sum(photos.c.approved), 0))
             .outerjoin(photos, photos.c.candidate_id == Candidate.id)
             .outerjoin(paid, paid.c.roster_entry_id == Candidate.roster_entry_id)
             .outerjoin(looked_up, looked_up.c.openid == Candidate.openid)
             .group_by(level).order_by(level))
    return [FunnelRow(row[0], *map(int, row[1:])) for row in session.execute(query)]


def _count_if(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


# --- volume per day --------------------------------------------------------------------------------

def volume_by_day(session: Session, tz: ZoneInfo, today: date | None = None, days: int = DAYS) -> list[DayRow]:
    """New accounts, uploaded photos, payments and review verdicts per local day, the last `days` days."""
    today = today or datetime.now(tz).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tz)
    series = {
        "candidates": _per_day(session, Candidate.created_at, since, tz),
        "photos": _per_day(session, Photo.created_at, since, tz),
        "paid": _per_day(session, Order.paid_at, since, tz, Order.status == "paid"),
        "decided": _per_day(session, Photo.reviewed_at, since, tz, Photo.status.in_(("approved", "rejected"))),
    }
    return [DayRow(day, **{name: counts.get(day.isoformat(), 0) for name, counts in series.items()})
            for day in (first + timedelta(days=n) for n in range(days))]


def _per_day(session: Session, column, since: datetime, tz: ZoneInfo, *conditions) -> dict[str, int]:
    day = _local_day(session, column, tz).label("day")
    query = select(day, func.count()).where(column >= since, *conditions).group_by(day)
    return {str(value): int(count) for value, count in session.execute(query)}


def _local_day(session: Session, column, tz: ZoneInfo):
    """The calendar day of a UTC timestamp in the collection's time zone, as YYYY-MM-DD text."""
    if session.get_bind().dialect.name == "sqlite":
        # Stored as UTC text; SQLite has no zone database, so the zone's current offset is applied.
        offset = datetime.now(tz).utcoffset() or timedelta()
        return func.date(column, f"{int(offset.total_seconds())} seconds")
    return func.to_char(func.timezone(str(tz), column), "YYYY-MM-DD")


# --- photo failures ------------------------------------------------------------------------------------

def top_failures(session: Session, limit: int = TOP_FAILURES) -> list[FailureRow]:
    """The rules photos failed most often (every failed upload counts, each rule once per photo)."""
    if session.get_bind().dialect.name == "sqlite":
        sql = text("SELECT json_extract(f.value, '$.rule') AS rule, count(*) AS n "
                   "FROM photos, json_each(photos.report, '$.failures') AS f "
                   "WHERE photos.verdict = 'fail' GROUP BY rule ORDER BY n DESC, rule LIMIT :limit")
    else:
        sql = text("SELECT f.value ->> 'rule' AS rule, count(*) AS n "
                   "FROM photos, json_array_elements(photos.report -> 'failures') AS f "
                   "WHERE photos.verdict = 'fail' GROUP BY rule ORDER BY n DESC, rule LIMIT :limit")
    return [FailureRow(rule or "?", int(n)) for rule, n in session.execute(sql, {"limit": limit})]


# --- review backlog and SLA --------------------------------------------------------------------------

def review_backlog(session: Session, review_hours: int = 48, now: datetime | None = None) -> Backlog:
    """Photos waiting for a verdict (paid), those past the promised time, and the share of verdicts given
    within it. The clock starts at the later of the upload and the payment."""
    now = now or utcnow()
    paid = (select(Order.roster_entry_id, func.min(Order.paid_at).label("paid_at"))
            .where(Order.status == "paid").group_by(Order.roster_entry_id).subquery())
    joined = select(Photo).join(paid, paid.c.roster_entry_id == Photo.roster_entry_id)
    limit = now - timedelta(hours=review_hours)
    waiting_query = joined.where(Photo.status == "submitted").with_only_columns(
        func.count(), _count_if(and_(Photo.created_at < limit, paid.c.paid_at < limit)))
    waiting, overdue = session.execute(waiting_query).one()
    started = _later(session, Photo.created_at, paid.c.paid_at)
    in_time = _hours_between(session, started, Photo.reviewed_at) <= review_hours
    decided_query = joined.where(Photo.status.in_(("approved", "rejected")), Photo.reviewed_at.is_not(None)) \
        .with_only_columns(func.count(), _count_if(in_time))
    decided, decided_in_time = session.execute(decided_query).one()
    return Backlog(waiting=int(waiting), overdue=int(overdue or 0), decided=int(decided),
                   decided_in_time=int(decided_in_time or 0), sla_hours=review_hours)


def _later(session: Session, a, b):
    return func.max(a, b) if session.get_bind().dialect.name == "sqlite" else func.greatest(a, b)


def _hours_between(session: Session, start, end):
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 24
    return func.extract("epoch", end - start) / 3600


# --- reviewer figures (staff/review_quality.py) --------------------------------------------------------

def reviewer_figures(session: Session) -> list | None:
    """Per-reviewer counts, median time and disagreement rate; None when that module is not there."""
    try:
        from staff.review_quality import reviewer_figures as figures
    except ImportError:
        return None
    return figures(session)
