"""The audit log (JSON; auditors and admins): the page's filters, newest first, and where the
archived records are when the period reaches before the database's oldest."""

from __future__ import annotations

from flask import jsonify

from ..access.guards import role_required
from ..audit import archive_search
from ..audit.queries import event_dict, select_events
from ..models import AuditEvent
from ..platform.extensions import db
from . import schemas as s
from .base import bp
from .spec import api_operation


@bp.get("/audit")
@role_required("auditor", "admin")
@api_operation({200: s.AuditPage}, query=s.AuditPageQuery)
def list_audit(query: s.AuditPageQuery):
    """Audit records, newest first, by user, action prefix and UTC days; with a note on the
    archived records when the period reaches before the database's oldest."""
    statement = select_events(query)
    if query.before is not None:
        statement = statement.where(AuditEvent.id < query.before)
    events = db.session.scalars(statement.limit(query.limit)).all()
    note = archive_search.note(query.since, query.until)
    return jsonify(items=[event_dict(e) for e in events], archived=note.as_dict() if note else None)
