"""`flask jobs …` (the huey consumer and the periodic jobs) and `flask outbox …` (what staff see of
notifications: the ones that failed, and retrying them)."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from rules.credentials import scrub_credentials
from rules.identity import mask_personal_data
from staff.cli import by_option, collector, local_time, table
from store import queries
from store.models import Notification

jobs_group = AppGroup("jobs", help="Background work (huey).")
outbox_group = AppGroup("outbox", help="Notifications to candidates (WeChat and SMS).")


@jobs_group.command("work")
@click.option("--workers", type=int, default=None, help="Worker threads (default: [jobs] workers).")
def work(workers: int | None) -> None:
    """Run the consumer: queued deliveries and refunds, and the periodic jobs on their schedule."""
    settings = collector().settings
    jobs = collector().jobs
    where = "Redis" if settings.redis_url else str(settings.huey_path)
    click.echo(f"huey consumer on {where}; periodic: "
               + ", ".join(f"{job.name} every {job.every_minutes} min" for job in jobs.periodic.values()))
    jobs.consumer(workers or settings.jobs.workers).run()


@jobs_group.command("run")
@click.argument("name")
def run(name: str) -> None:
    """Run one periodic job now, in this process (outbox, reviews, orders)."""
    jobs = collector().jobs
    if name not in jobs.periodic:
        raise click.ClickException(f"unknown job {name!r}; known: {', '.join(sorted(jobs.periodic))}")
    click.echo(f"{name}: {summary(jobs.run(name))}")


def summary(result) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{key}={value}" for key, value in result.items()) or "nothing to do"
    return str(result)


@jobs_group.command("list")
def list_jobs() -> None:
    """The periodic jobs and their schedule."""
    rows = [[job.name, str(job.every_minutes), job.description] for job in collector().jobs.periodic.values()]
    click.echo(table(["job", "every (min)", "what"], rows))


@outbox_group.command("status")
def status() -> None:
    """How many notifications are in each state."""
    with collector().db.read() as session:
        counts = session.execute(select(Notification.status, Notification.channel, func.count())
                                 .group_by(Notification.status, Notification.channel)).all()
    click.echo(table(["status", "channel", "count"], [[s, c, str(n)] for s, c, n in sorted(counts)]) if counts
               else "没有通知。")


@outbox_group.command("list")
@click.option("--status", "wanted", default="dead", show_default=True,
              type=click.Choice(["pending", "sending", "sent", "dead"]))
@click.option("--limit", default=50, show_default=True)
def list_notifications(wanted: str, limit: int) -> None:
    """Notifications in one state, newest first, with their last error."""
    with collector().db.read() as session:
        rows = list(session.scalars(select(Notification).where(Notification.status == wanted)
                                    .order_by(Notification.id.desc()).limit(limit)))
    if not rows:
        click.echo(f"没有状态为 {wanted} 的通知。")
        return
    click.echo(table(["id", "kind", "channel", "openid", "attempts", "created", "last error"],
                     [[str(r.id), r.kind, r.channel, r.openid, str(r.attempts), local_time(r.created_at),
                       scrub_credentials(mask_personal_data(r.last_error or "-"))[:100]] for r in rows]))


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="Every notification that gave up.")
@by_option
def retry(ids: tuple[int, ...], all_dead: bool, by: str) -> None:
    """Give notifications that gave up (dead) a fresh set of attempts."""
    if not ids and not all_dead:
        raise click.UsageError("name notification ids, or pass --all-dead")
    outbox = collector().outbox
    with collector().db.session() as session:
        revived = outbox.revive(session, None if all_dead else ids)
        if revived:
            queries.audit(session, by, "outbox.retry", "notifications", ",".join(map(str, revived)))
    click.echo(f"重新投递 {len(revived)} 条通知：{', '.join(map(str, revived)) or '-'}")
