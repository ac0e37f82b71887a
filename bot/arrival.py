"""When a request arrived. WeChat's 5 s run from when it sent the request, so the reply budget is counted
from the moment its first bytes reached this process, not from when a worker thread got round to it.

`flask serve` runs waitress with a channel that stamps each request as its first bytes are read and hands
the stamp to the app in the WSGI environ; any other server gets the time the app was called.
"""
from __future__ import annotations

import time

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, create_server
from waitress.task import WSGITask

ENVIRON_KEY = "collector.arrived"  # time.monotonic() of the request's first byte


def arrived(environ) -> float:
    """The request's arrival (time.monotonic()); never later than now."""
    stamp = environ.get(ENVIRON_KEY)
    now = time.monotonic()
    return min(stamp, now) if isinstance(stamp, float) else now


class _TimedParser(HTTPRequestParser):
    arrived: float | None = None

    def received(self, data):
        if self.arrived is None:
            self.arrived = time.monotonic()
        return super().received(data)


class _TimedTask(WSGITask):
    def get_environment(self):
        environ = super().get_environment()
        environ[ENVIRON_KEY] = getattr(self.request, "arrived", None)
        return environ


class _TimedChannel(HTTPChannel):
    parser_class = _TimedParser
    task_class = _TimedTask


def serve(app, **adjustments) -> None:
    """waitress.serve, with arrival stamps."""
    server = create_server(app, **adjustments)
    listeners = [server] if isinstance(server, BaseWSGIServer) else \
        [s for s in server.map.values() if isinstance(s, BaseWSGIServer)]
    for listener in listeners:
        listener.channel_class = _TimedChannel
    server.print_listen("Serving on http://{}:{}")
    server.run()
