"""The /wechat front door: signatures, timestamps, AES, malformed and oversized bodies, retries."""
from __future__ import annotations

import threading
import time

from sqlalchemy import func, select
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from store.models import Candidate, Message
from tests.conftest import AES_KEY, APPID, TOKEN, simulator_for


def count(app, model, *where) -> int:
    with app.extensions["collector"].db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_url_verification_echoes_echostr(wechat):
    reply = wechat.verify_url("hello-123")
    assert reply.status == 200
    assert reply.content == "hello-123"


def test_url_verification_with_forged_signature_is_refused(wechat):
    assert wechat.verify_url("hello-123", signature_ok=False).status == 403


def test_forged_signature_is_refused_and_changes_nothing(app, wechat, caplog):
    xml = b"<xml><ToUserName>gh</ToUserName><FromUserName>o_forger</FromUserName><CreateTime>%d</CreateTime>" \
          b"<MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>" % int(time.time())
    reply = wechat.post_xml(xml, signature_ok=False)
    assert reply.status == 403
    assert count(app, Candidate) == 0
    assert count(app, Message) == 0
    assert any("refused POST /wechat" in r.getMessage() and "bad signature" in r.getMessage()
               for r in caplog.records)


def test_forged_aes_signature_is_refused(app):
    wechat = simulator_for(app, aes=True)
    xml = b"<xml><ToUserName>gh</ToUserName><FromUserName>o_forger</FromUserName><CreateTime>%d</CreateTime>" \
          b"<MsgType>text</MsgType><Content>hi</Content><MsgId>2</MsgId></xml>" % int(time.time())
    assert wechat.post_xml(xml, signature_ok=False).status == 403
    assert count(app, Message) == 0


def test_stale_timestamp_is_refused(app, wechat):
    xml = b"<xml><ToUserName>gh</ToUserName><FromUserName>o_replay</FromUserName><CreateTime>1</CreateTime>" \
          b"<MsgType>text</MsgType><Content>hi</Content><MsgId>3</MsgId></xml>"
    assert wechat.post_xml(xml, timestamp=int(time.time()) - 301).status == 403
    assert wechat.post_xml(xml, timestamp=int(time.time()) + 330).status == 403  # a margin: now is truncated
    assert count(app, Message) == 0


def test_timestamp_within_five_minutes_is_accepted(app):
    skewed = simulator_for(app, clock=lambda: time.time() - 290)
    assert "北京市高等教育自学考试" in skewed.text("o_skewed", "你好").content


def test_malformed_xml_is_a_400(app, wechat):
    assert wechat.post_xml(b"<xml><MsgType>text</MsgType>").status == 400
    assert wechat.post_xml(b"not xml at all").status == 400
    assert wechat.post_xml(b"").status == 400
    assert count(app, Message) == 0


def test_xml_that_is_not_a_message_is_a_400(app, wechat):
    assert wechat.post_xml(b"<xml><Hello>world</Hello></xml>").status == 400
    assert wechat.post_xml(b"<xml><MsgType>text</MsgType><Content>x</Content></xml>").status == 400
    assert count(app, Message) == 0


def test_entity_declarations_are_refused(app, wechat):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            b"<xml><ToUserName>gh</ToUserName><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime>"
            b"<MsgType>text</MsgType><Content>&lol2;</Content><MsgId>4</MsgId></xml>")
    assert wechat.post_xml(bomb).status == 400


def test_body_over_one_mebibyte_is_a_413(app, wechat):
    huge = b"<xml><Content>" + b"a" * (1024 * 1024) + b"</Content></xml>"
    assert wechat.post_xml(huge).status == 413
    assert count(app, Message) == 0


def test_malformed_aes_envelope_is_a_400(app):
    wechat = simulator_for(app, aes=True)
    # A correctly signed envelope whose ciphertext is garbage.
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    timestamp, nonce, garbage = str(int(time.time())), "n1", "bm90IGNpcGhlcnRleHQ="
    from wechatpy.crypto import _get_signature
    signature = _get_signature(TOKEN, timestamp, nonce, garbage)
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{garbage}]]></Encrypt></xml>".encode()
    status, _ = wechat.transport(
        "POST", f"/wechat?timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={signature}", body)
    assert status == 400
    assert crypto  # the same crypto would have decrypted a real envelope


def test_aes_conversation_replies_encrypted(app, roster):
    wechat = simulator_for(app, aes=True)
    reply = wechat.event("o_aes", "subscribe")
    assert reply.status == 200
    assert b"<Encrypt>" in reply.body and "北京市高等教育自学考试" not in reply.body.decode()
    assert "北京市高等教育自学考试" in reply.content  # the simulator decrypted and verified it
    assert "1 专科" in wechat.text("o_aes", "北京市高等教育自学考试").content


