"""POST/GET /wechat: the Flask adapter around the protocol, the retry guard and the conversation."""
from __future__ import annotations

import logging
from functools import partial

from flask import Blueprint, Response, current_app, request

from bot import arrival
from bot.protocol import EMPTY_REPLY, Opened, ProtocolError, WeChatProtocol
from bot.retries import Answered, RetryGuard, StepFailed, Ticket
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
        opened = protocol.open(request.args, body, defer_nonce=True)
        reply_xml = _answer(opened, arrived)
    except ProtocolError as exc:
        return _refuse(exc)
    return _xml(protocol.seal(reply_xml, opened.encrypted))


def _answer(opened: Opened, arrived: float) -> str:
    """The reply XML for this attempt: the step's, run here in the claim's transaction, or by the attempt
    that holds the message."""
    protocol, retries, conversation = _parts()
    key = opened.retry_key
    answer_by = retries.answer_by(arrived)
    render = partial(protocol.render, opened=opened)
    ahead = conversation.read_ahead(opened.incoming, arrived)  # before the claim: outside SQLite's writer lock

    def step(session, ticket: Ticket):
        return conversation.step(opened.incoming, arrived, session, ticket, ahead, read=ticket.along)

    take_nonce = partial(protocol.take_nonce, opened)  # first in the claim's transaction
    read = None if ahead is not None else conversation.read_with_claim(opened.incoming)  # with the claim
    found = _attempt(opened, lambda: retries.claim(key, answer_by, on_claim=step, render=render, before=take_nonce,
                                                   along=read))
    while not isinstance(found, (Ticket, Answered)):
        log.info("retry of %s waits for the attempt running it", key)
        found = _attempt(opened, lambda: retries.wait(key, answer_by, on_claim=step, render=render))
    if isinstance(found, Answered):
        return found.reply_xml
    return found.reply_xml(found.result)


def _attempt(opened: Opened, run) -> Ticket | Answered | None:
    """run(): a claim or a wait, which runs the step if this attempt wins the message. None: another
    attempt holds it (wait for its reply)."""
    _, retries, conversation = _parts()
    try:
        return run()
    except ClaimLost:
        log.warning("message %s was taken over by another attempt; waiting for its reply", opened.retry_key)
        return None
    except StepFailed as failed:
        log.error("message %s from %s failed", opened.incoming.msg_id, opened.incoming.openid,
                  exc_info=failed.__cause__)
        return _record_failure(opened, failed.ticket)


def _record_failure(opened: Opened, ticket: Ticket) -> Ticket | None:
    """The failed step's transaction rolled back: the system-error reply, under the same claim. If even
    that fails, the claim goes, so that WeChat's retry runs the message again."""
    _, retries, conversation = _parts()
    try:
        return retries.recover(ticket, on_claim=partial(conversation.record_failure, opened.incoming))
    except ClaimLost:
        return None
    except Exception:
        retries.release(ticket)
        raise


def _xml(body: bytes) -> Response:
    return Response(body, mimetype="application/xml" if body != EMPTY_REPLY else "text/plain")


def _refuse(exc: ProtocolError) -> Response:
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote_addr, exc.reason)
    return Response(exc.reason, status=exc.status, mimetype="text/plain")
