"""`flask handover build` and `flask handover list`: the CLI door to staff/handover.py."""
from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from staff import handover
from staff.cli import by_option, fail, local_time, table

handover_group = AppGroup("handover", help="Hand approved photos over to the exam office.")

STATUS = {"building": "生成中", "ready": "已生成", "failed": "失败"}


def collector():
    return current_app.extensions["collector"]


@handover_group.command("build")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also copy the zip into this folder.")
@by_option
def build_command(out_dir: Path | None, by: str) -> None:
    """Put every approved photo not yet handed over into a new batch (zip + manifest XLSX)."""
    settings = collector().settings
    try:
        batch = handover.build_batch(collector().db, settings, by, out_dir)
    except handover.HandoverError as exc:
        raise fail(exc) from exc
    click.echo(f"报送批次 {batch.id}：{batch.photo_count} 张照片，{batch.size_bytes} 字节")
    click.echo(f"文件：{settings.data_dir / batch.path}")
    if out_dir is not None:
        click.echo(f"已复制到：{out_dir / batch.file_name}")


@handover_group.command("list")
def list_command() -> None:
    """Batches built so far, newest first, and how many approved photos wait for the next one."""
    with collector().db.session() as session:
        batches = handover.list_batches(session)
        waiting = handover.waiting_count(session)
    if batches:
        rows = [[str(b.id), local_time(b.created_at), b.created_by, STATUS.get(b.status, b.status), str(b.photo_count),
                 b.file_name or (b.error or "-")] for b in batches]
        click.echo(table(["批次", "时间", "操作人", "状态", "照片数", "文件"], rows))
    else:
        click.echo("还没有报送批次。")
    click.echo(f"待报送（已通过未报送）：{waiting} 张")
