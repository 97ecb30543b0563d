"""The audit log (auditors and admins): filter by user, action and date; export as CSV; a
note on the archived records when the period reaches before the database's oldest."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, render_template
from sqlalchemy import Select

from .. import audit
from ..access.guards import role_required
from ..audit import archive_search
from ..audit.queries import AuditQuery, select_events
from ..platform import clock
from ..platform.extensions import db
from ..platform.http import parse_query
from ..vault.exports import neutralise

bp = Blueprint("audit", __name__, url_prefix="/audit")


def _filters() -> tuple[Select, dict, AuditQuery]:
    filters = parse_query(AuditQuery)
    values = {
        "actor": filters.actor,
        "action": filters.action,
        "since": filters.since.isoformat() if filters.since else "",
        "until": filters.until.isoformat() if filters.until else "",
    }
    return select_events(filters), values, filters


@bp.get("/")
@role_required("auditor", "admin")
def audit_log():
    """List audit events, newest first, filtered by user, action and date range; say where
    the archived ones are when the period reaches before the database's oldest."""
    query, values, filters = _filters()
    events = db.session.scalars(query.limit(500)).all()
    archived = archive_search.note(filters.since, filters.until)
    return render_template("audit.html", events=events, filters=values, archived=archived, **values)


@bp.get("/export.csv")
@role_required("auditor", "admin")
def export_audit_csv():
    """Download the filtered audit log as CSV."""
    query, _, _ = _filters()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["time_utc", "actor", "address", "action", "target", "outcome", "details"])
    for event in db.session.scalars(query):
        writer.writerow(
            [
                neutralise(v)
                for v in (
                    event.at.strftime("%Y-%m-%d %H:%M:%S"),
                    event.actor,
                    event.ip or "",
                    event.action,
                    event.target,
                    event.outcome,
                    event.details or "",
                )
            ]
        )
    audit.record("audit.export", "audit log")
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        ("\ufeff" + buffer.getvalue()).encode(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="vcf-portal-audit_{stamp}.csv"'},
    )
