"""The audit log (admin only): filter by user, action and date; export as CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from flask import Blueprint, Response, abort, render_template, request
from sqlalchemy import Select, select

from .. import audit, clock
from ..access import admin_required
from ..exports import neutralise
from ..extensions import db
from ..models import AuditEvent

bp = Blueprint("audit", __name__, url_prefix="/audit")


def _day(name: str) -> datetime | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return datetime.strptime(raw, "%Y-%m-%d")
    except ValueError:
        abort(400, description=f"{name} must be a date like 2026-01-31")


def _filters() -> tuple[Select, dict]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    values = {
        key: (request.args.get(key) or "").strip() for key in ("actor", "action", "since", "until")
    }
    if values["actor"]:
        query = query.where(AuditEvent.actor == values["actor"])
    if values["action"]:
        query = query.where(AuditEvent.action.startswith(values["action"]))
    if (since := _day("since")) is not None:
        query = query.where(AuditEvent.at >= since)
    if (until := _day("until")) is not None:
        query = query.where(AuditEvent.at < until + timedelta(days=1))
    return query, values


@bp.get("/")
@admin_required
def audit_log():
    """List audit events, newest first, filtered by user, action and date range."""
    query, values = _filters()
    events = db.session.scalars(query.limit(500)).all()
    return render_template("audit.html", events=events, filters=values, **values)


@bp.get("/export.csv")
@admin_required
def export_audit_csv():
    """Download the filtered audit log as CSV."""
    query, _ = _filters()
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
    db.session.commit()
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    return Response(
        ("\ufeff" + buffer.getvalue()).encode(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="vcf-portal-audit_{stamp}.csv"'},
    )
