"""The WeChat-side simulator against a webhook that uses wechatpy itself, and the `flask chat` loop."""
import io
import socket
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, abort, request
from werkzeug.serving import make_server
from wechatpy import create_reply, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import ImageReply
from wechatpy.utils import check_signature

from bot.client import ConfigurableWeChatClient
from settings import Settings, WeChatSettings
from standins.chat import ChatSession, chat_command, run_chat
from standins.simulator import ReplyError, WeChatSimulator, flask_transport, http_transport

TOKEN = "sim-token"
APPID = "wx_sim_appid_00001"
SECRET = "sim-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "o_sim_user_0000000000000001"
NOW = 1_760_000_000


def make_webhook_app(api_base_url: str | None = None) -> Flask:
    """A minimal webhook written with wechatpy: verifies, decrypts, echoes text, returns images.

    With a (fake) WeChat API at `api_base_url`, an image is also downloaded from it and
    acknowledged by a customer-service message, as the real server does.
    """
    app = Flask(__name__)
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    app.config["RECEIVED"] = received = []
    client = ConfigurableWeChatClient(APPID, SECRET, api_base_url, timeout=5) if api_base_url else None

    @app.route("/wechat", methods=["GET", "POST"])
    def wechat():
        args = request.args
        try:
            check_signature(TOKEN, args["signature"], args["timestamp"], args["nonce"])
        except InvalidSignatureException:
            abort(403)
        if request.method == "GET":
            return args["echostr"]
        encrypted = args.get("encrypt_type") == "aes"
        body = request.get_data()
        if encrypted:
            try:
                body = crypto.decrypt_message(body, args["msg_signature"], args["timestamp"], args["nonce"])
            except InvalidSignatureException:
                abort(403)
        message = parse_message(body)
        received.append(message)
        if message.type == "text":
            reply = create_reply(f"echo: {message.content}", message)
        elif message.type == "image":
            if client:
                photo = client.media.download(message.media_id).content
                client.message.send_text(message.source, f"got {len(photo)} bytes")
            reply = ImageReply(message=message, media_id=message.media_id)
        else:
            return "success"
        xml = reply.render()
        return crypto.encrypt_message(xml, args["nonce"], args["timestamp"]) if encrypted else xml

    return app


class RecordingTransport:
    """Keeps every request and answers with a canned response."""

    def __init__(self, status=200, body=b"success"):
        self.calls = []
        self.status = status
        self.body = body

    def __call__(self, method, path, body):
        self.calls.append((method, path, body))
        return self.status, self.body

    @property
    def last_query(self):
        return {key: values[0] for key, values in parse_qs(urlsplit(self.calls[-1][1]).query).items()}


@pytest.fixture
def app():
    return make_webhook_app()


def simulator_for(transport, aes=False, clock=lambda: NOW):
    return WeChatSimulator(TOKEN, APPID, AES_KEY, transport, aes=aes, clock=clock)


@pytest.fixture(params=[False, True], ids=["plain", "aes"])
def sim(request, app):
    return simulator_for(flask_transport(app.test_client()), aes=request.param)


# --- against the wechatpy webhook, both modes -------------------------------------------------


def test_text_round_trip(sim, app):
    reply = sim.text(OPENID, "你好", msg_id=42)
    assert (reply.status, reply.msg_type, reply.content) == (200, "text", "echo: 你好")
    assert (reply.to_user, reply.from_user) == (OPENID, sim.account_id)
    message = app.config["RECEIVED"][-1]
    assert (message.type, message.source, message.target) == ("text", OPENID, sim.account_id)
    assert (message.id, message.create_time.timestamp()) == (42, NOW)


def test_image_carries_media_id_and_pic_url(sim, app):
    reply = sim.image(OPENID, "MEDIA123")
    assert (reply.msg_type, reply.media_id) == ("image", "MEDIA123")
    message = app.config["RECEIVED"][-1]
    assert message.media_id == "MEDIA123"
    assert "MEDIA123" in message.image