def test_compatible_mode_plaintext_and_ciphertext_together(app):
    """Compatible mode: WeChat sends the plaintext fields beside Encrypt; the ciphertext is what counts."""
    inner = (b"<xml><ToUserName>gh</ToUserName><FromUserName>o_compat</FromUserName><CreateTime>%d</CreateTime>"
             b"<MsgType>text</MsgType><Content>hi</Content><MsgId>77</MsgId></xml>" % int(time.time()))
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    encrypted = PrpCrypto(crypto.key).encrypt(inner, APPID).decode()
    timestamp, nonce = str(int(time.time())), "abc"
    from wechatpy.crypto import _get_signature
    from wechatpy.utils import WeChatSigner
    signer = WeChatSigner()
    signer.add_data(TOKEN, timestamp, nonce)
    body = inner.replace(b"</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode())
    query = (f"/wechat?signature={signer.signature}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes"
             f"&msg_signature={_get_signature(TOKEN, timestamp, nonce, encrypted)}")
    status, reply = simulator_for(app).transport("POST", query, body)
    assert status == 200
    plain = crypto.decrypt_message(reply.decode(), *_reply_signature(reply))
    assert "北京市高等教育自学考试" in plain


def _reply_signature(reply: bytes):
    import xmltodict
    data = xmltodict.parse(reply)["xml"]
    return data["MsgSignature"], data["TimeStamp"], data["Nonce"]


def test_a_retry_gets_the_first_reply_and_runs_nothing_twice(app, wechat):
    first = wechat.text("o_retry", "北京市高等教育自学考试", msg_id=555)
    again = wechat.text("o_retry", "北京市高等教育自学考试", msg_id=555)
    assert again.status == 200
    assert again.content == first.content
    assert count(app, Message, Message.direction == "in") == 1


def test_an_event_retry_is_recognised_by_sender_and_create_time(app, wechat):
    first = wechat.event("o_evt", "subscribe", create_time=1_700_000_000)
    again = wechat.event("o_evt", "subscribe", create_time=1_700_000_000)
    assert again.content == first.content
    assert count(app, Message, Message.direction == "in") == 1


def test_a_retry_while_the_first_attempt_runs_waits_for_its_reply(app, chat, roster, photo, fake_wechat):
    chat.walk_to_photo(roster[0])
    media_id = fake_wechat.add_media(photo("webmorph_004_03_blue_ok.jpg"), delay=1.5)
    msg_id = chat.wechat.next_msg_id()
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", chat.wechat.image(chat.openid, media_id,
                                                                                          msg_id=msg_id)))
    first.start()
    time.sleep(0.5)
    retry = simulator_for(app).image(chat.openid, media_id, msg_id=msg_id)
    first.join()
    assert "检查通过" in results["first"].content
    assert retry.status == 200 and retry.content == results["first"].content
    assert count(app, Message, Message.direction == "in", Message.openid == chat.openid,
                 Message.msg_type == "image") == 1


def test_a_reply_echoing_cdata_terminators_is_still_well_formed_xml(app, wechat, chat):
    chat.subscribe()
    for aes in (False, True):
        reply = simulator_for(app, aes=aes).text(chat.openid, "<b>]]></b>")
        assert reply.status == 200
        assert "b>]]></b" in reply.content  # parsed back intact from well-formed XML


def _chunked_transport(app, replies: list):
    """Sends as a server does a chunked body: no Content-Length, the server ends the stream
    (wsgi.input_terminated), straight to the WSGI app."""
    from io import BytesIO

    from werkzeug.test import EnvironBuilder

    def send(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        environ = EnvironBuilder(path=path, method=method, data=body, content_type="text/xml").get_environ()
        del environ["CONTENT_LENGTH"]
        environ.update({"wsgi.input": BytesIO(body), "wsgi.input_terminated": True})
        statuses = []
        answer = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append((status, headers))))
        replies.append(statuses[0])
        return int(statuses[0][0].split()[0]), answer

    return send


def test_a_chunked_push_is_answered_and_one_over_the_limit_is_a_413(app):
    from standins.simulator import WeChatSimulator

    replies = []
    wechat = WeChatSimulator(TOKEN, APPID, AES_KEY, _chunked_transport(app, replies))
    assert "北京市高等教育自学考试" in wechat.text("o_chunked", "你好").content
    assert ("Content-Type", "application/xml; charset=utf-8") in replies[-1][1]
    huge = b"<xml><Content>" + b"a" * (1024 * 1024) + b"</Content></xml>"
    assert wechat.post_xml(huge).status == 413
    assert count(app, Message, Message.openid == "o_chunked") == 2  # the greeting's two rows, nothing more


def test_a_refused_push_from_behind_a_trusted_proxy_logs_the_clients_address(make_app, caplog):
    app = make_app(server={"trusted_proxies": 1})
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"})
    assert client.post("/wechat?signature=forged&timestamp=1&nonce=n", data=b"<xml/>").status_code == 403
    assert any("refused POST /wechat from 203.0.113.7" in r.getMessage() for r in caplog.records)


def test_other_methods_on_the_webhook_path_are_flasks(app):
    """Only POST /wechat itself bypasses Flask: a PUT gets Flask's 405, a trailing slash its 404."""
    client = app.test_client()
    assert client.put("/wechat", data=b"<xml/>").status_code == 405
    assert client.post("/wechat/", data=b"<xml/>").status_code == 404
