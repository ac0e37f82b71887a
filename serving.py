"""The production server: gunicorn, worker processes and class from `[server]` (`flask serve --prod`).

Each worker builds its own app (no preload): database engines, Redis clients, thread pools and the
retry leases' renewal threads must not be shared across a fork. Every piece of state the workers
share lives in the database or Redis, so any number of them, on any number of hosts, can run side
by side.
"""
from __future__ import annotations

import os

from gunicorn.app.base import BaseApplication

from settings import ServerSettings

WORKER_CLASSES = ("sync", "gthread")


def worker_count(server: ServerSettings) -> int:
    """`[server] workers`, or the CPU count when it is 0: a text step is CPU-bound (SQLite: one writer at a
    time), and on 2 cores 4 sync workers answered half as many messages as 2 (make bench, SQLite)."""
    return server.workers if server.workers > 0 else (os.cpu_count() or 1)


def gunicorn_options(server: ServerSettings) -> dict[str, object]:
    if server.worker_class not in WORKER_CLASSES:
        raise ValueError(f'server.worker_class must be "sync" or "gthread", not {server.worker_class!r}')
    options: dict[str, object] = {
        "bind": f"{server.host}:{server.port}",
        "workers": worker_count(server),
        "worker_class": server.worker_class,
        # A worker stuck this long on one request is replaced; WeChat gave up on it after 5 s anyway.
        "timeout": server.timeout_seconds,
        # On SIGTERM a worker finishes its request (and its photo check) before it exits.
        "graceful_timeout": server.timeout_seconds,
        # Behind nginx: WeChat does not keep connections open, nginx talks to us over loopback.
        "keepalive": 2,
        "accesslog": None,
        "errorlog": "-",
        "proc_name": "photo-collector",
    }
    if server.worker_class == "gthread":
        options["threads"] = server.threads
    return options


class ProductionServer(BaseApplication):
    """gunicorn with its options from the config; each worker calls `app_factory()`."""

    def __init__(self, app_factory, options: dict[str, object]):
        self._app_factory = app_factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._app_factory()


def serve(app_factory, server: ServerSettings) -> None:
    ProductionServer(app_factory, gunicorn_options(server)).run()
