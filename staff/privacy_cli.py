"""`flask keys rotate`, `flask retention report|run` and `flask erase`: the CLI door to staff/privacy.py."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from settings import ConfigError
from staff import privacy
from staff.audit import record
from staff.cli import by_option, fail, table
from store import sealing

keys_group = AppGroup("keys", help="Encryption keys of personal data at rest ([privacy]).")
retention_group = AppGroup("retention", help="How long personal data is kept ([retention]).")


def collector():
    return current_app.extensions["collector"]


@keys_group.command("rotate")
@click.option("--batch", default=privacy.ROTATE_BATCH, show_default=True, help="Files between progress lines.")
@by_option
def rotate_command(batch: int, by: str) -> None:
    """Re-encrypt every ID and phone number, then every photo file, under [privacy] active_key.
    Safe to stop and run again: it goes on where it stopped."""
    app = collector()
    files = app.services.photo_files

    def sealed(step: sealing.TableProgress) -> None:
        click.echo(f"{step.table}: 已检查 {step.done}/{step.total}，已重新加密 {step.changed}")

    def progress(done: privacy.Rotation) -> None:
        click.echo(f"照片：已转换 {done.rotated}，已是当前密钥 {done.already}，失败 {len(done.failed)}")

    try:
        rows = sealing.seal_existing(app.db, files.keys, progress=sealed)
        result = privacy.rotate_photo_files(files, progress, batch)
    except ConfigError as exc:
        raise fail(exc) from exc
    with app.db.session() as session:
        record(session, by, "keys.rotate", f"key {files.keys.active_key}",
               f"rows {sum(rows.values())}, files rotated {result.rotated}, already {result.already}, "
               f"failed {len(result.failed)}")
    if result.failed:
        raise click.ClickException(f"{len(result.failed)} 个文件无法用现有密钥解开（见日志），其余已完成")
    click.echo(f"完成：所有证件号、手机号和照片文件都已使用密钥 {files.keys.active_key}")


@keys_group.command("status")
def status_command() -> None:
    """Photo files per key id, and rows not yet re-encrypted under the active key: an old key can go
    once it encrypts none (and no backup needs it)."""
    app = collector()
    files = app.services.photo_files
    pending = {table: count for table, count in sealing.pending_counts(app.db, files.keys).items() if count}
    click.echo("数据库：" + ("、".join(f"{table} 还有 {count} 行待检查" for table, count in pending.items())
                          if pending else f"所有证件号、手机号都已使用密钥 {files.keys.active_key}"))
    counts = privacy.files_by_key(files)
    rows = [[key_id if key_id is not None else "（未加密）", str(count),
             "当前" if key_id == files.keys.active_key else ""] for key_id, count in sorted(counts.items(), key=str)]
    click.echo(table(["密钥", "照片文件数", ""], rows) if rows else "没有照片文件")


@keys_group.command("new")
def new_key_command() -> None:
    """Print a new random key (base64 of 32 bytes) to add to [privacy] keys."""
    from store.crypto import new_key

    click.echo(new_key())


@retention_group.command("report")
def report_command() -> None:
    """What the retention job deletes, by kind and due day (past days: the next run)."""
    app = collector()
    with app.db.read() as session:
        lines = privacy.retention_report(session, app.settings)
    if not lines:
        click.echo("没有待删除的个人数据")
        return
    click.echo(table(["类别", "到期日", "数量"],
                     [[privacy.KIND_NAMES[line.kind], line.due.isoformat(), str(line.count)] for line in lines]))


@retention_group.command("run")
def run_command() -> None:
    """Delete what is due now (the periodic job "retention" does this by itself)."""
    app = collector()
    counts = privacy.run_retention(app.db, app.settings, app.services.photo_files)
    click.echo("，".join(f"{name} {count}" for name, count in counts.items()))


@click.command("erase")
@click.argument("graduate")
@with_appcontext
@click.option("--reason", required=True, help="Why (e.g. the request's reference); audited.")
@by_option
def erase_command(graduate: str, reason: str, by: str) -> None:
    """Erase a graduate's personal data on request, except what accounting keeps (audited)."""
    app = collector()
    try:
        result = privacy.erase_graduate(app.db, app.settings, app.services.photo_files, graduate, by, reason)
    except privacy.ErasureError as exc:
        raise fail(exc) from exc
    click.echo(f"已删除 {result.masked_id} 的个人数据："
               + "，".join(f"{name} {count}" for name, count in sorted(result.counts.items())))
