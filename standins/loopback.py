"""What every local fake (WeChat API, WeChat Pay, Tencent Cloud SMS) runs on: a threaded HTTP server
on 127.0.0.1 with an ephemeral port, started and stopped like a context manager, and a request
handler that talks HTTP/1.1 keep-alive like the real services."""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
SHUTDOWN_POLL_SECONDS = 0.05

logger = logging.getLogger(__name__)


class LoopbackServer:
    """Subclasses give `handler_class()`; the server lives while started, on `self.port`."""

    def __init__(self, port: int = 0):
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self):
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._server = ThreadingHTTPServer((HOST, self.port), self.handler_class())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                                        name=f"{type(self).__name__}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._closing()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def _closing(self) -> None:
        """Runs once the server stopped listening, before its thread is joined."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def address(self) -> str:
        """host:port, once started."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return f"{HOST}:{self.port}"


class LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services
    # Headers and body go out in separate writes; with Nagle on, the body waits for the client's
    # delayed ACK (40 ms a request on Linux). Real servers do not stall like that.
    disable_nagle_algorithm = True

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s - %s", self.server_version, self.address_string(), format % args)
