"""Background work on huey. The embedded default keeps the queue in its own SQLite file; with
`redis_url` set it lives in Redis; with `[jobs] immediate = true` tasks run at once in the caller
(tests). Tasks are registered per app, so the consumer (`flask jobs work`) builds the same app from
the same config and knows the same tasks.

The queue is a convenience, never a requirement: every task it carries is also found by a periodic
sweep, so a queue that is down makes `enqueue` log (once per interval) and return; the consumer waits
for it with a growing pause instead of spinning, and runs the periodic jobs itself meanwhile."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer, Scheduler, Worker

from health import Outage, RedisLink, redis_client
from pacing import RepeatFilter
from settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    """A job that runs on a schedule, and on demand with `flask jobs run <name>`."""
    name: str
    every_minutes: int
    run: Callable[[], Any]
    description: str


# How long huey's consumer blocks on Redis waiting for a task (BRPOP); its socket timeout allows for it.
READ_TIMEOUT_SECONDS = 1
# The consumer's pause after the queue failed, doubling up to the maximum while it stays down.
FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 30.0


def build_huey(settings: Settings) -> Huey:
    name = settings.jobs.queue_name
    if settings.jobs.immediate:
        return MemoryHuey(name, immediate=True, results=False)
    if settings.redis_url:
        client = redis_client(settings, extra_socket_timeout=READ_TIMEOUT_SECONDS)
        return RedisHuey(name, connection_pool=client.connection_pool, read_timeout=READ_TIMEOUT_SECONDS,
                         results=False)
    settings.huey_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name, filename=str(settings.huey_path), results=False)


def build_jobs(settings: Settings, redis: RedisLink | None = None) -> "Jobs":
    """The app's jobs on its huey; with Redis, queue failures count against the shared Redis outage."""
    if settings.redis_url and not settings.jobs.immediate:
        redis = redis or RedisLink(settings)
        outage = redis.outage
    else:
        outage = Outage("the job queue", settings.redis.retry_after_seconds,
                        settings.server.outage_log_every_seconds, "notifications wait for the outbox sweep")
    return Jobs(build_huey(settings), outage=outage, redis=redis if settings.redis_url else None,
                log_every=settings.server.outage_log_every_seconds)


class Jobs:
    def __init__(self, huey: Huey, outage: Outage | None = None, redis: RedisLink | None = None,
                 log_every: float = 60.0):
        self.huey = huey
        self.outage = outage or Outage("the job queue", 5.0, log_every)
        self.redis = redis  # for /healthz: None unless redis_url is set
        self.log_every = log_every
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
        """Queues a task; never raises because the queue is down (the periodic sweep does the work)."""
        if self.huey.immediate:
            self._tasks[name](*args)
            return
        if self.outage.is_down():
            return
        try:
            self._tasks[name](*args)
        except Exception as error:  # noqa: BLE001 - Redis or SQLite errors alike: the sweep catches up
            self.outage.failed(error)
            return
        self.outage.ok()

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
        quiet = QueueErrorFilter(self.outage, self.log_every)
        for name in ("huey.consumer", "huey.consumer.Scheduler", "huey.consumer.Worker"):
            logging.getLogger(name).addFilter(quiet)
        return PatientConsumer(self.huey, self.outage, workers=workers, worker_type="thread", periodic=True,
                               check_worker_health=True)


class QueueErrorFilter(logging.Filter):
    """huey's scheduler logs a traceback every second while it cannot reach the queue: those records
    go to the outage instead (one line per interval); anything else huey complains about passes once
    per interval."""
    QUEUE_ERRORS = frozenset({"Error reading schedule.", "Error enqueueing %s.", "Error enqueueing periodic task %s.",
                              "Error reading from queue"})

    def __init__(self, outage: Outage, seconds: float):
        super().__init__()
        self.outage = outage
        self.repeats = RepeatFilter(seconds)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.QUEUE_ERRORS and record.exc_info and record.exc_info[1] is not None:
            self.outage.failed(record.exc_info[1])
            return False
        return self.repeats.filter(record)


class PatientWorker(Worker):
    """huey's worker, except that a queue it cannot read is reported to the outage (logged once per
    interval) and waited for with a pause that doubles up to MAX_PAUSE_SECONDS, not retried at once."""

    def __init__(self, *args: Any, outage: Outage, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outage = outage
        self.pause = FIRST_PAUSE_SECONDS

    def loop(self, now=None):
        try:
            task = self.huey.dequeue()
        except Exception as error:  # noqa: BLE001
            self.outage.failed(error)
            self.stop_flag.wait(self.pause)
            self.pause = min(self.pause * 2, MAX_PAUSE_SECONDS)
            return
        self.outage.ok()
        self.pause = FIRST_PAUSE_SECONDS
        if task is None:
            if not self.huey.storage.blocking:
                self.sleep()
            return
        self.delay = self.default_delay
        self.task_count += 1
        try:
            self.huey.execute(task, now)
        except Exception:  # noqa: BLE001 - as huey's own worker: one failed task does not stop the loop
            self._logger.exception("Unhandled error during execution of task %s.", task.id)


class PatientScheduler(Scheduler):
    """huey's scheduler, except that a periodic job it cannot queue runs right here: the outbox sweep
    then still delivers while the queue is down, instead of waiting for it to come back."""

    def __init__(self, *args: Any, outage: Outage, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outage = outage

    def enqueue_periodic_tasks(self, now):
        for task in self.huey.read_periodic(now):
            try:
                self.huey.enqueue(task)
            except Exception as error:  # noqa: BLE001
                self.outage.failed(error)
                self._run_here(task)

    def _run_here(self, task) -> None:
        self._logger.info("running periodic task %s in the scheduler: the queue is down", task.name)
        try:
            task.execute()
        except Exception:  # noqa: BLE001 - as in a worker: one failed job does not stop the scheduler
            self._logger.exception("periodic task %s failed", task.name)


class PatientConsumer(Consumer):
    def __init__(self, huey: Huey, outage: Outage, **options: Any):
        self._outage = outage
        super().__init__(huey, **options)

    def _create_scheduler(self):
        return PatientScheduler(huey=self.huey, stop_flag=self.stop_flag, interval=self.scheduler_interval,
                                periodic=self.periodic, outage=self._outage)

    def _create_worker(self):
        return PatientWorker(huey=self.huey, stop_flag=self.stop_flag, default_delay=self.default_delay,
                             max_delay=self.max_delay, backoff=self.backoff, max_tasks=self.max_tasks,
                             outage=self._outage)
