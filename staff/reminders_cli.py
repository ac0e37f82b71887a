"""`flask remind …`: reminder campaigns from the command line (the same functions as /staff/reminders)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click
from flask.cli import AppGroup

from staff import reminders
from staff.cli import by_option, collector, local_time, table
from staff.reminders import Audience, ReminderError

remind_group = AppGroup("remind", help="Reminder campaigns (WeChat, template messages, SMS).")


def queue_driver(session, campaign_id: int) -> None:
    """Once the transaction commits, a worker starts driving the campaign."""
    app = collector()
    app.db.after_commit(session, lambda: app.jobs.enqueue("remind", campaign_id))


def parse_local_time(text: str) -> datetime:
    """"2026-06-13 09:00" (local time, [window] timezone) → an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("T", " "))
    except ValueError as exc:
        raise click.BadParameter(f"不是时间：{text!r}（例如 2026-06-13 09:00）") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=collector().settings.window.tz)
    return moment.astimezone(timezone.utc)


def counts_line(counts: reminders.Counts) -> str:
    parts = [f"{reminders.CHANNELS[name]} {counts.by_channel.get(name, 0)}" for name in reminders.CHANNELS]
    reasons = "；".join(f"{reminders.REASONS.get(k, k)} {v}" for k, v in counts.unreachable_by_reason.items())
    return f"共 {counts.total} 人：" + "，".join(parts) + (f"（{reasons}）" if reasons else "")


@remind_group.command("segments")
@click.option("--level", default=None, help="Only this education level (专科/本科).")
@click.option("--stuck-hours", type=int, default=None, help="Hours at one step for the stuck segment.")
def segments(level: str | None, stuck_hours: int | None) -> None:
    """How many graduates each segment holds now, and by which channel they would be reached."""
    app = collector()
    with app.db.read() as session:
        found = reminders.segment_counts(session, app.settings, level, stuck_hours)
    rows = [[name, reminders.SEGMENTS[name], str(c.total)] + [str(c.by_channel.get(ch, 0)) for ch in reminders.CHANNELS]
            for name, c in found.items()]
    click.echo(table(["segment", "人群", "total"] + list(reminders.CHANNELS), rows))


@remind_group.command("create")
@click.option("--segment", required=True, type=click.Choice(list(reminders.SEGMENTS)))
@click.option("--text", required=True, help="The reminder; placeholders {姓名} {截止时间} {学历层次} {办公电话}.")
@click.option("--level", default=None, help="Only this education level.")
@click.option("--at", "at", default=None, help="Send at this local time (e.g. '2026-06-13 09:00'); else `send` sends now.")
@click.option("--stuck-hours", type=int, default=None, help="For --segment stuck (default [reminders] stuck_hours).")
@click.option("--ids-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="For --segment id_list: a text file of ID numbers.")
@by_option
def create(segment, text, level, at, stuck_hours, ids_file, by) -> None:
    """Create a campaign (a draft): prints its number, the per-channel counts and a rendered preview."""
    app = collector()
    send_at = parse_local_time(at) if at else None
    try:
        ids = reminders.parse_id_numbers(ids_file.read_text(encoding="utf-8-sig"), datetime.now().date()) \
            if ids_file else ()
        audience = Audience(segment, level, stuck_hours, ids)
        with app.db.session() as session:
            campaign = reminders.create(session, app.settings, audience, text, by, send_at=send_at)
            shown = reminders.preview(session, app.settings, audience, campaign.text)
            campaign_id = campaign.id
    except ReminderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"提醒活动 {campaign_id} 已创建（草稿）。{counts_line(shown.counts)}")
    if shown.text:
        click.echo(f"预览（{shown.name}）：{shown.text}")
    click.echo(f"发送：flask remind send {campaign_id}" + (f"（将于 {at} 开始）" if at else ""))


def _change(action, campaign_id: int, by: str, done: str) -> None:
    app = collector()
    try:
        with app.db.session() as session:
            campaign = action(session, campaign_id, by)
            if campaign.status in ("sending", "scheduled"):
                queue_driver(session, campaign_id)
    except ReminderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(done.format(id=campaign_id))


