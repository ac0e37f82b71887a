"""Issue 8.6: credentials never reach a log line, a table or a staff command's output.

With the WeChat API unreachable, the error names the URL it called: `/token?…&secret=<appsecret>`
while fetching a token, `…?access_token=…` with one in hand. Each path where such an error is logged
or stored is driven through its real front door with the API on a closed port.
"""
from __future__ import annotations

import json
import socket
import time
import uuid

import pytest
from sqlalchemy import select

import messages
from bot.access_token import Token
from rules.credentials import REDACTED, remember_secrets, scrub_credentials
from store.models import Message, Notification
from tests.conftest import SECRET, simulator_for
from tests.journey import GRADUATES, Chat, seed_roster
from tests.staff_fixtures import ROWS, put_under_review, write_csv

OPENID = "o_leak_check_0000000000000001"


def closed_api_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/cgi-bin/"


@pytest.fixture(params=["fetching a token", "holding a token"])
def unreachable_app(request, make_app):
    """An app whose WeChat API is down, and the credential an error could leak: the appsecret while
    fetching a token, or the access token already held (put in the shared store beforehand)."""
    app = make_app(wechat={"api_base_url": closed_api_url(), "http_timeout_seconds": 1.0})
    if request.param == "fetching a token":
        return app, [f"secret={SECRET}", SECRET]
    token = f"ACCESS_TOKEN_{uuid.uuid4().hex}"
    app.extensions["collector"].services.wechat.client.token_store.refresh(
        lambda: Token(token, time.time() + 7200))
    return app, [token]


def assert_clean(text: str, leaks: list[str]) -> None:
    for leak in leaks:
        assert leak not in text


def cli(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_failed_photo_download_keeps_credentials_out_of_checks_log_and_transcript(
        unreachable_app, fake_wechat, caplog):
    app, leaks = unreachable_app
    seed_roster(app)
    chat = Chat(app, simulator_for(app), fake_wechat, OPENID)
    chat.walk_to_photo(GRADUATES[0])

    reply = chat.wechat.image(OPENID, "media-that-cannot-be-fetched")

    assert reply.content == messages.PHOTO_DOWNLOAD_FAILED
    with app.extensions["collector"].db.session() as session:
        checks = session.scalars(select(Message.checks).where(Message.msg_type == "image")).all()
    stored = json.dumps(checks, ensure_ascii=False)
    assert "download_failed" in stored and REDACTED in stored
    assert_clean(stored, leaks)
    assert "photo download failed" in caplog.text
    assert_clean(caplog.text, leaks)
    for flags in ([], ["--unmasked"]):
        output = cli(app, "transcript", OPENID, *flags, *(["--by", "审计测试"] if flags else []))
        assert "download_failed" in output
        assert_clean(output, leaks)


def test_a_failed_notification_keeps_credentials_out_of_last_error_outbox_list_and_log(
        unreachable_app, tmp_path, caplog):
    app, leaks = unreachable_app
    cli(app, "roster", "import", str(write_csv(tmp_path / "roster.csv", ROWS)))
    put_under_review(app, ROWS[0], OPENID)

    cli(app, "review", "approve", ROWS[0][1], "--by", "李老师")

    with app.extensions["collector"].db.session() as session:
        wechat = session.scalar(select(Notification).where(Notification.channel == "wechat"))
        delivery_errors = session.scalars(select(Message.delivery_error)
                                          .where(Message.delivery_error.is_not(None))).all()
    assert wechat.status == "pending" and REDACTED in wechat.last_error
    assert_clean(wechat.last_error, leaks)
    assert_clean(" ".join(delivery_errors), leaks)
    listed = cli(app, "outbox", "list", "--status", "pending")
    assert str(wechat.id) in listed
    assert_clean(listed, leaks)
    transcript = cli(app, "transcript", OPENID, "--unmasked", "--by", "审计测试")
    assert "！" in transcript
    assert_clean(transcript, leaks)
    assert "attempt 1 failed" in caplog.text
    assert_clean(caplog.text, leaks)


# --- the scrubber itself --------------------------------------------------------------------------

@pytest.mark.parametrize("text, leak", [
    ("Max retries exceeded with url: /cgi-bin/token?grant_type=client_credential&appid=wx1&secret=S3CRETvalue",
     "S3CRETvalue"),
    ("url: /cgi-bin/media/get?media_id=m1&access_token=TOK-123_abc (Caused by NewConnectionError)", "TOK-123_abc"),
    ("https://api.weixin.qq.com/sns/oauth2/access_token?appid=wx1&secret%3DPCTsecret&code=c", "PCTsecret"),
    ('{"access_token": "JSONTOKEN", "expires_in": 7200}', "JSONTOKEN"),
    ("{'Authorization': 'WECHATPAY2-SHA256-RSA2048 mchid=\"1900\",signature=\"SIGVALUE==\"'}", "SIGVALUE"),
    ("Authorization: TC3-HMAC-SHA256 Credential=AKID/2026, Signature=TC3SIG\nnext", "TC3SIG"),
    ("paySign=RSASIGN&signType=RSA", "RSASIGN"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQIBADANBg"),
    ("sms failed: key=TENCENTKEY password=hunter22", "TENCENTKEY"),
])
def test_credentials_are_scrubbed_in_every_shape(text, leak):
    scrubbed = scrub_credentials(text)
    assert leak not in scrubbed and REDACTED in scrubbed
    assert scrub_credentials(scrubbed) == scrubbed  # stored texts are scrubbed again when shown


def test_configured_secrets_are_scrubbed_wherever_they_appear():
    secret = f"apiv3-{uuid.uuid4().hex}"
    remember_secrets(secret, "short")
    assert scrub_credentials(f"decrypt with {secret} failed") == f"decrypt with {REDACTED} failed"
    assert scrub_credentials("a short reply") == "a short reply"


def test_ordinary_text_is_left_alone():
    text = "bad signature; errcode=40001, retry of msg:1 answered; fetching a new WeChat access token"
    assert scrub_credentials(text) == text
