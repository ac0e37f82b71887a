"""POST/GET /wechat: the Flask adapter around the protocol, the retry guard and the conversation."""
from __future__ import annotations

import logging
from functools import partial

from flask import Blueprint, Response, current_app, request

from bot import arrival
from bot.protocol import EMPTY_REPLY, Opened, ProtocolError, WeChatProtocol
from bot.retries import Answered, RetryGuard, Ticket
from bot.conversation import Conversation
from handlers.base import ClaimLost

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
    arrived = arrival.arrived(request.environ)
    protocol, _, _ = _parts()
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

    return _xml(protocol.seal(_answer(opened, arrived), opened.encrypted))


def _answer(opened: Opened, arrived: float) -> str:
    """The reply XML for this attempt: the step's, run here or by the attempt that holds the message."""
    _, retries, conversation = _parts()
    answer_by = retries.answer_by(arrived)
    record_inbound = partial(conversation.record_inbound, opened.incoming)  # in the claim's transaction
    found = retries.claim(opened.retry_key, answer_by, on_claim=record_inbound)
    while True:
        if found is None:
            log.info("retry of %s waits for the attempt running it", opened.retry_key)
            found = retries.wait(opened.retry_key, answer_by, on_claim=record_inbound)
        if isinstance(found, Answered):
            return found.reply_xml
        try:
            return _run(found, opened, arrived)
        except ClaimLost:
            log.warning("message %s was taken over by another attempt; waiting for its reply", opened.retry_key)
            found = None


def _run(ticket: Ticket, opened: Opened, arrived: float) -> str:
    protocol, retries, conversation = _parts()
    ticket.render = partial(protocol.render, opened=opened)
    try:
        reply = conversation.handle(opened.incoming, arrived, ticket)
    except ClaimLost:
        raise
    except Exception:
        retries.release(ticket)  # let WeChat's retry run it again
        raise
    finally:
        retries.let_go(ticket)
    return protocol.render(reply, opened)


def _xml(body: bytes) -> Response:
    return Response(body, mimetype="application/xml" if body != EMPTY_REPLY else "text/plain")


def _refuse(exc: ProtocolError) -> Response:
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote_addr, exc.reason)
    return Response(exc.reason, status=exc.status, mimetype="text/plain")
