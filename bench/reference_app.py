"""Issue 15's point of reference: "wechatpy plus one SQLite insert", the least a webhook that keeps what it
is sent can do. wechatpy checks the signature (and decrypts, in safe mode), parses the message, one row per
message goes into SQLite (committed, the driver's defaults), and a text reply goes back through wechatpy.

    .venv/bin/python bench/webhook_bench.py --app bench.reference_app:create_app --modes plain aes

Under `webhook_bench.py` it reads COLLECTOR_CONFIG for the token, AES key and appid (as the bench writes them)
and keeps its database beside the config. No retry guard, no replay guard, no conversation, no transcript
sealing: what the issue compared the app against, not something to deploy."""
from __future__ import annotations

import os
import sqlite3
import time
import tomllib
from pathlib import Path

from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature


def create_app() -> Flask:
    config_path = Path(os.environ["COLLECTOR_CONFIG"])
    wechat = tomllib.loads(config_path.read_text(encoding="utf-8"))["wechat"]
    crypto = WeChatCrypto(wechat["token"], wechat["encoding_aes_key"], wechat["appid"])
    database = sqlite3.connect(config_path.with_name("reference.db"), check_same_thread=False)
    database.execute("CREATE TABLE IF NOT EXISTS messages (openid TEXT, msg_type TEXT, content TEXT, created REAL)")
    database.commit()
    app = Flask(__name__)

    @app.get("/wechat")
    def verify():
        check_signature(wechat["token"], request.args["signature"], request.args["timestamp"], request.args["nonce"])
        return request.args.get("echostr", "")

    @app.post("/wechat")
    def push():
        args = request.args
        encrypted = args.get("encrypt_type") == "aes"
        if encrypted:
            xml = crypto.decrypt_message(request.get_data(), args["msg_signature"], args["timestamp"], args["nonce"])
        else:
            check_signature(wechat["token"], args["signature"], args["timestamp"], args["nonce"])
            xml = request.get_data()
        message = parse_message(xml)
        database.execute("INSERT INTO messages VALUES (?, ?, ?, ?)",
                         (message.source, message.type, getattr(message, "content", ""), time.time()))
        database.commit()
        reply = TextReply(message=message, content="收到").render()
        if encrypted:
            reply = crypto.encrypt_message(reply, args["nonce"], args["timestamp"])
        return Response(reply, mimetype="application/xml")

    return app
