"""POST/GET /wechat: the Flask adapter around the protocol, the retry guard and the conversation."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request

from bot.protocol import EMPTY_REPLY, ProtocolError, WeChatProtocol
from bot.retries import RetryGuard
from bot.conversation import Conversation

log = logging.getLogger(__name__)

blueprint = Blueprint("wechat", __name__)


def _parts() -> tuple[WeChatProtocol, RetryGuard, Conversation]:
    ext = current_app.extensions["collector"]
    return ext.protocol, ext.retries, ext.conversation


@blueprint.get("/wechat")
def verify():
    protocol, _, _ = _parts()
    try:
        return Response(protocol.verify_url(request.args), mimetype="text/plain")
    except ProtocolError as exc:
        return _refuse(exc)


@blueprint.post("/wechat")
def receive():
    protocol, retries, conversation = _parts()
    limit = current_app.config["SETTINGS"].wechat.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return _refuse(ProtocolError(413, f"body of {request.content_length} bytes"))
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return _refuse(ProtocolError(413, "body over the limit"))
    try:
        opened = protocol.open(request.args, body)
    except ProtocolError as exc:
        return _refuse(exc)

    seen = retries.claim(opened.retry_key)
    if seen is not None:
        log.info("retry of %s answered from the first attempt", opened.retry_key)
        reply_xml = seen.reply_xml if seen.reply_xml is not None else EMPTY_REPLY.decode()
        return _xml(protocol.seal(reply_xml, opened.encrypted))

    try:
        reply_xml = protocol.render(conversation.handle(opened.incoming), opened)
    except Exception:
        retries.release(opened.retry_key)  # let WeChat's retry run it again
        raise
    retries.finish(opened.retry_key, reply_xml)
    return _xml(protocol.seal(reply_xml, opened.encrypted))


def _xml(body: bytes) -> Response:
    return Response(body, mimetype="application/xml" if body != EMPTY_REPLY else "text/plain")


def _refuse(exc: ProtocolError) -> Response:
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote_addr, exc.reason)
    return Response(exc.reason, status=exc.status, mimetype="text/plain")
