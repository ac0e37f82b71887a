"""The fake WeChat API, exercised through wechatpy's real WeChatClient and plain HTTP."""
import io
import json
import threading
import time

import pytest
import requests
from wechatpy.exceptions import WeChatClientException

from bot.access_token import MemoryTokenStore
from bot.client import ConfigurableWeChatClient
from standins.wechat_api import FakeWeChatAPI

from tests.conftest import APPID, SECRET

OPENID = "o_test_user_000000000000001"


@pytest.fixture
def fake(fake_wechat):
    return fake_wechat


@pytest.fixture
def client(fake):
    return ConfigurableWeChatClient(APPID, SECRET, fake.base_url, timeout=5)


def get_json(fake, endpoint, **params):
    response = requests.get(fake.base_url + endpoint, params=params, timeout=5)
    assert response.status_code == 200
    return response.json()


def test_base_url_is_loopback_on_the_chosen_port(fake):
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/cgi-bin/"
    assert fake.port > 0


def test_base_url_needs_a_running_server():
    with pytest.raises(RuntimeError):
        FakeWeChatAPI(APPID, SECRET).base_url


def test_token_endpoint_checks_credentials(fake):
    good = get_json(fake, "token", grant_type="client_credential", appid=APPID, secret=SECRET)
    assert good["expires_in"] == 7200 and good["access_token"]
    assert get_json(fake, "token", grant_type="client_credential", appid="wx_other", secret=SECRET) == {
        "errcode": 40013,
        "errmsg": "invalid appid",
    }
    assert get_json(fake, "token", grant_type="client_credential", appid=APPID, secret="nope") == {
        "errcode": 40125,
        "errmsg": "invalid appsecret",
    }
    assert fake.token_fetches == 1


@pytest.mark.parametrize(
    "params, errcode",
    [({}, 41001), ({"access_token": "made-up"}, 40001)],
)
def test_other_endpoints_check_the_access_token(fake, params, errcode):
    media_id = fake.add_media(b"jpeg")
    assert get_json(fake, "media/get", media_id=media_id, **params)["errcode"] == errcode


def test_expired_token_is_reported_as_such(fake):
    token = get_json(fake, "token", grant_type="client_credential", appid=APPID, secret=SECRET)["access_token"]
    fake.expire_tokens()
    assert get_json(fake, "media/get", access_token=token, media_id="x") == {
        "errcode": 42001,
        "errmsg": "access_token expired",
    }


def test_download_returns_bytes_and_headers_like_wechat(fake, client):
    media_id = fake.add_media(b"\xff\xd8jpeg bytes", filename="me.jpg")
    response = client.media.download(media_id)
    assert response.content == b"\xff\xd8jpeg bytes"
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Content-disposition"] == 'attachment; filename="me.jpg"'
    assert ("GET", "/cgi-bin/media/get") in fake.requests


def test_unknown_media_id_raises_40007(client):
    with pytest.raises(WeChatClientException) as caught:
        client.media.download("no-such-media")
    assert caught.value.errcode == 40007
    assert caught.value.errmsg == "invalid media_id"


def test_slow_media_delays_only_its_own_download(fake, client):
    slow = fake.add_media(b"slow", delay=0.5)
    quick = fake.add_media(b"quick")
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        ConfigurableWeChatClient(APPID, SECRET, fake.base_url, timeout=0.2).media.download(slow)
    assert client.media.download(quick).content == b"quick"
    assert time.monotonic() - started < 2


def test_upload_stores_the_file_and_returns_a_media_id(fake, client):
    result = client.media.upload("image", ("reply.jpg", io.BytesIO(b"uploaded jpeg"), "image/jpeg"))
    assert result["type"] == "image"
    assert isinstance(result["created_at"], int)
    assert fake.uploaded_media == {result["media_id"]: b"uploaded jpeg"}
    assert client.media.download(result["media_id"]).content == b"uploaded jpeg"


def test_upload_rejects_an_unknown_type(client):
    with pytest.raises(WeChatClientException) as caught:
        client.media.upload("pdf", io.BytesIO(b"x"))
    assert caught.value.errcode == 40004


