"""/staff/roster: upload the exam office's roster in the browser. The file is checked first (a dry run that
writes nothing: added, updated, unchanged, every rejected row and why), then committed on a second click.
Between the two the upload waits under the data directory, named by a token in the form, never in the cookie."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, render_template, request

from console import PREFIX
from console.auth import client_address, requires, collector
from flask_login import current_user
from staff import roster

blueprint = Blueprint("console_roster", __name__, url_prefix=PREFIX)

# A roster of tens of thousands of graduates is a few MB: more than the webhook's body limit.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@blueprint.url_value_preprocessor
def allow_roster_files(endpoint, _values) -> None:
    """Raises the body limit for the upload before anything reads the form (the CSRF check does, ahead
    of the view); url_value_preprocessor runs before every before_request function."""
    if endpoint == "console_roster.preview":
        request.max_content_length = MAX_UPLOAD_BYTES


@blueprint.errorhandler(413)
def too_large(_error):
    return _problem(f"文件太大：名单文件最大 {MAX_UPLOAD_BYTES // (1024 * 1024)} MB。请拆成几个文件分别上传。", 413)


@blueprint.get("/roster")
@requires("admin")
def roster_page():
    return render_template("console/roster.html", stage="upload")


@blueprint.post("/roster/preview")
@requires("admin")
def preview():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _problem("请选择要上传的名单文件（CSV 或 XLSX）。")
    settings = collector().settings
    try:
        token = roster.keep_upload(settings.data_dir, upload.filename, upload.read())
        result = _run(token, upload.filename, commit=False)
    except roster.RosterFileError as error:
        return _problem(f"无法读取这个文件：{error}")
    return render_template("console/roster.html", stage="preview", result=result, token=token,
                           file_name=upload.filename)


@blueprint.post("/roster/commit")
@requires("admin")
def commit():
    token, file_name = request.form.get("token", ""), request.form.get("file_name", "")[:128]
    try:
        result = _run(token, file_name, commit=True)
    except roster.RosterFileError as error:
        return _problem(f"导入失败：{error}")
    roster.kept_upload(collector().settings.data_dir, token).unlink(missing_ok=True)
    return render_template("console/roster.html", stage="done", result=result, file_name=file_name)


def _run(token: str, file_name: str, commit: bool) -> roster.ImportResult:
    settings = collector().settings
    path = roster.kept_upload(settings.data_dir, token)
    levels = [level.name for level in settings.collection.levels]
    with collector().db.session() as session:
        return roster.import_audited(session, path, levels, datetime.now(settings.window.tz).date(),
                                     current_user.name, file_name or path.name, commit=commit, ip=client_address())


def _problem(message: str, status: int = 400):
    return render_template("console/roster.html", stage="upload", error=message), status
