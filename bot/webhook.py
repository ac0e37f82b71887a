"""/wechat: WeChat's pushes (POST), answered by a WSGI application of its own in front of Flask, and the
server-address check (GET) through Flask.

Every message WeChat pushes comes through POST /wechat, so its handling is the hot path. Flask's way of
handling a request (a request context, the console's session, CSRF and header hooks, URL matching, a
Response object) cost about 170 µs of the 1.25 ms a text message took in process, 14 %, and the webhook
uses none of it: it reads the query string, the body and the arrival stamp, and answers text. `mount`
puts `WebhookApp` in front of the Flask app; any other request goes on to Flask unchanged. A message
costs 19-22 % fewer instructions this way (bench/instructions_bench.py, 1 Dec 2026).
"""
from __future__ import annotations

import logging
from functools import partial
from typing import Callable, Iterable, Sequence
from urllib.parse import parse_qsl

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length

from bot import arrival
from bot.protocol import EMPTY_REPLY, Opened, ProtocolError, WeChatProtocol
from bot.retries import Answered, RetryGuard, StepFailed, Ticket
from bot.conversation import Conversation
from handlers.base import ClaimLost

log = logging.getLogger(__name__)

PATH = "/wechat"
TEXT_PLAIN = "text/plain; charset=utf-8"
XML = "application/xml; charset=utf-8"

blueprint = Blueprint("wechat", __name__)

# A guard runs before each request, as Flask's before_request functions do: None, or the refusal to send
# instead (text, status, headers).
Guard = Callable[[], "tuple[str, int, dict[str, str]] | None"]


@blueprint.get(PATH)
def verify():
    protocol = current_app.extensions["collector"].protocol
    try:
        return Response(protocol.verify_url(request.args), mimetype="text/plain")
    except ProtocolError as exc:
        _log_refusal(request.environ, exc)
        return Response(exc.reason, status=exc.status, mimetype="text/plain")


def mount(app: Flask, guards: Sequence[Guard] = ()) -> None:
    """POST /wechat served by WebhookApp ahead of `app`'s own handling; `guards`: the app's before_request
    functions that concern the webhook too."""
    collector = app.extensions["collector"]
    app.wsgi_app = WebhookApp(collector.protocol, collector.retries, collector.conversation,
                              collector.settings.wechat.max_body_bytes, app.wsgi_app, guards)


class WebhookApp:
    """POST /wechat straight from the WSGI environ; everything else to `downstream` (the Flask app)."""

    def __init__(self, protocol: WeChatProtocol, retries: RetryGuard, conversation: Conversation,
                 max_body_bytes: int, downstream, guards: Sequence[Guard] = ()):
        self.protocol = protocol
        self.retries = retries
        self.conversation = conversation
        self.max_body_bytes = max_body_bytes
        self.downstream = downstream
        self.guards = tuple(guards)

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.downstream(environ, start_response)
        try:
            status, content_type, body = self.receive(environ)
        except Exception:
            log.exception("the webhook failed on a message")
            status, content_type, body = 500, TEXT_PLAIN, b"Internal Server Error"
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}",
                       [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def receive(self, environ: dict) -> tuple[int, str, bytes]:
        """(status, content type, body) for one push."""
        arrived = arrival.arrived(environ)
        for guard in self.guards:
            refused = guard()
            if refused is not None:
                text, status, headers = refused
                return status, headers.get("Content-Type", TEXT_PLAIN), text.encode("utf-8")
        try:
            body = self._body(environ)
            opened = self.protocol.open(_query(environ), body, defer_nonce=True)
            reply_xml = self._answer(opened, arrived)
        except ProtocolError as exc:
            _log_refusal(environ, exc)
            return exc.status, TEXT_PLAIN, exc.reason.encode("utf-8")
        sealed = self.protocol.seal(reply_xml, opened.encrypted)
        return 200, TEXT_PLAIN if sealed == EMPTY_REPLY else XML, sealed

    def _body(self, environ: dict) -> bytes:
        """At most max_body_bytes of the body, as its Content-Length says, or up to its end where the server
        ends the stream (a chunked body: wsgi.input_terminated); otherwise none (werkzeug's safe fallback)."""
        limit = self.max_body_bytes
        declared = get_content_length(environ)
        if declared is not None and declared > limit:
            raise ProtocolError(413, f"body of {declared} bytes")
        if declared is None and not environ.get("wsgi.input_terminated"):
            return b""
        body = _read(environ["wsgi.input"], limit + 1 if declared is None else declared)
        if len(body) > limit:
            raise ProtocolError(413, "body over the limit")
        return body

    def _answer(self, opened: Opened, arrived: float) -> str:
        """The reply XML for this attempt: the step's, run here in the claim's transaction, or by the attempt
        that holds the message."""
        retries, conversation = self.retries, self.conversation
        key = opened.retry_key
        answer_by = retries.answer_by(arrived)
        render = partial(self.protocol.render, opened=opened)
        ahead = conversation.read_ahead(opened.incoming, arrived)  # before the claim: outside SQLite's writer lock

        def step(session, ticket: Ticket):
            return conversation.step(opened.incoming, arrived, session, ticket, ahead, read=ticket.along)

        take_nonce = partial(self.protocol.take_nonce, opened)  # first in the claim's transaction
        read = None if ahead is not None else conversation.read_with_claim(opened.incoming)  # with the claim
        found = self._attempt(opened, lambda: retries.claim(key, answer_by, on_claim=step, render=render,
                                                            before=take_nonce, along=read))
        while not isinstance(found, (Ticket, Answered)):
            log.info("retry of %s waits for the attempt running it", key)
            found = self._attempt(opened, lambda: retries.wait(key, answer_by, on_claim=step, render=render))
        if isinstance(found, Answered):
            return found.reply_xml
        return found.reply_xml(found.result)

    def _attempt(self, opened: Opened, run) -> Ticket | Answered | None:
        """run(): a claim or a wait, which runs the step if this attempt wins the message. None: another
        attempt holds it (wait for its reply)."""
        try:
            return run()
        except ClaimLost:
            log.warning("message %s was taken over by another attempt; waiting for its reply", opened.retry_key)
            return None
        except StepFailed as failed:
            log.error("message %s from %s failed", opened.incoming.msg_id, opened.incoming.openid,
                      exc_info=failed.__cause__)
            return self._record_failure(opened, failed.ticket)

    def _record_failure(self, opened: Opened, ticket: Ticket) -> Ticket | None:
        """The failed step's transaction rolled back: the system-error reply, under the same claim. If even
        that fails, the claim goes, so that WeChat's retry runs the message again."""
        try:
            return self.retries.recover(ticket, on_claim=partial(self.conversation.record_failure, opened.incoming))
        except ClaimLost:
            return None
        except Exception:
            self.retries.release(ticket)
            raise


def _read(stream, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the stream's end."""
    chunks, wanted = [], size
    while wanted > 0:
        chunk = stream.read(wanted)
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def _query(environ: dict) -> dict[str, str]:
    """The query string's parameters, the first of a repeated one (as Flask's request.args.get)."""
    args: dict[str, str] = {}
    for name, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True, errors="replace"):
        args.setdefault(name, value)
    return args


def _log_refusal(environ: dict, exc: ProtocolError) -> None:
    log.warning("refused %s %s from %s: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                environ.get("REMOTE_ADDR"), exc.reason)
