"""The review workflow (issue 9): the queue and its claims, verdicts with an undo period, photos sent to
review despite the checker, preset reasons, blind second looks, reviewer figures, and the staff
commands that find a graduate from what staff are shown. Logic through staff/ functions on a migrated
database; the commands through the real Flask CLI; notifications through the outbox to the fake WeChat API.

Set TEST_DATABASE_URL to run them on PostgreSQL."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

import messages
from staff import review, review_quality
from staff.lookup import GraduateNotFound, find_graduate
from staff.review import StaffActionError
from store.models import Candidate, Notification, Order, Photo, RejectReason, RosterEntry, utcnow
from tests.staff_fixtures import ROWS, audit_events, candidate, db, photos, put_under_review, transcript_rows

OPENIDS = ["o_review_1", "o_review_2", "o_review_3"]
REFUSAL = {"verdict": "fail", "hints": [], "metrics": {"background_l": 181.0},
           "failures": [{"rule": "background.color", "message": "背景颜色不符合要求", "value": 181.0,
                         "threshold": 200.0}]}


@pytest.fixture
def settings_sections():
    return {"review": {"undo_seconds": 30, "second_review_share": 0.0, "claim_minutes": 10}}


@pytest.fixture
def app(make_app, settings_sections):
    return make_app(**settings_sections)


def collector(app):
    return app.extensions["collector"]


def queue(app, now=None):
    with db(app).session() as session:
        return review.review_queue(session, 48, now)


def next_for(app, reviewer, now=None):
    with db(app).session() as session:
        return review.next_photo(session, reviewer, collector(app).settings.review, 48, now)


def decide(app, photo_id, by, verdict, **kwargs):
    with db(app).session() as session:
        decided = review.decide(session, collector(app).outbox, photo_id, by, verdict, **kwargs)
        return decided.decision.id


def refused_photo(app, graduate, openid, state="photo", paid=True) -> int:
    """A candidate whose latest photo the checker refused; returns the photo id."""
    entry_id = put_under_review(app, graduate, openid, state=state, photo_status="checked")
    with db(app).session() as session:
        photo = session.scalar(select(Photo).where(Photo.roster_entry_id == entry_id))
        photo.verdict, photo.report = "fail", REFUSAL
        if not paid:
            for order in session.scalars(select(Order).where(Order.roster_entry_id == entry_id)):
                order.status, order.paid_at = "pending", None
        return photo.id


# --- finding a graduate ------------------------------------------------------------------------------

def test_a_graduate_is_found_by_id_number_exam_number_or_masked_id_with_name(app, imported):
    with db(app).session() as session:
        assert find_graduate(session, ROWS[0][1]).name == "王小明"
        assert find_graduate(session, "012420110002").name == "刘芳"
        assert find_graduate(session, "110101********0118 王小明").name == "王小明"
        assert find_graduate(session, "１１０１０５＊＊＊＊＊＊＊＊０４６７　陈静").name == "陈静"  # full-width
        assert find_graduate(session, "110101********0118").name == "王小明"  # unique even without the name


def test_an_ambiguous_or_unknown_graduate_is_refused_with_what_to_type(app, imported):
    with db(app).session() as session:  # a second graduate with the same region and last four digits
        session.add(RosterEntry(name="王晓明", id_number="110101199811230118", exam_number="012420110009",
                                level="本科", major="法学"))
    with db(app).session() as session:
        with pytest.raises(GraduateNotFound) as ambiguous:
            find_graduate(session, "110101********0118")
        assert "012420110001" in str(ambiguous.value) and "012420110009" in str(ambiguous.value)
        assert "姓名" in str(ambiguous.value)
        assert find_graduate(session, "110101********0118 王晓明").exam_number == "012420110009"
        with pytest.raises(GraduateNotFound) as wrong_name:
            find_graduate(session, "110101********0118 李雷")
        assert "名单中没有" in str(wrong_name.value) and "准考证号" in str(wrong_name.value)
        with pytest.raises(GraduateNotFound) as unknown:
            find_graduate(session, "110101199003074573")
        assert "110101********4573" in str(unknown.value) and "110101199003074573" not in str(unknown.value)


def test_cli_approve_accepts_the_masked_id_and_name_shown_by_pending(cli, app, imported, fake_wechat):
    put_under_review(app, ROWS[0], OPENIDS[0])
    pending = cli("review", "pending")
    assert "110101********0118" in pending.output and "012420110001" in pending.output
    assert "准考证号" in pending.output and "姓名" in pending.output
    result = cli("review", "approve", "110101********0118", "王小明", "--by", "李老师")
    assert result.exit_code == 0, result.output
    assert candidate(app, OPENIDS[0]).state == "approved"
    assert fake_wechat.wait_for_messages(1)[-1]["text"]["content"] == messages.APPROVED


def test_cli_reject_by_exam_number_with_a_preset_reason(cli, app, imported, fake_wechat):
    put_under_review(app, ROWS[1], OPENIDS[1])
    reasons = cli("review", "reasons")
    assert "background" in reasons.output and "背景不符合要求" in reasons.output
    result = cli("review", "reject", "012420110002", "--preset", "background", "--reason", "右侧有门框", "--by", "王老师")
    assert result.exit_code == 0, result.output
    with db(app).session() as session:
        preset = session.scalar(select(RejectReason).where(RejectReason.code == "background")).text
    sent = fake_wechat.wait_for_messages(1)[-1]["text"]["content"]
    assert sent == messages.REJECTED.format(reason=f"{preset}；右侧有门框")
    assert candidate(app, OPENIDS[1]).state == "photo"


def test_cli_errors_name_what_to_type(cli, app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    result = cli("review", "approve", "110101********9999")
    assert result.exit_code == 1 and "准考证号" in result.output
    result = cli("review", "reject", "012420110001", "--preset", "nonsense")
    assert result.exit_code == 1 and "background" in result.output
    assert candidate(app, OPENIDS[0]).state == "under_review"


def test_unbind_and_transcript_accept_the_exam_number_and_masked_form(cli, app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    shown = cli("transcript", "110101********0118", "王小明")
    assert shown.exit_code == 0, shown.output
    assert f"== {OPENIDS[0]}" in shown.output
    result = cli("unbind", "012420110001", "--by", "张老师")
    assert result.exit_code == 0, result.output
    assert OPENIDS[0] in result.output
    with db(app).session() as session:
        assert session.scalar(select(RosterEntry.bound_openid).where(RosterEntry.id_number == ROWS[0][1])) is None


# --- the queue and its claims ------------------------------------------------------------------------

def test_queue_is_oldest_deadline_first_and_two_reviewers_never_hold_the_same_photo(app, imported):
    for graduate, openid in zip(ROWS, OPENIDS):
        put_under_review(app, graduate, openid)
    with db(app).session() as session:  # 刘芳 paid and uploaded earliest: her deadline comes first
        liu = session.scalar(select(Photo).join(Candidate).where(Candidate.openid == OPENIDS[1]))
        liu.created_at -= timedelta(hours=50)
        for order in session.scalars(select(Order)):
            order.paid_at -= timedelta(hours=50 if order.openid == OPENIDS[1] else 1)
    items = queue(app)
    assert [item.name for item in items] == ["刘芳", "王小明", "陈静"]
    assert items[0].overdue(utcnow()) and not items[1].overdue(utcnow())
    first, second = next_for(app, "甲"), next_for(app, "乙")
    assert first.name == "刘芳" and second.name == "王小明"
    assert next_for(app, "甲").photo_id == first.photo_id  # their own claim again, not a new one
    with db(app).session() as session:  # 乙 cannot decide on 甲's photo
        with pytest.raises(StaffActionError, match="甲"):
            review.decide(session, collector(app).outbox, first.photo_id, "乙", "approved")


def test_an_abandoned_claim_returns_to_the_queue_when_its_lease_runs_out(app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    taken = next_for(app, "甲")
    assert next_for(app, "乙") is None
    later = utcnow() + timedelta(minutes=11)
    again = next_for(app, "乙", now=later)
    assert again.photo_id == taken.photo_id and again.claimed_by == "乙"
    with db(app).session() as session:
        with pytest.raises(StaffActionError, match="乙"):
            review.decide(session, collector(app).outbox, taken.photo_id, "甲", "approved", now=later)


def test_reviewers_asking_at_the_same_moment_never_get_the_same_photo(app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    put_under_review(app, ROWS[1], OPENIDS[1])
    reviewers = [f"审核员{i}" for i in range(4)]
    start = threading.Barrier(len(reviewers))

    def ask(reviewer):
        start.wait()
        item = next_for(app, reviewer)
        return item.photo_id if item else None

    with ThreadPoolExecutor(len(reviewers)) as pool:
        got = list(pool.map(ask, reviewers))
    handed_out = [photo_id for photo_id in got if photo_id is not None]
    assert sorted(handed_out) == sorted(item.photo_id for item in queue(app))  # each photo once, both handed out
    assert len(set(handed_out)) == len(handed_out) == 2


# --- verdicts with an undo period ----------------------------------------------------------------------

def test_a_console_verdict_waits_out_the_grace_period_and_undo_sends_nothing(app, imported, fake_wechat):
    put_under_review(app, ROWS[0], OPENIDS[0])
    item = next_for(app, "甲")
    decision_id = decide(app, item.photo_id, "甲", "rejected", preset="blurry", grace_seconds=30,
                         require_claim=True)
    assert candidate(app, OPENIDS[0]).state == "photo"
    outbox = collector(app).outbox
    assert outbox.sweep() == {}  # not due: nothing may go out during the undo period
    with db(app).session() as session:
        assert review.last_undoable(session, "甲").id == decision_id
        review.undo(session, decision_id, "甲")
    assert candidate(app, OPENIDS[0]).state == "under_review"
    assert photos(app, candidate(app, OPENIDS[0]).roster_entry_id)[0].status == "submitted"
    assert outbox.sweep(utcnow() + timedelta(minutes=5)) == {}
    assert fake_wechat.sent_messages == []
    assert transcript_rows(app, OPENIDS[0])[-1].direction == "in"  # the withdrawn message left no trace
    assert next_for(app, "甲").photo_id == item.photo_id  # back in the reviewer's hands
    decide(app, item.photo_id, "甲", "approved", grace_seconds=30, require_claim=True)
    assert outbox.sweep(utcnow() + timedelta(seconds=31)).get("sent") == 2  # WeChat and SMS
    assert [m["text"]["content"] for m in fake_wechat.messages_to(OPENIDS[0])] == [messages.APPROVED]
    assert [e.action for e in audit_events(app) if e.action.startswith("review.")] == [
        "review.reject", "review.undo", "review.approve"]


def test_undo_is_refused_after_the_grace_period_or_by_someone_else(app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    item = next_for(app, "甲")
    decision_id = decide(app, item.photo_id, "甲", "approved", grace_seconds=30)
    with db(app).session() as session:
        with pytest.raises(StaffActionError, match="自己"):
            review.undo(session, decision_id, "乙")
        with pytest.raises(StaffActionError, match="时限"):
            review.undo(session, decision_id, "甲", now=utcnow() + timedelta(seconds=31))
    assert candidate(app, OPENIDS[0]).state == "approved"


def test_undo_is_refused_once_a_notification_started_going_out(app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    item = next_for(app, "甲")
    decision_id = decide(app, item.photo_id, "甲", "approved", grace_seconds=30)
    with db(app).session() as session:
        for row in session.scalars(select(Notification)):
            row.attempts = 1  # a worker claimed it
    with db(app).session() as session:
        with pytest.raises(StaffActionError, match="已开始发送"):
            review.undo(session, decision_id, "甲")
    assert candidate(app, OPENIDS[0]).state == "approved"


# --- photos sent to review despite the checker -----------------------------------------------------

def test_a_refused_photo_sent_to_review_needs_the_wrong_rule_marked_and_is_listed_as_an_override(
        cli, app, imported, fake_wechat):
    photo_id = refused_photo(app, ROWS[0], OPENIDS[0])
    result = cli("review", "force", str(photo_id), "--why", "浅灰背景，人工看合格", "--by", "客服小李")
    assert result.exit_code == 0, result.output
    assert "已进入审核队列" in result.output
    assert candidate(app, OPENIDS[0]).state == "under_review"
    told = messages.SENT_TO_REVIEW.format(review_hours=48)
    assert fake_wechat.wait_for_messages(1)[-1]["text"]["content"] == told
    [item] = queue(app)
    assert item.photo_id == photo_id and item.refused_rules == ("background.color",)
    blocked = cli("review", "approve", "012420110001")
    assert blocked.exit_code == 1 and "background.color" in blocked.output
    wrong = cli("review", "approve", "012420110001", "--wrong-rule", "face.count")
    assert wrong.exit_code == 1 and "face.count" in wrong.output
    result = cli("review", "approve", "012420110001", "--wrong-rule", "background.color", "--by", "李老师")
    assert result.exit_code == 0, result.output
    assert fake_wechat.wait_for_messages(2)[-1]["text"]["content"] == messages.APPROVED
    with db(app).session() as session:
        [override] = review.overrides(session)
        assert override.decision.overridden_rules == ["background.color"]
        assert override.forced.sent_by == "客服小李" and override.entry.name == "王小明"
    assert "浅灰背景" in audit_events(app, "review.force")[0].detail


def test_a_refused_photo_of_an_unpaid_candidate_waits_for_the_payment(app, imported):
    photo_id = refused_photo(app, ROWS[1], OPENIDS[1], state="photo", paid=False)
    with db(app).session() as session:
        forced = review.send_to_review(session, photo_id, "客服小李", "头发颜色被误判为背景")
        assert forced.paid is False
    assert candidate(app, OPENIDS[1]).state == "payment"
    assert queue(app) == []


def test_only_the_latest_refused_photo_can_be_sent_and_only_once(app, imported):
    photo_id = refused_photo(app, ROWS[0], OPENIDS[0])
    with db(app).session() as session:
        with pytest.raises(StaffActionError, match="原因"):
            review.send_to_review(session, photo_id, "客服小李", "  ")
        review.send_to_review(session, photo_id, "客服小李", "人工复核")
    with db(app).session() as session:
        with pytest.raises(StaffActionError, match="不是被自动检查拒绝"):
            review.send_to_review(session, photo_id, "客服小李", "再来一次")
        with pytest.raises(StaffActionError, match="没有编号"):
            review.send_to_review(session, 999999, "客服小李", "人工复核")


# --- preset reasons -----------------------------------------------------------------------------------

def test_admins_edit_the_preset_reasons_and_a_retired_one_cannot_be_used(app, imported):
    with db(app).session() as session:
        labels = [reason.label for reason in review.reject_reasons(session)]
        assert labels[:6] == ["背景不符合要求", "头部比例不符合要求", "着装不符合要求", "照片模糊", "佩戴饰品/眼镜反光",
                              "非本人近期照片"]
        review.save_reject_reason(session, "管理员", "blurry", "照片模糊", "照片不清楚，请重拍。")
        review.save_reject_reason(session, "管理员", "clothing", "着装不符合要求", "请穿深色有领上衣。", active=False)
        with pytest.raises(StaffActionError, match="代码"):
            review.save_reject_reason(session, "管理员", "Bad Code", "x", "y")
    put_under_review(app, ROWS[0], OPENIDS[0])
    photo_id = queue(app)[0].photo_id
    with db(app).session() as session:
        assert "clothing" not in [reason.code for reason in review.reject_reasons(session)]
        with pytest.raises(StaffActionError, match="没有预设原因"):
            review.decide(session, collector(app).outbox, photo_id, "甲", "rejected", preset="clothing")
    decide(app, photo_id, "甲", "rejected", preset="blurry")
    assert photos(app, candidate(app, OPENIDS[0]).roster_entry_id)[0].review_reason == "照片不清楚，请重拍。"
    assert len(audit_events(app, "review.reason")) == 2


# --- blind second looks and reviewer figures -------------------------------------------------------------

@pytest.mark.parametrize("settings_sections", [{"review": {"second_review_share": 1.0, "undo_seconds": 30}}])
def test_a_drawn_approval_goes_blind_to_another_reviewer_and_a_disagreement_is_listed(app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    put_under_review(app, ROWS[1], OPENIDS[1])
    share = collector(app).settings.review.second_review_share
    first = next_for(app, "甲")
    decide(app, first.photo_id, "甲", "approved", second_share=share, require_claim=True)
    other = next_for(app, "甲")
    assert other.round == "first" and other.photo_id != first.photo_id
    decide(app, other.photo_id, "甲", "rejected", preset="blurry", second_share=share, require_claim=True)
    assert next_for(app, "甲") is None  # never their own approval to check
    second = next_for(app, "乙")
    assert (second.round, second.photo_id) == ("second", first.photo_id)
    with db(app).session() as session:
        review.second_decide(session, second.photo_id, "乙", "rejected", preset="background")
    assert candidate(app, OPENIDS[0]).state == "approved"  # the second look changes nothing for the candidate
    assert next_for(app, "乙") is None
    with db(app).session() as session:
        [disagreement] = review_quality.disagreements(session)
        assert (disagreement.first.reviewer, disagreement.second.reviewer) == ("甲", "乙")
        assert (disagreement.first.verdict, disagreement.second.verdict) == ("approved", "rejected")
        figures = {figure.reviewer: figure for figure in review_quality.reviewer_figures(session)}
    assert (figures["甲"].approved, figures["甲"].rejected, figures["甲"].checked) == (1, 1, 1)
    assert figures["甲"].disagreement_rate == 1.0 and figures["甲"].median_seconds is not None
    assert (figures["乙"].second_looks, figures["乙"].decided, figures["乙"].disagreement_rate) == (1, 0, None)


def test_no_approval_is_drawn_at_share_zero_and_cli_decisions_have_no_claim_time(cli, app, imported):
    put_under_review(app, ROWS[0], OPENIDS[0])
    assert cli("review", "approve", "012420110001", "--by", "李老师").exit_code == 0
    assert next_for(app, "乙") is None
    with db(app).session() as session:
        [figures] = review_quality.reviewer_figures(session)
    assert (figures.reviewer, figures.approved, figures.median_seconds, figures.disagreement_rate) == (
        "李老师", 1, None, None)
