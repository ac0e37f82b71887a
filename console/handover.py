"""/staff/handover: build a hand-over batch of the approved photos and download batches again (admins only;
every build and download is audited)."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, send_file, url_for
from flask_login import current_user

from console import PREFIX
from console.auth import client_address, requires, collector
from staff import handover

blueprint = Blueprint("console_handover", __name__, url_prefix=PREFIX)


@blueprint.get("/handover")
@requires("admin")
def handover_page():
    with collector().db.session() as session:
        batches = handover.list_batches(session)
        waiting = handover.waiting_count(session)
    settings = collector().settings
    return render_template("console/handover.html", batches=batches, waiting=waiting, tz=settings.window.tz,
                           handover=settings.handover)


@blueprint.post("/handover/build")
@requires("admin")
def build():
    """Claims the photos now (fast, in this request) and writes the zip in the background: a batch of
    20 000 photos with normalised copies takes minutes."""
    try:
        batch_id = handover.claim_batch(collector().db, collector().settings, current_user.name)
    except handover.HandoverError as error:
        flash(str(error))
    else:
        collector().jobs.enqueue("handover", batch_id, client_address())
        flash(f"报送批次 {batch_id} 已开始生成；生成好后可在下方下载（刷新本页查看）。")
    return redirect(url_for("console_handover.handover_page"))


@blueprint.get("/handover/<int:batch_id>/download")
@requires("admin")
def download(batch_id: int):
    try:
        with collector().db.session() as session:
            path = handover.batch_file(session, collector().settings.data_dir, batch_id, current_user.name,
                                       ip=client_address())
    except handover.HandoverError as error:
        return render_template("console/error.html", title="无法下载", message=str(error)), 404
    return send_file(path, mimetype="application/zip", as_attachment=True, download_name=path.name)
