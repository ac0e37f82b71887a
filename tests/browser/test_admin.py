"""An admin in real Chromium: uploads a roster with bad rows (sees them before committing), builds a hand-over
batch and downloads it (the test opens the zip and the manifest), and reads the overview's funnel for
candidates the test drove through the real webhook, payment page and review command. A reviewer may not
open the hand-over or download a batch."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

from openpyxl import load_workbook
from sqlalchemy import func, select

from store.models import HandoverBatch, Photo, RosterEntry
from tests.browser.conftest import shoot, sign_in
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat

BAD_ROWS = [
    ["王小明", "110101199503120119", "012420110009", "本科", "法学"],  # check digit wrong
    ["刘芳", "110102199807250225", "012420110002", "硕士", "工商企业管理"],  # no such level
]
PHOTOS = {"张三": "webmorph_004_03_blue_ok.jpg", "阿依古丽·买买提": "webmorph_019_03_blue_ok.jpg",
          "李四": "webmorph_004_03_blue_ok.jpg"}


def roster_csv(path):
    rows = [["姓名", "身份证号", "准考证号", "学历层次", "专业"]]
    rows += [[g["name"], g["id_number"], g["exam_number"], g["level"], g["major"]] for g in GRADUATES]
    rows += BAD_ROWS
    path.write_text("\n".join(",".join(row) for row in rows) + "\n", encoding="utf-8")
    return path


def roster_size(app) -> int:
    with app.extensions["collector"].db.session() as session:
        return session.scalar(select(func.count()).select_from(RosterEntry))


def counts_on(page, table: str) -> dict[str, str]:
    return {cell.get_attribute("data-count"): cell.inner_text().strip()
            for cell in page.locator(f"#{table} td[data-count]").all()}


def upload_roster(page, console, tmp_path) -> None:
    page.goto(f"{console.url}/staff/roster")
    page.set_input_files("input[name=file]", str(roster_csv(tmp_path / "名单.csv")))
    page.click("text=检查文件")
    assert "尚未导入" in page.inner_text("#roster-stage")
    assert counts_on(page, "roster-counts") == {"added": "3", "updated": "0", "unchanged": "0", "rejected": "2"}
    rejections = page.inner_text("#rejections")
    assert "第5行" in rejections and "校验位" in rejections
    assert "第6行" in rejections and "学历层次“硕士”无效" in rejections
    assert roster_size(console.app) == 0  # the dry run wrote nothing
    shoot(page, "roster-upload-preview")

    page.click("text=确认导入")
    assert "已导入" in page.inner_text("#roster-stage")
    assert counts_on(page, "roster-counts") == {"added": "3", "updated": "0", "unchanged": "0", "rejected": "2"}
    assert roster_size(console.app) == 3
    shoot(page, "roster-upload-done")


def drive_candidates(console, fake_wechat, photo) -> dict[str, bytes]:
    """张三 and 阿依古丽 (本科) are approved; 李四 (专科) has paid and waits; one account only followed.
    Returns the bytes of the approved photos by 准考证号."""
    import rules.photo

    sent = {name: photo(file) for name, file in PHOTOS.items()}
    rules.photo.warm_up()  # the first photo is answered within the reply budget, not deferred
    wechat = simulator_for(console.app)
    Chat(console.app, wechat, fake_wechat, "o_admin_follower").subscribe()
    approved = {}
    for n, graduate in enumerate((GRADUATES[0], GRADUATES[2], GRADUATES[1])):
        chat = Chat(console.app, wechat, fake_wechat, f"o_admin_{n}")
        chat.walk_to_photo(graduate)
        assert chat.pay(chat.pay_link(chat.send_photo(sent[graduate["name"]]))).status_code == 200
        assert chat.state() == "under_review"
        if graduate["level"] == "本科":
            result = console.app.test_cli_runner().invoke(args=["review", "approve", graduate["id_number"],
                                                                "--by", "审核员甲"])
            assert result.exit_code == 0, result.output
            approved[graduate["exam_number"]] = sent[graduate["name"]]
    return approved


def test_admin_uploads_a_roster_builds_and_downloads_a_batch_and_reads_the_overview(
        console, page, tmp_path, fake_wechat, photo):
    console.add_user("admin1", "admin")
    sign_in(page, console.url, "admin1")
    upload_roster(page, console, tmp_path)
    approved = drive_candidates(console, fake_wechat, photo)

    page.goto(f"{console.url}/staff/handover")
    assert page.inner_text("#waiting") == "2"
    page.click("#build")
    assert "报送批次 1 已开始生成" in page.inner_text("main")
    # Jobs run at once in tests; with a consumer the table refreshes itself until the batch is ready.
    assert [cell.inner_text() for cell in page.locator("#batches tbody tr").first.locator("td").all()[3:5]] == \
        ["已生成", "2"]
    assert page.inner_text("#waiting") == "0"
    shoot(page, "handover")
    with page.expect_download() as download_info:
        page.click("#batches >> text=下载")
    downloaded = tmp_path / "batch.zip"
    download_info.value.save_as(downloaded)

    with zipfile.ZipFile(downloaded) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = load_workbook(io.BytesIO(files.pop("manifest.xlsx")), read_only=True).worksheets[0]
    rows = [list(row) for row in manifest.iter_rows(values_only=True)]
    assert files == {f"photos/{exam_number}.jpg": data for exam_number, data in approved.items()}
    with console.app.extensions["collector"].db.session() as session:
        stored = set(session.scalars(select(Photo.sha256).where(Photo.status == "approved")))
    assert len(rows) == 3 and rows[0][-2:] == ["文件名", "SHA-256"]
    assert {row[7]: row[8] for row in rows[1:]} == {
        f"{exam_number}.jpg": hashlib.sha256(data).hexdigest() for exam_number, data in approved.items()}
    assert {row[8] for row in rows[1:]} == stored
    assert {row[0] for row in rows[1:]} == {"张三", "阿依古丽·买买提"}

    page.goto(f"{console.url}/staff/overview")
    funnel = {row.get_attribute("data-level"): [cell.inner_text() for cell in row.locator("td[data-step]").all()]
              for row in page.locator("#funnel tbody tr").all()}
    assert funnel["本科"] == ["2", "2", "2", "2", "2", "2"]
    assert funnel["专科"] == ["1", "1", "1", "1", "1", "0"]
    assert funnel["未选择"] == ["1", "0", "0", "0", "0", "0"]
    assert funnel["合计"] == ["4", "3", "3", "3", "3", "2"]
    assert page.locator(".chart svg").count() >= 2
    charts = "".join(chart.inner_html() for chart in page.locator(".chart").all())
    assert "<script" not in charts and "src=" not in charts and "href=\"http" not in charts  # nothing from outside
    assert "审核员甲" in page.inner_text("#reviewers")
    shoot(page, "overview")


def test_a_reviewer_cannot_open_the_hand_over_nor_download_a_batch(console, page, tmp_path):
    console.add_user("reviewer1", "reviewer")
    sign_in(page, console.url, "reviewer1")
    for path in ("/staff/handover", "/staff/handover/1/download", "/staff/roster"):
        response = page.goto(f"{console.url}{path}")
        assert response.status == 403, path
        assert "没有权限" in page.inner_text("body")
    assert page.goto(f"{console.url}/staff/overview").status == 200
    token = json.loads(page.get_attribute("body", "hx-headers"))["X-CSRFToken"]
    refused = page.request.post(f"{console.url}/staff/handover/build", headers={"X-CSRFToken": token})
    assert refused.status == 403  # a valid form, the wrong role
    with console.app.extensions["collector"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(HandoverBatch)) == 0
