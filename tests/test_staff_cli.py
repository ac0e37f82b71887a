"""The staff commands, driven through the real Flask CLI against a migrated database and a fake WeChat API.

Set TEST_DATABASE_URL to run them on PostgreSQL (conftest drops every table and migrates per test)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

import messages
from app import create_app
from staff.cli import DEMO_ROSTER
from store import queries
from tests.conftest import AES_KEY, APPID, SECRET, TOKEN
from tests.journey import write_config
from tests.staff_fixtures import (HEADER, PHONE, ROWS, audit_events, candidate, db, entry, orders, photos,
                                  put_under_review, transcript_rows, write_csv, write_xlsx)

OPENID = "o_staff_test_1"


# --- flask db ------------------------------------------------------------------------------------

def test_db_upgrade_creates_the_sqlite_folder_and_downgrade_drops_the_tables(tmp_path, database_url, fake_wechat):
    url = database_url if not database_url.startswith("sqlite") else f"sqlite:///{tmp_path / 'new' / 'dir' / 't.db'}"
    config = write_config(tmp_path, database_url=url, api_base_url=fake_wechat.base_url, token=TOKEN, appid=APPID,
                          secret=SECRET, aes_key=AES_KEY, sections={})
    app = create_app(config)
    runner = app.test_cli_runner()
    try:
        result = runner.invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "roster_entries" in _tables(url)
        result = runner.invoke(args=["db", "downgrade", "base"])
        assert result.exit_code == 0, result.output
        assert "roster_entries" not in _tables(url)
        assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    finally:
        app.extensions["collector"].db.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- flask roster import ------------------------------------------------------------------------

def test_csv_import_adds_rows_and_a_second_import_changes_nothing(cli, app, tmp_path):
    path = write_csv(tmp_path / "roster.csv", ROWS)
    first = cli("roster", "import", str(path))
    assert first.exit_code == 0, first.output
    assert "新增 3，更新 0，未变 0，拒绝 0" in first.output
    second = cli("roster", "import", str(path))
    assert "新增 0，更新 0，未变 3，拒绝 0" in second.output
    stored = entry(app, ROWS[0][1])
    assert (stored.name, stored.exam_number, stored.level, stored.major) == ("王小明", "012420110001", "本科", "汉语言文学")
    assert len(audit_events(app, "roster.import")) == 2


def test_xlsx_import_with_columns_in_any_order_and_padded_headers(cli, app, tmp_path):
    header = [" 专业 ", "姓名", "学历层次", " 身份证号", "准考证号 "]
    rows = [[major, name, level, id_number, exam] for name, id_number, exam, level, major in ROWS]
    rows.append([None, None, None, None, None])  # a blank row at the end of the sheet
    result = cli("roster", "import", str(write_xlsx(tmp_path / "roster.xlsx", rows, header=header)))
    assert result.exit_code == 0, result.output
    assert "新增 3，更新 0，未变 0，拒绝 0" in result.output
    assert entry(app, ROWS[2][1]).major == "计算机科学与技术"
    again = cli("roster", "import", str(write_csv(tmp_path / "roster.csv", ROWS)))
    assert "新增 0，更新 0，未变 3，拒绝 0" in again.output


def test_an_id_number_saved_as_an_excel_number_is_rejected_not_guessed(cli, app, tmp_path):
    rows = [list(ROWS[0]), list(ROWS[1])]
    rows[1][1] = float(rows[1][1])  # what Excel keeps when the column is not formatted as text
    result = cli("roster", "import", str(write_xlsx(tmp_path / "roster.xlsx", rows)))
    assert "新增 1，更新 0，未变 0，拒绝 1" in result.output, result.output
    assert "第3行：身份证号在Excel中存成了数字" in result.output


def test_gb18030_csv_as_saved_by_excel_in_china(cli, app, tmp_path):
    path = write_csv(tmp_path / "roster.csv", ROWS, encoding="gb18030")
    result = cli("roster", "import", str(path))
    assert "新增 3" in result.output, result.output
    assert entry(app, ROWS[1][1]).name == "刘芳"


def test_csv_with_a_byte_order_mark(cli, app, tmp_path):
    path = write_csv(tmp_path / "roster.csv", ROWS, encoding="utf-8-sig")
    assert (tmp_path / "roster.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    result = cli("roster", "import", str(path))
    assert "新增 3" in result.output, result.output


def test_each_rejection_is_reported_with_its_spreadsheet_row_number(cli, app, tmp_path):
    rows = [
        ROWS[0],                                                              # row 2: fine
        ["Tom", "110102199807250225", "012420110002", "专科", "会计"],          # row 3: name
        ["陈静", "110105199301080468", "012420110003", "本科", "法学"],          # row 4: checksum
        ["赵磊", "110108200004300317", "012420110004", "硕士", "会计"],          # row 5: level
        ["孙丽娜", "130102199611190623", "", "本科", "法学"],                    # row 6: exam number
        ["周建国", "110106198909010151", "012420110006", "专科", ""],           # row 7: major
        ["李雷", "110101199003074573", "012400000001", "本科", "法学"],          # row 8: duplicate of row 9
        ["韩梅梅", "110101199003074573", "012400000002", "本科", "法学"],        # row 9
        ["钱多", "11010119900307457", "012400000003", "本科", "法学"],           # row 10: length
    ]
    result = cli("roster", "import", str(write_csv(tmp_path / "roster.csv", rows)))
    assert result.exit_code == 0, result.output
    assert "新增 1，更新 0，未变 0，拒绝 8" in result.output
    expected = {
        3: "姓名无效", 4: "id.checksum", 5: "学历层次“硕士”无效", 6: "准考证号为空", 7: "专业为空",
        8: "重复（第8、9行）", 9: "重复（第8、9行）", 10: "id.length",
    }
    for row_number, reason in expected.items():
        line = next(line for line in result.output.splitlines() if line.strip().startswith(f"第{row_number}行"))
        assert reason in line, line
    assert entry(app, "110101199003074573") is None
    assert entry(app, "110102199807250225") is None


def test_a_missing_column_is_named_and_nothing_is_written(cli, app, tmp_path):
    header = [title for title in HEADER if title != "准考证号"]
    rows = [[name, id_number, level, major] for name, id_number, _, level, major in ROWS]
    result = cli("roster", "import", str(write_csv(tmp_path / "roster.csv", rows, header=header)))
    assert result.exit_code == 1
    assert "准考证号" in result.output
    assert entry(app, ROWS[0][1]) is None


def test_an_unreadable_file_writes_nothing(cli, app, tmp_path):
    bad = tmp_path / "roster.xlsx"
    bad.write_bytes(b"not a zip file at all")
    result = cli("roster", "import", str(bad))
    assert result.exit_code == 1
    assert "not a readable XLSX" in result.output
    assert cli("roster", "import", str(tmp_path / "missing.csv")).exit_code == 1
    assert audit_events(app, "roster.import") == []


def test_an_update_keeps_the_wechat_binding(cli, app, imported, tmp_path):
    with db(app).session() as session:
        assert queries.bind(session, queries.roster_by_id_number(session, ROWS[0][1]), OPENID)
    changed = [list(row) for row in ROWS]
    changed[0][4] = "汉语国际教育"
    result = cli("roster", "import", str(write_csv(tmp_path / "roster2.csv", changed)))
    assert "新增 0，更新 1，未变 2，拒绝 0" in result.output
    stored = entry(app, ROWS[0][1])
    assert stored.major == "汉语国际教育"
    assert stored.bound_openid == OPENID


# --- flask review -----------------------------------------------------------------------------------

def test_approve_delivers_the_message_and_records_it(cli, app, imported, fake_wechat):
    entry_id = put_under_review(app, ROWS[0], OPENID)
    result = cli("review", "approve", ROWS[0][1], "--by", "李老师")
    assert result.exit_code == 0, result.output
    assert "已通过" in result.output and "110101********0118" in result.output
    sent = fake_wechat.wait_for_messages(1)
    assert sent[-1]["touser"] == OPENID
    assert sent[-1]["text"]["content"] == messages.APPROVED
    photo = photos(app, entry_id)[0]
    assert (photo.status, photo.reviewed_by) == ("approved", "李老师")
    assert photo.reviewed_at is not None
    assert candidate(app, OPENID).state == "approved"
    row = transcript_rows(app, OPENID)[-1]
    assert (row.direction, row.channel, row.content) == ("out", "custom", messages.APPROVED)
    assert (row.state_before, row.state_after) == ("under_review", "approved")
    assert row.delivery_error is None
    assert [event.actor for event in audit_events(app, "review.approve")] == ["李老师"]


def test_reject_sends_the_reason_and_asks_for_a_new_photo_without_a_new_payment(cli, app, imported, fake_wechat):
    entry_id = put_under_review(app, ROWS[1], OPENID)
    result = cli("review", "reject", ROWS[1][1], "--reason", "背景有阴影", "--by", "王老师")
    assert result.exit_code == 0, result.output
    sent = fake_wechat.wait_for_messages(1)
    assert sent[-1]["text"]["content"] == messages.REJECTED.format(reason="背景有阴影")
    photo = photos(app, entry_id)[0]
    assert (photo.status, photo.review_reason, photo.reviewed_by) == ("rejected", "背景有阴影", "王老师")
    assert candidate(app, OPENID).state == "photo"
    assert [order.status for order in orders(app, entry_id)] == ["paid"]
    row = transcript_rows(app, OPENID)[-1]
    assert (row.channel, row.state_before, row.state_after) == ("custom", "under_review", "photo")
    assert "背景有阴影" in audit_events(app, "review.reject")[0].detail


@pytest.mark.parametrize("args, message", [
    (["review", "approve", "110101199003074573"], "名单中没有"),
    (["review", "approve", ROWS[2][1]], "尚未绑定"),
    (["review", "reject", ROWS[2][1], "--reason", "模糊"], "尚未绑定"),
    (["review", "reject", ROWS[0][1], "--reason", "  "], "原因"),
])
def test_review_errors_exit_1(cli, app, imported, args, message):
    put_under_review(app, ROWS[0], OPENID)
    result = cli(*args)
    assert result.exit_code == 1
    assert message in result.output
    assert candidate(app, OPENID).state == "under_review"


def test_review_refuses_a_candidate_not_under_review_and_changes_nothing(cli, app, imported, fake_wechat):
    entry_id = put_under_review(app, ROWS[0], OPENID, state="payment")
    result = cli("review", "approve", ROWS[0][1])
    assert result.exit_code == 1
    assert "不在审核中" in result.output and "payment" in result.output
    assert photos(app, entry_id)[0].status == "submitted"
    assert candidate(app, OPENID).state == "payment"
    assert transcript_rows(app, OPENID)[-1].direction == "in"
    assert audit_events(app, "review.approve") == []
    assert fake_wechat.sent_messages == []


def test_a_photo_cannot_be_reviewed_twice(cli, app, imported, fake_wechat):
    put_under_review(app, ROWS[0], OPENID)
    assert cli("review", "approve", ROWS[0][1]).exit_code == 0
    again = cli("review", "reject", ROWS[0][1], "--reason", "模糊")
    assert again.exit_code == 1
    assert "不在审核中" in again.output
    fake_wechat.wait_for_messages(1)
    assert len(fake_wechat.sent_messages) == 1


def test_pending_lists_candidates_under_review_with_masked_id_numbers(cli, app, imported):
    put_under_review(app, ROWS[0], OPENID)
    put_under_review(app, ROWS[1], "o_staff_test_2")
    put_under_review(app, ROWS[2], "o_staff_test_3", state="payment")
    result = cli("review", "pending")
    assert result.exit_code == 0, result.output
    assert "110101********0118" in result.output and ROWS[0][1] not in result.output
    assert "110102********0225" in result.output
    assert "陈静" not in result.output
    assert result.output.index("王小明") < result.output.index("刘芳")
    assert "glasses" in result.output
    assert "共 2 人待审核" in result.output


def test_pending_with_nobody_waiting(cli):
    assert "没有待审核的照片" in cli("review", "pending").output


# --- flask unbind ---------------------------------------------------------------------------------

def test_unbind_frees_the_graduate_for_another_account(cli, app, imported):
    entry_id = put_under_review(app, ROWS[0], OPENID)
    with db(app).session() as session:
        assert not queries.bind(session, queries.roster_by_id_number(session, ROWS[0][1]), "o_new_phone")
    result = cli("unbind", ROWS[0][1], "--by", "张老师")
    assert result.exit_code == 0, result.output
    assert OPENID in result.output
    old = candidate(app, OPENID)
    assert old.state == "welcome"
    assert (old.level, old.name, old.id_number, old.phone, old.roster_entry_id) == (None,) * 5
    assert entry(app, ROWS[0][1]).bound_openid is None
    with db(app).session() as session:
        assert queries.bind(session, queries.roster_by_id_number(session, ROWS[0][1]), "o_new_phone")
    assert entry(app, ROWS[0][1]).bound_openid == "o_new_phone"
    assert [order.status for order in orders(app, entry_id)] == ["paid"]
    assert len(photos(app, entry_id)) == 1
    assert audit_events(app, "roster.unbind")[0].actor == "张老师"


def test_transcript_by_id_number_still_finds_the_unbound_account(cli, app, imported):
    put_under_review(app, ROWS[0], OPENID)
    assert cli("unbind", ROWS[0][1]).exit_code == 0
    result = cli("transcript", ROWS[0][1])
    assert result.exit_code == 0, result.output
    assert f"== {OPENID}" in result.output


def test_unbind_of_an_unbound_graduate_is_an_error(cli, app, imported):
    result = cli("unbind", ROWS[1][1])
    assert result.exit_code == 1
    assert "没有绑定" in result.output
    assert audit_events(app, "roster.unbind") == []


# --- flask transcript -------------------------------------------------------------------------------

def test_transcript_is_masked_by_default(cli, app, imported, fake_wechat):
    put_under_review(app, ROWS[0], OPENID)
    fake_wechat.fail_next_sends(1)
    assert cli("review", "approve", ROWS[0][1]).exit_code == 0
    _wait_for_delivery_error(app, OPENID)
    result = cli("transcript", OPENID)
    assert result.exit_code == 0, result.output
    output = result.output
    assert ROWS[0][1] not in output and PHONE not in output
    assert "110101********0118" in output and "139****5678" in output
    assert "under_review → approved" in output
    assert str(app.extensions["collector"].services.photo_files.path("ab/ab/" + "ab" * 32)) in output
    assert "photo pass, hints: glasses" in output
    assert "发送失败" in output and "45015" in output
    assert audit_events(app, "transcript.unmasked") == []


def test_transcript_by_id_number_and_unmasked_is_audited(cli, app, imported):
    put_under_review(app, ROWS[0], OPENID)
    result = cli("transcript", ROWS[0][1], "--unmasked", "--by", "赵老师")
    assert result.exit_code == 0, result.output
    assert ROWS[0][1] in result.output and PHONE in result.output
    assert f"== {OPENID}" in result.output
    events = audit_events(app, "transcript.unmasked")
    assert [(event.actor, event.target) for event in events] == [("赵老师", f"roster_entry:{entry(app, ROWS[0][1]).id}")]


def test_transcript_of_an_unknown_account_is_an_error(cli):
    result = cli("transcript", "o_nobody")
    assert result.exit_code == 1
    assert "没有找到" in result.output


def _wait_for_delivery_error(app, openid: str, timeout: float = 5.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if transcript_rows(app, openid)[-1].delivery_error:
            return
        time.sleep(0.05)
    raise AssertionError("the failed delivery was never recorded")


# --- flask support ----------------------------------------------------------------------------------

def test_support_queue_and_done(cli, app, imported):
    put_under_review(app, ROWS[0], OPENID)
    assert "没有等待人工客服" in cli("support", "queue").output
    with db(app).session() as session:
        queries.find_candidate(session, OPENID).human_requested_at = queries.utcnow()
    queue = cli("support", "queue")
    assert OPENID in queue.output and "王小明" in queue.output
    assert ROWS[0][1] not in queue.output
    done = cli("support", "done", OPENID, "--by", "客服小李")
    assert done.exit_code == 0, done.output
    assert candidate(app, OPENID).human_requested_at is None
    assert "没有等待人工客服" in cli("support", "queue").output
    again = cli("support", "done", OPENID)
    assert again.exit_code == 1 and "不在人工客服队列" in again.output


# --- flask demo seed ---------------------------------------------------------------------------------

def test_demo_seed_loads_six_graduates_and_suggests_one(cli, app):
    result = cli("demo", "seed")
    assert result.exit_code == 0, result.output
    assert "新增 6，更新 0，未变 0，拒绝 0" in result.output
    first = DEMO_ROSTER.read_text(encoding="utf-8").splitlines()[1].split(",")
    assert f"{first[0]} {first[1]}" in result.output
    levels = {line.split(",")[3] for line in DEMO_ROSTER.read_text(encoding="utf-8").splitlines()[1:]}
    assert levels == {"专科", "本科"}
    assert "未变 6" in cli("demo", "seed").output
