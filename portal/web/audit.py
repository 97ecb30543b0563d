"""The audit log (auditors and admins): filter by user, action and date; export as CSV; a
note on the archived records when the period reaches before the database's oldest. Who saw
what (also managers, for their environments): the passwords a person revealed, copied or
exported in a period, as a page and CSV."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, render_template, request
from flask_login import login_required
from sqlalchemy import Select, select

from .. import audit
from ..access import grants
from ..access.guards import role_required, seen_scope
from ..audit import archive_search, seen
from ..audit.queries import AuditQuery, select_events
from ..identity.users import actor
from ..models import User
from ..platform import clock
from ..platform.extensions import db
from ..platform.http import parse_query
from ..platform.text import neutralise

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


# The report shows this many credentials; its CSV holds them all.
SEEN_SHOWN = 500


@bp.get("/seen")
@login_required
def seen_report():
    """Who saw what: every password a person revealed, copied or exported in a period."""
    scope = seen_scope()
    form = {name: request.args.get(name, "").strip() for name in ("person", "since", "until")}
    report = None
    if form["person"]:
        query = parse_query(seen.SeenQuery)
        report = seen.report(query.person, query.since, query.until, scope)
    people = []
    if scope is None:  # a manager names the person: the list of users is not theirs to read
        people = db.session.scalars(select(User.username).order_by(User.username)).all()
    return render_template(
        "audit_seen.html",
        form=form,
        report=report,
        shown=SEEN_SHOWN,
        people=people,
        auditor=scope is None,
        can_rotate=grants.visible_environment_ids(actor(), "manage") != set(),
    )


@bp.get("/seen/export.csv")
@login_required
def export_seen_csv():
    """Download who saw what as CSV: every credential of the report, formula-safe."""
    scope = seen_scope()
    return seen.csv_response(parse_query(seen.SeenQuery), scope)
