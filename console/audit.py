"""/staff/audit: the audit log for admins, filterable, paginated, exportable to CSV (the export is audited)."""
from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context

from console import PREFIX
from console.auth import audit_event, requires
from staff import audit

blueprint = Blueprint("console_audit", __name__, url_prefix=PREFIX)

PER_PAGE = 50


@blueprint.get("/audit")
@requires("admin")
def audit_log():
    wanted, error = _filter_from_query()
    collector = current_app.extensions["collector"]
    tz = collector.settings.window.tz
    with collector.db.session() as session:
        page = audit.search(session, wanted, tz, page=_page_number(), per_page=PER_PAGE)
        known_actions = audit.actions(session)
    return render_template("console/audit.html", page=page, wanted=wanted, error=error, tz=tz,
                           known_actions=known_actions)


@blueprint.get("/audit.csv")
@requires("admin")
def audit_export():
    wanted, error = _filter_from_query()
    collector = current_app.extensions["collector"]
    tz = collector.settings.window.tz
    with collector.db.session() as session:
        audit_event(session, "audit.export", "audit_events", wanted.describe())

    def rows():
        with collector.db.session() as session:
            yield from audit.export_csv(session, wanted, tz)

    filename = f"audit-{date.today().isoformat()}.csv"
    return Response(stream_with_context(rows()), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _filter_from_query() -> tuple[audit.AuditFilter, str | None]:
    """The filter the form asked for; a date that does not parse is dropped and named."""
    args = request.args
    since, until, error = None, None, None
    try:
        since = date.fromisoformat(args["since"]) if args.get("since") else None
        until = date.fromisoformat(args["until"]) if args.get("until") else None
    except ValueError:
        error = "日期格式应为 年-月-日，例如 2026-11-29。已忽略日期条件。"
        since = until = None
    return audit.AuditFilter(actor=args.get("actor", "").strip(), action=args.get("action", "").strip(),
                             target=args.get("target", "").strip(), since=since, until=until), error


def _page_number() -> int:
    value = request.args.get("page", "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1
