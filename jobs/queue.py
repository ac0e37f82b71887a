"""Background work on huey. The embedded default keeps the queue in its own SQLite file; with
`redis_url` set it lives in Redis; with `[jobs] immediate = true` tasks run at once in the caller
(tests). Tasks are registered per app, so the consumer (`flask jobs work`) builds the same app from
the same config and knows the same tasks."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab

from settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    """A job that runs on a schedule, and on demand with `flask jobs run <name>`."""
    name: str
    every_minutes: int
    run: Callable[[], Any]
    description: str


def build_huey(settings: Settings) -> Huey:
    name = settings.jobs.queue_name
    if settings.jobs.immediate:
        return MemoryHuey(name, immediate=True, results=False)
    if settings.redis_url:
        return RedisHuey(name, url=settings.redis_url, results=False)
    settings.huey_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(settings.huey_path), results=False)


class Jobs:
    def __init__(self, huey: Huey):
        self.huey = huey
        self._tasks: dict[str, Any] = {}
        self.periodic: dict[str, Periodic] = {}

    def task(self, name: str, func: Callable[..., Any]) -> None:
        def run(*args: Any) -> Any:  # a plain function: huey reads __module__, which partials lack
            return func(*args)
        self._tasks[name] = self.huey.task(name=name)(run)

    def every(self, name: str, minutes: int, func: Callable[[], Any], description: str) -> None:
        job = Periodic(name, minutes, func, description)
        self.periodic[name] = job
        self.huey.periodic_task(crontab(minute=f"*/{minutes}" if minutes < 60 else "0"), name=f"periodic.{name}")(
            self._logged(job))

    def enqueue(self, name: str, *args: Any) -> None:
        self._tasks[name](*args)

    def run(self, name: str) -> Any:
        return self.periodic[name].run()

    @staticmethod
    def _logged(job: Periodic) -> Callable[[], Any]:
        def run() -> Any:
            result = job.run()
            log.info("periodic job %s: %s", job.name, result)
            return result
        return run

    def consumer(self, workers: int):
        return self.huey.create_consumer(workers=workers, worker_type="thread", periodic=True,
                                         check_worker_health=True)
