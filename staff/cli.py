"""Staff commands: `flask db …`, `flask roster import`, `flask review …`, `flask unbind`, `flask transcript`,
`flask support …`, `flask demo seed`. The logic lives in staff.roster and staff.review; this only prints."""
from __future__ import annotations

import getpass
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from handlers.texts import shorten
from staff import review, roster, support
from staff.review import StaffActionError
from staff.lookup import shown
from rules.credentials import scrub_credentials
from rules.identity import mask_id_number, mask_personal_data
from settings import ConfigError
from store import queries
from store.models import Message, Notification

DEMO_ROSTER = Path(__file__).resolve().parents[1] / "demo" / "roster.csv"
CONTENT_PREVIEW = 60


def register(app: Flask) -> None:
    for group in (db_group, roster_group, review_group, support_group, demo_group):
        app.cli.add_command(group)
    app.cli.add_command(unbind_command)
    app.cli.add_command(transcript_command)
    from staff.handover_cli import handover_group

    app.cli.add_command(handover_group)


def collector():
    return current_app.extensions["collector"]


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (e.g. a bare container)
        return "staff"


def by_option(function):
    return click.option("--by", default=default_actor, show_default="login name",
                        help="Staff member doing this (audited).")(function)


def local_time(moment: datetime) -> str:
    return moment.astimezone(collector().settings.window.tz).strftime("%Y-%m-%d %H:%M:%S")


def fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


# --- flask db ------------------------------------------------------------------------------------

db_group = AppGroup("db", help="Database schema (alembic migrations).")


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from store import migrate  # alembic: only the db commands pay for importing it

    # The app's Database has already created the SQLite file's folder.
    app = collector()
    migrate.upgrade(app.settings.database_url)
    seal_personal_data(app)
    click.echo("数据库已升级到最新版本。")


