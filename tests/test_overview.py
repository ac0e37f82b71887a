"""The overview's figures, from candidates driven through the real webhook and staff commands.

Set TEST_DATABASE_URL to run them on PostgreSQL (the day and JSON queries differ per dialect)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from staff import overview
from store.models import Order, Photo
from tests.journey import GRADUATES, Chat
from tests.staff_fixtures import db, put_under_review

TZ = datetime.now().astimezone().tzinfo


def figures(app):
    settings = app.extensions["collector"].settings
    with db(app).session() as session:
        return overview.overview(session, settings.window.tz, settings.collection.review_hours)


def test_funnel_per_level_counts_where_each_account_stands(app, wechat, fake_wechat, roster):
    Chat(app, wechat, fake_wechat, "o_only_follows").subscribe()
    unknown = Chat(app, wechat, fake_wechat, "o_not_on_roster")
    unknown.subscribe(), unknown.say("北京市高等教育自学考试"), unknown.say("本科")
    unknown.say("王小明 110101199503120118")  # valid ID number, not on this roster: identified, not matched
    Chat(app, wechat, fake_wechat, "o_at_photo").walk_to_photo(GRADUATES[0])  # 本科, matched
    paid = put_under_review(app, _row(GRADUATES[1]), "o_paid")  # 专科: passed, paid, under review
    approved = put_under_review(app, _row(GRADUATES[2]), "o_approved", state="approved", photo_status="approved")

    result = figures(app)

    by_level = {row.level: row.counts() for row in result.funnel}
    assert by_level["本科"] == [3, 3, 2, 1, 1, 1]
    assert by_level["专科"] == [1, 1, 1, 1, 1, 0]
    assert by_level[overview.UNKNOWN_LEVEL] == [1, 0, 0, 0, 0, 0]
    assert result.total.counts() == [5, 4, 3, 2, 2, 1]
    assert paid and approved


def test_backlog_counts_overdue_photos_and_the_share_decided_in_time(app, roster):
    now = datetime.now(timezone.utc)
    for n, graduate in enumerate(GRADUATES):
        put_under_review(app, _row(graduate), f"o_{n}")
    with db(app).session() as session:
        ids = sorted(session.scalars(Photo.__table__.select().with_only_columns(Photo.id)))
        # Photo 1: waiting 50 h (overdue). Photo 2: decided 10 h after payment. Photo 3: decided 60 h after.
        session.execute(update(Photo).where(Photo.id == ids[0]).values(created_at=now - timedelta(hours=50)))
        session.execute(update(Order).values(paid_at=now - timedelta(hours=70)))
        session.execute(update(Photo).where(Photo.id == ids[1]).values(
            status="approved", created_at=now - timedelta(hours=80), reviewed_at=now - timedelta(hours=60)))
        session.execute(update(Photo).where(Photo.id == ids[2]).values(
            status="rejected", created_at=now - timedelta(hours=75), reviewed_at=now - timedelta(hours=5)))

    backlog = figures(app).backlog
    assert (backlog.waiting, backlog.overdue, backlog.decided, backlog.decided_in_time) == (1, 1, 2, 1)
    assert backlog.in_time_share == 0.5


def test_top_failures_and_volume_per_day(app, roster):
    for n, graduate in enumerate(GRADUATES):
        put_under_review(app, _row(graduate), f"o_{n}")
    failures = [[{"rule": "background.color"}, {"rule": "head.size"}], [{"rule": "background.color"}], []]
    with db(app).session() as session:
        for photo_id, failed in zip(sorted(session.scalars(Photo.__table__.select().with_only_columns(Photo.id))),
                                    failures):
            session.execute(update(Photo).where(Photo.id == photo_id).values(
                verdict="fail" if failed else "pass", report={"verdict": "fail", "failures": failed, "hints": []}))

    result = figures(app)
    assert [(row.rule, row.count) for row in result.failures] == [("background.color", 2), ("head.size", 1)]
    assert result.failures[0].title == "背景颜色不符"
    today = result.days[-1]
    assert len(result.days) == overview.DAYS
    assert (today.candidates, today.photos, today.paid, today.decided) == (3, 3, 3, 0)
    assert sum(day.photos for day in result.days) == 3
    assert result.reviewers == []  # H7's figures: nobody has reviewed yet


def _row(graduate: dict) -> list[str]:
    return [graduate[key] for key in ("name", "id_number", "exam_number", "level", "major")]


def test_every_rule_the_checker_can_name_has_a_title_on_the_overview():
    import messages
    from staff.overview import RULE_TITLES

    rules = {".".join(key.split(".")[:2]) for key in messages.PHOTO_RULES}
    assert rules - set(RULE_TITLES) == set()


def test_the_count_charts_label_their_axis_with_whole_numbers_only(app, roster):
    from console.overview import days_chart, failures_chart, funnel_chart

    empty = figures(app)  # nobody yet: the charts still draw
    assert all("<svg" in str(chart(empty)) for chart in (funnel_chart, days_chart, failures_chart))
    for n, graduate in enumerate(GRADUATES):
        put_under_review(app, _row(graduate), f"o_{n}")
    result = figures(app)  # a handful of candidates: where pygal's own axis would say 0.5, 1.5, 2.5
    for chart in (funnel_chart(result), days_chart(result), failures_chart(result)):
        value_axis = re.search(r'<g class="axis (?:y|x) always_show">(.*?)</g>\s*</g>', str(chart), re.S)
        assert value_axis, "the chart has no value axis"
        labels = re.findall(r"<text[^>]*>([^<]*)</text>", value_axis.group(1))
        assert labels and all(label.isdigit() for label in labels), labels