@remind_group.command("send")
@click.argument("campaign_id", type=int)
@by_option
def send(campaign_id: int, by: str) -> None:
    """Send the campaign now (or at the time it was created with)."""
    app = collector()
    try:
        with app.db.session() as session:
            campaign = reminders.send(session, app.settings, campaign_id, by)
            status, planned, send_at = campaign.status, campaign.planned_count, campaign.send_at
            queue_driver(session, campaign_id)
    except ReminderError as exc:
        raise click.ClickException(str(exc)) from exc
    if status == "scheduled":
        click.echo(f"提醒活动 {campaign_id} 将于 {local_time(send_at)} 开始发送。")
    else:
        click.echo(f"提醒活动 {campaign_id}：{reminders.STATUSES[status]}，共 {planned} 人。"
                   f"查看进度：flask remind status {campaign_id}")


@remind_group.command("pause")
@click.argument("campaign_id", type=int)
@by_option
def pause(campaign_id: int, by: str) -> None:
    """Stop sending; resume carries on where it stopped."""
    _change(reminders.pause, campaign_id, by, "提醒活动 {id} 已暂停。")


@remind_group.command("resume")
@click.argument("campaign_id", type=int)
@by_option
def resume(campaign_id: int, by: str) -> None:
    """Carry on sending a paused campaign."""
    _change(reminders.resume, campaign_id, by, "提醒活动 {id} 继续发送。")


@remind_group.command("cancel")
@click.argument("campaign_id", type=int)
@by_option
def cancel(campaign_id: int, by: str) -> None:
    """Send nothing more (what was sent stays sent)."""
    _change(reminders.cancel, campaign_id, by, "提醒活动 {id} 已取消。")


def status_text(found: reminders.Progress) -> str:
    lines = [f"提醒活动 {found.campaign_id}：{reminders.STATUSES.get(found.status, found.status)}，{found.percent}%",
             f"计划 {found.planned}，已发送 {found.sent}，失败 {found.failed}，等待 {found.waiting}，"
             f"跳过 {found.skipped}"]
    if found.sent_by_channel:
        lines.append("已发送：" + "，".join(f"{reminders.CHANNELS.get(k, k)} {v}" for k, v in found.sent_by_channel.items()))
    for reason, number in found.skipped_by_reason.items():
        lines.append(f"跳过（{reminders.REASONS.get(reason, reason)}）：{number}")
    for reason, number in found.failed_by_reason.items():
        lines.append(f"失败（{reason}）：{number}")
    lines.append(f"速度 {found.rate_per_second:.1f} 条/秒" + (
        f"，预计还需 {int(found.seconds_left // 60)} 分 {int(found.seconds_left % 60)} 秒" if found.seconds_left else ""))
    if found.quiet_until:
        lines.append(f"静默时段，{local_time(found.quiet_until)} 自动继续。")
    if found.status == "scheduled" and found.send_at:
        lines.append(f"将于 {local_time(found.send_at)} 开始。")
    return "\n".join(lines)


@remind_group.command("status")
@click.argument("campaign_id", type=int)
def status(campaign_id: int) -> None:
    """Progress: planned, sent (by channel), failed, skipped by reason, rate, time left."""
    app = collector()
    try:
        with app.db.read() as session:
            found = reminders.progress(session, app.settings, campaign_id)
    except ReminderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(status_text(found))


@remind_group.command("list")
def list_campaigns() -> None:
    """The latest campaigns."""
    app = collector()
    with app.db.read() as session:
        rows = [[str(c.id), reminders.STATUSES[c.status], c.segment, c.level or "-", str(c.planned_count),
                 local_time(c.created_at), c.created_by] for c in reminders.list_campaigns(session)]
    click.echo(table(["id", "状态", "segment", "level", "planned", "created", "by"], rows) if rows else "没有提醒活动。")


@remind_group.command("report")
@click.argument("campaign_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--reveal", "reason", default=None, help="Unmasked names, ID and phone numbers, for this reason (audited).")
@by_option
def report(campaign_id: int, out: Path, reason: str | None, by: str) -> None:
    """The delivery report as CSV (masked unless --reveal REASON)."""
    app = collector()
    try:
        with app.db.session() as session:
            chunks = list(reminders.report_csv(session, app.settings, campaign_id, by, reason))
    except ReminderError as exc:
        raise click.ClickException(str(exc)) from exc
    from store.files import private_file

    with private_file(out, "w") as file:
        file.write("".join(chunks))
    click.echo(f"已写入 {out}")