def test_subscribe_event_has_no_msg_id(sim, app):
    reply = sim.event(OPENID, create_time=NOW - 5)
    assert reply.empty and reply.msg_type is None and reply.content == ""
    message = app.config["RECEIVED"][-1]
    assert (message.type, message.event, message.create_time.timestamp()) == ("event", "subscribe", NOW - 5)
    assert "MsgId" not in message._data


def test_unknown_message_types_are_pushed_as_given(sim, app):
    sim.voice(OPENID, "VOICE1")
    sim.message(OPENID, "shortvideo", {"MediaId": "V2", "ThumbMediaId": "T2"})
    voice, video = app.config["RECEIVED"][-2:]
    assert (voice.type, voice.media_id, voice.format) == ("voice", "VOICE1", "amr")
    assert (video.type, video.media_id) == ("shortvideo", "V2")


def test_forged_signature_is_rejected(sim):
    assert sim.post_xml(b"<xml/>", signature_ok=False).status == 403
    assert sim.verify_url("echo", signature_ok=False).status == 403


def test_verify_url_echoes(sim):
    reply = sim.verify_url("hello-echo")
    assert (reply.status, reply.content) == (200, "hello-echo")


def test_cdata_terminator_in_content_survives():
    sim = simulator_for(RecordingTransport())
    sim.text(OPENID, "a]]>b")
    assert parse_message(sim.transport.calls[-1][2]).content == "a]]>b"


# --- request details ------------------------------------------------------------------------


def test_msg_ids_are_fresh_unless_given():
    transport = RecordingTransport()
    sim = simulator_for(transport)
    sim.text(OPENID, "a")
    sim.text(OPENID, "b")
    sim.text(OPENID, "again", msg_id=7)
    ids = [parse_message(body).id for _, _, body in transport.calls]
    assert ids[1] == ids[0] + 1 and ids[2] == 7


def test_plain_request_is_signed_like_wechat():
    transport = RecordingTransport()
    simulator_for(transport).text(OPENID, "hi")
    method, path, body = transport.calls[-1]
    query = transport.last_query
    assert method == "POST" and path.startswith("/wechat?")
    assert query["timestamp"] == str(NOW) and query["openid"] == OPENID
    assert "encrypt_type" not in query and "msg_signature" not in query
    check_signature(TOKEN, query["signature"], query["timestamp"], query["nonce"])
    assert parse_message(body).content == "hi"


def test_aes_request_is_the_safe_mode_envelope():
    transport = RecordingTransport()
    simulator_for(transport, aes=True).text(OPENID, "secret hi")
    _, _, body = transport.calls[-1]
    query = transport.last_query
    assert query["encrypt_type"] == "aes"
    check_signature(TOKEN, query["signature"], query["timestamp"], query["nonce"])
    assert b"<ToUserName>" in body and b"<Encrypt>" in body and b"secret hi" not in body
    plain = WeChatCrypto(TOKEN, AES_KEY, APPID).decrypt_message(
        body, query["msg_signature"], query["timestamp"], query["nonce"]
    )
    assert parse_message(plain).content == "secret hi"


def test_stale_timestamp_is_signed_as_given():
    transport = RecordingTransport()
    simulator_for(transport).post_xml(b"<xml/>", timestamp=NOW - 3600)
    query = transport.last_query
    assert query["timestamp"] == str(NOW - 3600)
    check_signature(TOKEN, query["signature"], query["timestamp"], query["nonce"])


def test_malformed_xml_is_sent_verbatim():
    transport = RecordingTransport()
    simulator_for(transport).post_xml(b"<xml><Broken")
    assert transport.calls[-1][2] == b"<xml><Broken"


# --- reply decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"success"])
def test_empty_replies(body):
    reply = simulator_for(RecordingTransport(body=body), aes=True).text(OPENID, "x")
    assert reply.empty and reply.msg_type is None