def seal_personal_data(app) -> None:
    """ID and phone numbers not yet encrypted under the active key get encrypted, a batch at a time."""
    from store import sealing

    def progress(step: sealing.TableProgress) -> None:
        if step.changed:
            click.echo(f"{step.table}：已加密证件号、手机号 {step.done}/{step.total}（本次改写 {step.changed} 行）")

    try:
        sealing.seal_existing(app.db, app.services.photo_files.keys, progress=progress)
    except ConfigError as exc:
        raise fail(exc) from exc


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database back to REVISION (e.g. base)."""
    from store import migrate

    migrate.downgrade(collector().settings.database_url, revision)
    click.echo(f"数据库已回退到 {revision}。")


# --- flask roster import ------------------------------------------------------------------------

roster_group = AppGroup("roster", help="The exam office's roster of graduates.")


@roster_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@by_option
def roster_import(file: Path, by: str) -> None:
    """Add or update graduates from a CSV or XLSX file (姓名,身份证号,准考证号,学历层次,专业)."""
    print_import_result(import_file(file, by))


def import_file(file: Path, by: str) -> roster.ImportResult:
    settings = collector().settings
    levels = [level.name for level in settings.collection.levels]
    today = datetime.now(settings.window.tz).date()
    try:
        with collector().db.session() as session:
            result = roster.import_audited(session, file, levels, today, by, file.name)
    except roster.RosterFileError as exc:
        raise fail(exc) from exc
    return result


def print_import_result(result: roster.ImportResult) -> None:
    click.echo(f"新增 {result.added}，更新 {result.updated}，未变 {result.unchanged}，拒绝 {result.rejected}")
    for rejection in result.rejections:
        click.echo(f"  第{rejection.row_number}行：{rejection.reason}")


# --- flask review ---------------------------------------------------------------------------------

review_group = AppGroup("review", help="Staff review of submitted photos.")


GRADUATE_HELP = ("GRADUATE: the full ID number, the 准考证号, or the masked ID number and the name as "
                 "`review pending` shows them (quote the mask: '110101********0118' 王小明).")


def graduate_argument(function):
    return click.argument("graduate", nargs=-1, required=True)(function)


@review_group.command("approve", epilog=GRADUATE_HELP)
@graduate_argument
@click.option("--wrong-rule", "wrong_rules", multiple=True,
              help="A checker rule that refused this photo wrongly (needed to approve a refused photo).")
@by_option
def review_approve(graduate: tuple[str, ...], wrong_rules: tuple[str, ...], by: str) -> None:
    """Approve the photo of GRADUATE."""
    reviewed = run_action(review.approve, collector().outbox, " ".join(graduate), by=by, wrong_rules=wrong_rules)
    click.echo(f"已通过：{reviewed.entry.name}（{mask_id_number(reviewed.entry.id_number)}），照片 {reviewed.photo.id}，已通知考生。")


@review_group.command("reject", epilog=GRADUATE_HELP)
@graduate_argument
@click.option("--preset", default=None, help="A preset reason's code (`flask review reasons` lists them).")
@click.option("--reason", default="", help="Why, in words the candidate understands (sent to them, after the preset).")
@by_option
def review_reject(graduate: tuple[str, ...], preset: str | None, reason: str, by: str) -> None:
    """Reject the photo of GRADUATE; they send a new one without paying again."""
    reviewed = run_action(review.reject, collector().outbox, " ".join(graduate), reason=reason, by=by,
                          preset=preset)
    click.echo(f"未通过：{reviewed.entry.name}（{mask_id_number(reviewed.entry.id_number)}），照片 {reviewed.photo.id}，"
               f"原因：{reviewed.photo.review_reason}。已通知考生重新上传。")


@review_group.command("force")
@click.argument("photo_id", type=int)
@click.option("--why", required=True, help="Why the checker's refusal should be looked at by a person (audited).")
@by_option
def review_force(photo_id: int, why: str, by: str) -> None:
    """Send a photo the checker refused to the review queue anyway."""
    forced = run_action(review.send_to_review, photo_id, by, why, outbox=collector().outbox)
    where = "已进入审核队列" if forced.paid else "考生尚未缴费：已转到缴费步骤，缴费后进入审核队列"
    click.echo(f"照片 {photo_id}（{forced.entry.name}，{mask_id_number(forced.entry.id_number)}）{where}，已通知考生。")


@review_group.command("reasons")
def review_reasons() -> None:
    """The preset reasons for rejecting a photo (admins edit them in the console)."""
    with collector().db.session() as session:
        rows = [[reason.code, reason.label, reason.text] for reason in review.reject_reasons(session)]
    click.echo(table(["代码", "名称", "考生收到的说明"], rows) if rows else "没有预设原因。")


@review_group.command("pending")
def review_pending() -> None:
    """Photos waiting for review, oldest first."""
    with collector().db.session() as session:
        items = review.pending_reviews(session)
    if not items:
        click.echo("没有待审核的照片。")
        return
    now = datetime.now(timezone.utc)
    hours = collector().settings.collection.review_hours
    rows = [[f"{item.hours_waiting(now):.1f}", f"{hours - item.hours_waiting(now):.1f}", item.name,
             item.masked_id_number, item.exam_number, item.level, str(item.photo_id or "-"),
             ",".join(item.refused) or "-", ",".join(item.hints) or "-", item.openid] for item in items]
    click.echo(table(["等待(小时)", "剩余(小时)", "姓名", "身份证号", "准考证号", "层次", "照片", "检查拒绝", "提示",
                      "openid"], rows))
    first = items[0]
    click.echo(f"共 {len(items)} 人待审核。审核用准考证号，或带*的身份证号加姓名，例如："
               f"flask review approve {first.exam_number}，或 flask review approve '{first.masked_id_number}' "
               f"{first.name}；不通过：flask review reject … --preset 代码（代码见 flask review reasons）")


def run_action(action, *args, **kwargs):
    """Runs a staff action in one transaction; its error exits with code 1 and changes nothing."""
    try:
        with collector().db.session() as session:
            return action(session, *args, **kwargs)
    except StaffActionError as exc:
        raise fail(exc) from exc


# --- flask unbind ---------------------------------------------------------------------------------

@click.command("unbind", epilog=GRADUATE_HELP)
@graduate_argument
@by_option
@with_appcontext
def unbind_command(graduate: tuple[str, ...], by: str) -> None:
    """Free GRADUATE for another WeChat account (the old one starts over)."""
    old_openid = run_action(review.unbind, " ".join(graduate), by=by)
    click.echo(f"已解除 {shown(' '.join(graduate))} 与微信号 {old_openid} 的绑定；该微信号回到开始步骤。")


# --- flask transcript -------------------------------------------------------------------------------

@click.command("transcript", epilog=GRADUATE_HELP)
@click.argument("openid_or_graduate", nargs=-1, required=True)
@click.option("--unmasked", is_flag=True, help="Show ID and phone numbers in full (audited).")
@by_option
@with_appcontext
def transcript_command(openid_or_graduate: tuple[str, ...], unmasked: bool, by: str) -> None:
    """The conversation of a WeChat account, or of every account that collected for a graduate."""
    openid_or_id_number = " ".join(openid_or_graduate)
    try:
        with collector().db.session() as session:
            target, openids = review.conversation_openids(session, openid_or_id_number)
            transcripts = [(openid, review.transcript(session, openid), review.notifications(session, openid))
                           for openid in openids]
            if unmasked:
                queries.audit(session, by, "transcript.unmasked", target)
    except StaffActionError as exc:
        raise fail(exc) from exc

    def show(text: str) -> str:  # credentials stay hidden even in an unmasked transcript
        return scrub_credentials(text if unmasked else mask_personal_data(text))

    for openid, rows, sent in transcripts:
        click.echo(f"== {openid}（{len(rows)} 条消息）")
        for row in rows:
            click.echo(format_message(row, show))
        if sent:
            click.echo(f"-- 通知（{len(sent)} 条，微信和短信）")
            for notification in sent:
                click.echo(format_notification(notification, show))


NOTIFICATION_STATUS = {"pending": "待发送", "sending": "发送中", "sent": "已发送", "dead": "已放弃"}


def format_notification(row: Notification, show) -> str:
    via = f"，经 {row.delivered_via}" if row.delivered_via else ""
    line = (f"{local_time(row.created_at)} #{row.id} {row.kind} {row.channel:<6} "
            f"{NOTIFICATION_STATUS.get(row.status, row.status)}（尝试 {row.attempts} 次{via}）")
    return line + (f"\n    ！{show(row.last_error)}" if row.last_error else "")


def format_message(row: Message, show) -> str:
    """One transcript entry; `show` masks (or not) the text that may carry personal data."""
    arrow = "→" if row.direction == "out" else "←"
    head = (f"{local_time(row.created_at)} {arrow} {row.direction:<3} {row.channel:<7} {row.msg_type:<6} "
            f"{row.state_before or '-'} → {row.state_after or '-'}")
    lines = [head] + [f"    {show(line)}" for line in (row.content or "").splitlines() or [""]]
    if row.media_path:
        lines.append(f"    文件: {collector().services.photo_files.path(row.media_path)}")
    if row.checks:
        lines.append(f"    检查: {show(summarise_checks(row.checks))}")
    if row.delivery_error:
        lines.append(f"    ！发送失败: {show(row.delivery_error)}")
    return "\n".join(lines)


def summarise_checks(checks: dict) -> str:
    parts = []
    for key, value in checks.items():
        if key == "photo" and isinstance(value, dict):
            parts.append(_photo_summary(value))
        else:
            parts.append(f"{key}={value}")
    return "; ".join(parts)


def _photo_summary(report: dict) -> str:
    failures = [failure.get("rule", "?") for failure in report.get("failures", [])]
    hints = [hint.get("code", "?") for hint in report.get("hints", [])]
    summary = f"photo {report.get('verdict', '?')}"
    if failures:
        summary += f" ({', '.join(failures)})"
    if hints:
        summary += f", hints: {', '.join(hints)}"
    return summary


# --- flask support ----------------------------------------------------------------------------------

support_group = AppGroup("support", help="Conversations that asked for a human (人工).")


@support_group.command("queue")
def support_queue() -> None:
    """Who asked for a human, oldest first."""
    with collector().db.read() as session:
        requests = support.queue(session)
    if not requests:
        click.echo("没有等待人工客服的对话。")
        return
    now = datetime.now(timezone.utc)
    rows = [[local_time(item.since), f"{(now - item.since).total_seconds() / 3600:.1f}", item.openid,
             item.state, item.name or "-", item.masked_id_number or "-", item.agent or "-",
             _preview(item.last_message)]
            for item in requests]
    click.echo(table(["请求时间", "等待(小时)", "openid", "步骤", "姓名", "身份证号", "接手客服", "最后一条消息"], rows))
    click.echo(f"共 {len(requests)} 人等待人工客服。完成后：flask support done OPENID")


@support_group.command("done")
@click.argument("openid")
@by_option
def support_done(openid: str, by: str) -> None:
    """Take OPENID off the support queue (a conversation an agent holds goes back to the bot)."""
    run_action(support.resolve, openid.strip(), by, collector().outbox, collector().settings)
    click.echo(f"已处理：{openid.strip()}")


def _preview(text: str | None) -> str:
    if not text:
        return "-"
    flat = mask_personal_data(" ".join(text.split()))
    return shorten(flat, CONTENT_PREVIEW)


# --- flask demo seed ---------------------------------------------------------------------------------

demo_group = AppGroup("demo", help="Demo data.")


@demo_group.command("seed")
@by_option
def demo_seed(by: str) -> None:
    """Load demo/roster.csv (fictional graduates) into the roster."""
    print_import_result(import_file(DEMO_ROSTER, by))
    example = demo_example()
    click.echo(f"在另一个终端运行 .venv/bin/flask --app standins.demo chat 试试："
               f"学历层次选“{example.level}”，再输入：{example.name} {example.id_number}")


def demo_example() -> roster.RosterRow:
    settings = collector().settings
    rows, _ = roster.parse_rows(roster.read_table(DEMO_ROSTER), [level.name for level in settings.collection.levels],
                                datetime.now(settings.window.tz).date())
    return rows[0]


# --- output -------------------------------------------------------------------------------------------

def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to the widest cell, counting a Chinese character as two."""
    widths = [max(display_width(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells) -> str:
        return "  ".join(str(cell) + " " * (width - display_width(str(cell)))
                         for cell, width in zip(cells, widths)).rstrip()

    return "\n".join([line(headers)] + [line(row) for row in rows])
