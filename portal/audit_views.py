"""The audit log (admin only)."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlalchemy import select

from .access import admin_required
from .extensions import db
from .models import AuditEvent

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.get("/")
@admin_required
def audit_log():
    """List recent audit events, newest first, filtered by user and action."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    actor = (request.args.get("actor") or "").strip()
    action = (request.args.get("action") or "").strip()
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    events = db.session.scalars(query.limit(500)).all()
    return render_template("audit.html", events=events, actor=actor, action=action)
