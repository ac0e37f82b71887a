"""`flask photo check` and `flask photo explain`: run the photo checker on files, for staff."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, ScriptInfo

from rules.photo import PhotoThresholds

photo_group = AppGroup("photo", help="Check graduation photos with the same rules the chat uses.")


def configured_thresholds() -> PhotoThresholds | None:
    """PHOTO_THRESHOLDS from the Flask app's config: the current app if there is an app context,
    else the app `flask --app` names; None (the defaults) when there is no app at all."""
    try:
        return _thresholds_of(current_app)
    except RuntimeError:  # no application context
        pass
    ctx = click.get_current_context(silent=True)
    info = ctx.find_object(ScriptInfo) if ctx is not None else None
    if info is None:
        return None
    try:
        app = info.load_app()
    except Exception:  # noqa: BLE001 - no app (or a broken one): the checker's defaults still work
        return None
    return _thresholds_of(app)


def read_photo(path: Path) -> bytes:
    """A stored photo (encrypted, under the data directory) through the app's PhotoFiles; any other file as it is."""
    from store.crypto import MAGIC

    with open(path, "rb") as source:
        if source.read(len(MAGIC)) != MAGIC:
            return path.read_bytes()
    try:
        app = current_app._get_current_object()
    except RuntimeError:  # no application context: the app `flask --app` names
        app = click.get_current_context().find_object(ScriptInfo).load_app()
    return app.extensions["collector"].services.photo_files.read_file(path)


def _thresholds_of(app) -> PhotoThresholds | None:
    value = app.config.get("PHOTO_THRESHOLDS")
    return value if isinstance(value, PhotoThresholds) else None


@photo_group.command("check", with_appcontext=False)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def check_command(files: tuple[Path, ...], as_json: bool) -> None:
    """Check FILE... and print the verdict, what to fix, and hints for the reviewer."""
    from rules.photo import check  # OpenCV and the face models: only for commands that check photos

    thresholds = configured_thresholds()
    failed = 0
    for path in files:
        started = time.perf_counter()
        report = check(read_photo(path), thresholds)
        ms = round((time.perf_counter() - started) * 1000, 1)
        failed += report.verdict == "fail"
        click.echo(_json_line(path, report, ms) if as_json else _summary(path, report, ms))
    if not as_json and len(files) > 1:
        click.echo(f"共 {len(files)} 张：通过 {len(files) - failed}，未通过 {failed}。")


def _json_line(path: Path, report, ms: float) -> str:
    data = report.to_dict()
    line = {"file": str(path), "verdict": data["verdict"], "failures": data["failures"], "hints": data["hints"], "ms": ms}
    return json.dumps(line, ensure_ascii=False)


def _summary(path: Path, report, ms: float) -> str:
    head = f"{path}: {'通过' if report.verdict == 'pass' else '未通过'}（{ms:.0f} ms）"
    lines = [head]
    lines += [f"  ✗ [{f.rule}] {f.message}（测得 {f.value}，阈值 {f.threshold}{_margin(f)}）" for f in report.failures]
    lines += [f"  ? [{h.code}] {h.message}" for h in report.hints]
    return "\n".join(lines)


def _margin(finding) -> str:
    """How sure: the distance past the limit in measurement noise (exact rules have none)."""
    return "" if finding.margin is None else f"，超出限值 {finding.margin:.1f} 倍测量误差"


@photo_group.command("explain", with_appcontext=False)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the annotated PNG (default: a new file in the temporary folder).")
def explain_command(file: Path, output: Path | None) -> None:
    """Write an annotated PNG showing why FILE passed or failed (never beside FILE unless asked)."""
    from rules.photo.explain import explain as explain_photo

    report, png = explain_photo(read_photo(file), configured_thresholds())
    output = output or temporary_output(file)
    output.write_bytes(png)
    click.echo(_summary(file, report, 0.0).split("\n", 1)[-1] if report.failures or report.hints else "")
    click.echo(f"已写入 {output}")


@photo_group.command("stats")
def stats_command() -> None:
    """The checker's field error rate per rule: refusals, how many a reviewer decided, how many the
    reviewer found wrong (approved with the rule marked) or upheld (rejected)."""
    from staff.photo_stats import rule_stats

    with current_app.extensions["collector"].db.session() as session:
        rows = rule_stats(session)
    if not rows:
        click.echo("还没有被自动检查拒绝或存疑的照片。")
        return
    click.echo("规则 拒绝 已人工审核 判错 维持 误判率 存疑提示")
    for row in rows:
        rate = "-" if row.error_rate is None else f"{row.error_rate * 100:.0f}%"
        click.echo(f"{row.rule} {row.refused} {row.reviewed} {row.wrong} {row.upheld} {rate} {row.unsure}")


def temporary_output(file: Path) -> Path:
    """A new file of its own in the temporary folder: the photo's folder may be read-only, shared, or
    the candidates' photo store, where a stray PNG does not belong."""
    fd, name = tempfile.mkstemp(prefix=f"{file.stem[:40]}-", suffix=".explain.png")
    os.close(fd)
    return Path(name)