def test_error_status_is_returned_not_parsed():
    reply = simulator_for(RecordingTransport(status=500, body=b"boom")).text(OPENID, "x")
    assert (reply.status, reply.body, reply.msg_type) == (500, b"boom", None)


def test_non_xml_reply_is_an_error():
    with pytest.raises(ReplyError):
        simulator_for(RecordingTransport(body=b"<html>oops")).text(OPENID, "x")


def test_plain_reply_in_safe_mode_is_an_error():
    with pytest.raises(ReplyError):
        simulator_for(RecordingTransport(body=b"<xml><Content>x</Content></xml>"), aes=True).text(OPENID, "x")


def test_safe_mode_reply_with_a_bad_signature_is_rejected():
    reply = WeChatCrypto(TOKEN, AES_KEY, APPID).encrypt_message("<xml><MsgType>text</MsgType></xml>", "1", "2")
    tampered = reply.replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0")
    with pytest.raises(InvalidSignatureException):
        simulator_for(RecordingTransport(body=tampered.encode()), aes=True).text(OPENID, "x")


# --- over real HTTP --------------------------------------------------------------------------


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def live_app():
    app = make_webhook_app()
    server, thread = serve(app)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_http_transport_keeps_one_connection(live_app):
    session = requests.Session()
    sim = simulator_for(http_transport(live_app, session=session), aes=True, clock=lambda: NOW)
    for i in range(3):
        assert sim.text(OPENID, f"n{i}").content == f"echo: n{i}"
    assert len(session.adapters["http://"].poolmanager.pools) == 1


# --- flask chat ----------------------------------------------------------------------------


def chat_lines(*lines):
    return [*lines, "/quit", "never sent"]


def test_chat_loop_prints_replies(app):
    out = io.StringIO()
    session = ChatSession(simulator_for(flask_transport(app.test_client())), OPENID, out)
    run_chat(session, chat_lines("你好", "", "/subscribe", "/image nothing.jpg", "/bogus"))
    text = out.getvalue()
    assert text.startswith("照片采集") and "/subscribe" in text  # the banner
    assert "公众号 / account: echo: 你好" in text
    assert "no reply" in text
    assert "no local WeChat API" in text
    assert "unknown command: /bogus" in text
    assert "never sent" not in text
    assert [m.type for m in app.config["RECEIVED"]] == ["text", "event"]


def test_chat_loop_reports_an_unreachable_server():
    out = io.StringIO()
    dead = http_transport("http://127.0.0.1:9", timeout=1)
    run_chat(ChatSession(simulator_for(dead), OPENID, out), ["hello"])
    assert "cannot reach the server" in out.getvalue()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_chat_command_end_to_end(tmp_path):
    """`flask chat` against a live webhook: text, a photo through the fake API, a customer-service message."""
    api_port = free_port()
    api_base_url = f"http://127.0.0.1:{api_port}/cgi-bin/"
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"\xff\xd8" + b"x" * 98)

    # The webhook's client talks to the fake API that `flask chat` starts on api_port.
    server, thread = serve(make_webhook_app(api_base_url))
    cli_app = Flask("chat-test")
    cli_app.config["SETTINGS"] = Settings(
        wechat=WeChatSettings(token=TOKEN, appid=APPID, secret=SECRET, encoding_aes_key=AES_KEY, api_base_url=api_base_url)
    )
    try:
        result = cli_app.test_cli_runner().invoke(
            chat_command,
            ["--url", f"http://127.0.0.1:{server.server_port}/wechat", "--openid", OPENID, "--aes"],
            input=f"你好\n/image {photo}\n/quit\n",
        )
    finally:
        server.shutdown()
        thread.join()
    assert result.exit_code == 0, result.output
    assert f"fake WeChat API: {api_base_url}" in result.output
    assert "公众号 / account: echo: 你好" in result.output
    assert "公众号 / account: [图片 / image] media_id=" in result.output
    assert "客服消息 / customer service: got 100 bytes" in result.output
