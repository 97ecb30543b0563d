"""The audit log (JSON): the records with the page's filters and the note on archived
records (auditors and admins); who saw what (auditors and admins; managers for the
environments they manage): every password a person revealed, copied or exported in a period,
as JSON or CSV, and rotating those passwords through SDDC Manager (the manage level)."""

from __future__ import annotations

from flask import abort, current_app, jsonify
from flask_login import current_user, login_required

from ..access import grants
from ..access.guards import role_required, seen_readers, seen_scope, token_or_recent_auth
from ..audit import archive_search, seen
from ..audit.queries import event_dict, select_events
from ..identity.users import actor
from ..lifecycle import actions, seen_rotation
from ..models import AuditEvent
from ..platform import transaction
from ..platform.extensions import db
from ..platform.http import json_error
from . import schemas as s
from .actions import refused_for_sign_in
from .base import bp
from .spec import CSV_FILE, FieldErrors, api_operation


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


@bp.get("/audit/seen")
@login_required
@seen_readers
@api_operation({200: s.SeenReport}, query=s.SeenPageQuery)
def seen_report(query: s.SeenPageQuery):
    """Every password a person revealed, copied or exported in a period: one item per
    credential with its environment, host, account and times; never a password."""
    report = seen.report(query.person, query.since, query.until, seen_scope())
    items = report.pop("items")
    first = (query.page - 1) * query.per_page
    return jsonify(
        **report,
        items=items[first : first + query.per_page],
        total=len(items),
        page=query.page,
        per_page=query.per_page,
    )


@bp.get("/audit/seen.csv")
@login_required
@seen_readers
@api_operation({200: CSV_FILE}, query=seen.SeenQuery)
def seen_report_csv(query: seen.SeenQuery):
    """The same report as CSV (every item, formula-safe); audited as an export of the audit
    log."""
    return seen.csv_response(query, seen_scope())


@bp.post("/audit/seen/rotate")
@login_required
@seen_readers
@api_operation({202: s.SeenRotation, 200: s.SeenRotation}, s.SeenRotateIn, errors=(403, 409, 422))
def rotate_seen(body: s.SeenRotateIn):
    """Rotate through SDDC Manager every password a person saw in a period that is still
    current: rotate actions of one environment and at most 500 credentials each (202), or with
    `dry_run` the plan (200). Needs the manage level on each environment; the others are
    listed as skipped."""
    manageable = grants.visible_environment_ids(actor(), "manage")
    if manageable == set():
        abort(403, description="Rotating needs the manage level on an environment.")
    plan = seen_rotation.plan(body.person, body.since, body.until, seen_scope(), manageable)
    answer = {"person": body.person, "items": plan.items, **plan.counts()}
    if body.dry_run:
        batches = [
            {"id": None, "environment_id": env_id, "environment": name, "credentials": len(ids)}
            for env_id, name, ids in plan.batches
        ]
        return jsonify(**answer, dry_run=True, actions=batches)
    if not token_or_recent_auth():
        return refused_for_sign_in("credential.rotate_seen")
    if not plan.batches:
        return json_error(409, "Nothing to rotate: every credential is skipped.")
    period = {k: v.isoformat() for k, v in (("since", body.since), ("until", body.until)) if v}
    try:
        queued = seen_rotation.queue(current_user.username, body.person, plan, period)
    except actions.ActionError as exc:
        db.session.rollback()
        raise FieldErrors({exc.field: str(exc)}) from None
    settings = current_app.config["PORTAL_SETTINGS"]
    transaction.after_commit(lambda: actions.wake(settings))
    return jsonify(**answer, dry_run=False, actions=queued), 202
