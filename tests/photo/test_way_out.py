"""Issue 12 through the webhook: a refused candidate is never stuck. Two refusals by rules that can be
wrong offer 申请人工审核 (the photo reaches the review queue flagged, the reviewer's per-rule verdict
feeds `flask photo stats`); a photo whose only problem is framing or lying on its side is offered
re-framed, taken with "1", with the original and the re-framed file both kept."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image
from sqlalchemy import select

from staff import review
from store.models import Photo

LARGE_COMPLIANT = "ppp_008_blue_960x1280_ok.jpg"
WRONG_BACKGROUND = "webmorph_172_03_bg_beige.jpg"  # background.color: a rule that can be wrong
TOO_SMALL_FILE = "webmorph_021_03_q5.jpg"  # file.size: a rule that cannot


def collector(app):
    return app.extensions["collector"]


def photos_of(app, openid: str) -> list[Photo]:
    from store.queries import find_candidate

    with collector(app).db.session() as session:
        candidate = find_candidate(session, openid)
        rows = list(session.scalars(select(Photo).where(Photo.candidate_id == candidate.id).order_by(Photo.id)))
        session.expunge_all()
        return rows


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def off_centre(photo) -> bytes:
    """A compliant 960×1280 portrait with 300 px more background on its right: the person stands
    off centre in a picture too wide for 3:4, and a 3:4 crop around the head fits inside it."""
    src = np.asarray(Image.open(io.BytesIO(photo(LARGE_COMPLIANT))).convert("RGB"))
    background = tuple(int(v) for v in src[5, 5])
    return jpeg_bytes(cv2.copyMakeBorder(src, 0, 0, 0, 300, cv2.BORDER_CONSTANT, value=background))


def test_two_false_refusals_offer_a_human_review_and_the_reviewer_sees_the_flag(app, chat, roster, photo,
                                                                                  fake_wechat):
    chat.walk_to_photo(roster[0])
    first = chat.send_photo(photo(WRONG_BACKGROUND))
    assert "背景是" in first and "浅蓝色、白色或浅灰色" in first, first  # the colour found, the three allowed
    assert "申请人工审核" not in first  # once is not yet a pattern
    second = chat.send_photo(photo(WRONG_BACKGROUND))
    assert "申请人工审核" in second and "也可能不通过" in second, second

    reply = chat.say("申请人工审核")
    assert "审核仍可能不通过" in reply and "/pay/sandbox/" in reply, reply
    assert chat.state() == "payment"
    assert chat.pay(chat.pay_link(reply)).status_code == 200
    assert chat.state() == "under_review"

    refused = photos_of(app, chat.openid)
    assert [p.status for p in refused] == ["checked", "submitted"]
    with collector(app).db.session() as session:
        queue = review.review_queue(session, 48)
        assert [(item.photo_id, item.refused_rules) for item in queue] == [(refused[1].id, ("background.color",))]
        screen = review.photo_screen(session, refused[1].id)
        assert screen.forced is not None and screen.forced.sent_by == "考生本人"
        assert "申请人工审核" in screen.forced.why and "background.color" in screen.forced.why

    with collector(app).db.session() as session:
        review.decide(session, collector(app).outbox, refused[1].id, "审核员甲", "approved",
                      wrong_rules=("background.color",))
        session.commit()
    result = app.test_cli_runner().invoke(args=["photo", "stats"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("background.color"))
    # refused, reviewed, found wrong, upheld, error rate, unsure hints
    assert row.split()[1:] == ["2", "1", "1", "0", "100%", "0"], result.output


def test_refusals_a_reviewer_cannot_overturn_offer_no_human_review(chat, roster, photo):
    chat.walk_to_photo(roster[0])
    chat.send_photo(photo(TOO_SMALL_FILE))
    second = chat.send_photo(photo(TOO_SMALL_FILE))
    assert "申请人工审核" not in second
    reply = chat.say("申请人工审核")
    assert "文件格式、像素和人数问题除外" in reply
    assert chat.state() == "photo"


def test_an_off_centre_photo_is_offered_re_framed_and_taken_with_1(app, chat, roster, photo, fake_wechat):
    chat.walk_to_photo(roster[0])
    original = off_centre(photo)
    reply = chat.send_photo(original)
    assert "回复 1 使用调整后的照片" in reply and "没有居中" in reply, reply
    sent = fake_wechat.wait_for_messages(1)
    images = [m for m in sent if m["touser"] == chat.openid and m.get("msgtype") == "image"]
    assert len(images) == 1
    offered = fake_wechat.uploaded_media[images[0]["image"]["media_id"]]
    with Image.open(io.BytesIO(offered)) as im:
        assert im.size == (480, 640) and im.format == "JPEG"

    reply = chat.say("1")
    assert "已使用调整后的照片" in reply and "/pay/sandbox/" in reply, reply
    assert chat.state() == "payment"
    kept = photos_of(app, chat.openid)
    assert [p.status for p in kept] == ["checked", "submitted"]
    files = collector(app).services.photo_files
    assert files.read(kept[0].path) == original  # the candidate's photo, untouched
    assert files.read(kept[1].path) == offered  # the re-framed one they accepted
    assert kept[1].report["reframed_from"] == kept[0].id and kept[1].verdict == "pass"


def test_a_compliant_photo_on_its_side_is_named_and_offered_upright(app, chat, roster, photo, fake_wechat):
    chat.walk_to_photo(roster[0])
    src = np.asarray(Image.open(io.BytesIO(photo(LARGE_COMPLIANT))).convert("RGB"))
    reply = chat.send_photo(jpeg_bytes(np.ascontiguousarray(np.rot90(src, 1))))
    assert "横躺" in reply and "回复 1 使用调整后的照片" in reply, reply
    assert "歪了" not in reply and "横版" not in reply  # nothing judged on the photo lying on its side
    fake_wechat.wait_for_messages(1)
    assert "/pay/sandbox/" in chat.say("1")


def test_1_without_an_offer_asks_for_a_photo(chat, roster):
    chat.walk_to_photo(roster[0])
    assert "没有可用的调整后照片" in chat.say("1")
    assert chat.state() == "photo"



def test_at_the_payment_step_1_takes_the_re_framed_copy_of_a_newer_upload(app, chat, roster, photo, fake_wechat):
    chat.walk_to_photo(roster[0])
    assert "/pay/sandbox/" in chat.send_photo(photo(LARGE_COMPLIANT))
    reply = chat.send_photo(off_centre(photo))
    assert "回复 1 使用调整后的照片" in reply and "申请人工审核" not in reply, reply
    assert "已使用调整后的照片" in chat.say("1")
    assert [p.status for p in photos_of(app, chat.openid)] == ["replaced", "checked", "submitted"]
    assert "/pay/sandbox/" in chat.say("1")  # no offer left: the payment step answers as before
