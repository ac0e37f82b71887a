"""A candidate's whole journey over the real webhook: signed WeChat XML in, passive replies out."""
from __future__ import annotations

import messages


def test_subscribe_greets_and_asks_for_the_institution(chat):
    reply = chat.subscribe()
    assert "毕业证书照片采集" in reply
    assert "北京市高等教育自学考试" in reply
    assert chat.state() == "institution"


def test_happy_path_from_subscribe_to_approved(chat, roster, photo, app, fake_wechat):
    graduate = roster[0]
    chat.subscribe()
    reply = chat.say("北京市高等教育自学考试")
    assert "1 专科" in reply and "2 本科" in reply
    reply = chat.say("2")
    assert "本科" in reply and "身份证号" in reply
    reply = chat.say(f"{graduate['name']} {graduate['id_number']}")
    assert "手机号" in reply
    reply = chat.say("13800138000")
    assert "准考证号：012401234567" in reply
    assert "110101********4573" in reply
    assert graduate["id_number"] not in reply
    reply = chat.say("确认")
    assert "图像采集码" in reply and "我知道了" in reply
    reply = chat.say("我知道了")
    assert "请发送本人标准证件照" in reply
    reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert "检查通过" in reply, reply
    assert chat.state() == "payment"
    response = chat.pay(chat.pay_link(reply))
    assert response.status_code == 200
    assert "已支付" in response.get_data(as_text=True)
    assert chat.state() == "under_review"
    fake_wechat.wait_for_messages(1)
    assert any("支付成功" in text for text in chat.customer_service_texts())
    assert "审核中" in chat.say("在吗")