def test_custom_send_records_text_and_image_messages(fake, client):
    assert client.message.send_text(OPENID, "你好") == {"errcode": 0, "errmsg": "ok"}
    media_id = client.media.upload("image", ("a.jpg", io.BytesIO(b"img"), "image/jpeg"))["media_id"]
    client.message.send_image(OPENID, media_id)
    client.message.send_text("o_someone_else", "hi")
    assert fake.messages_to(OPENID) == [
        {"touser": OPENID, "msgtype": "text", "text": {"content": "你好"}},
        {"touser": OPENID, "msgtype": "image", "image": {"media_id": media_id}},
    ]
    assert len(fake.sent_messages) == 3


@pytest.mark.parametrize(
    "body, errcode",
    [
        (b"", 44002),
        (b"{not json", 47001),
        (json.dumps({"msgtype": "text", "text": {"content": "x"}}).encode(), 40003),
        (json.dumps({"touser": OPENID, "msgtype": "video"}).encode(), 40008),
        (json.dumps({"touser": OPENID, "msgtype": "text", "text": {"content": ""}}).encode(), 44004),
        (json.dumps({"touser": OPENID, "msgtype": "image", "image": {"media_id": "nope"}}).encode(), 40007),
    ],
)
def test_custom_send_rejects_bad_bodies(fake, client, body, errcode):
    url = fake.base_url + "message/custom/send"
    result = requests.post(url, params={"access_token": client.access_token}, data=body, timeout=5).json()
    assert result["errcode"] == errcode and result["errmsg"]
    assert fake.sent_messages == []


def test_expired_token_makes_the_client_refetch_and_retry(fake, client):
    client.message.send_text(OPENID, "first")
    fake.expire_tokens()
    client.message.send_text(OPENID, "second")
    assert [m["text"]["content"] for m in fake.sent_messages] == ["first", "second"]
    assert fake.token_fetches == 2


def test_fail_next_sends_fails_exactly_that_many(fake, client):
    fake.fail_next_sends(2)
    for _ in range(2):
        with pytest.raises(WeChatClientException) as caught:
            client.message.send_text(OPENID, "late")
        assert caught.value.errcode == 45015
    client.message.send_text(OPENID, "on time")
    assert [m["text"]["content"] for m in fake.sent_messages] == ["on time"]


def test_wait_for_messages_blocks_until_they_arrive(fake, client):
    sender = threading.Timer(0.2, client.message.send_text, args=(OPENID, "later"))
    sender.start()
    messages = fake.wait_for_messages(1, timeout=5)
    sender.join()
    assert messages[0]["text"]["content"] == "later"


def test_wait_for_messages_times_out(fake):
    with pytest.raises(TimeoutError):
        fake.wait_for_messages(1, timeout=0.1)


def test_new_messages_returns_only_the_unseen_ones(fake, client):
    client.message.send_text(OPENID, "one")
    client.message.send_text(OPENID, "two")
    assert [m["text"]["content"] for m in fake.new_messages(since=1, timeout=0)] == ["two"]
    assert fake.new_messages(since=2, timeout=0.05) == []


def test_a_given_port_is_used_and_freed_on_stop():
    first = FakeWeChatAPI(APPID, SECRET).start()
    port = first.port
    first.stop()
    with FakeWeChatAPI(APPID, SECRET, port=port) as second:
        assert second.base_url == f"http://127.0.0.1:{port}/cgi-bin/"


def test_unknown_endpoint_is_404(fake):
    assert requests.get(fake.base_url + "nothing/here", timeout=5).status_code == 404


def test_the_projects_wechat_api_works_against_the_fake(fake):
    from bot.client import WeChatApi
    from settings import WeChatSettings

    api = WeChatApi(WeChatSettings(appid=APPID, secret=SECRET, api_base_url=fake.base_url), MemoryTokenStore())
    photo = fake.add_media(b"\xff\xd8 candidate photo")
    assert api.download_media(photo) == b"\xff\xd8 candidate photo"
    media_id = api.upload_image(b"receipt", "receipt.jpg")
    fake.expire_tokens()
    api.send_text(OPENID, "收到")
    api.send_image(OPENID, media_id)
    assert [m["msgtype"] for m in fake.messages_to(OPENID)] == ["text", "image"]
    assert fake.uploaded_media[media_id] == b"receipt"
