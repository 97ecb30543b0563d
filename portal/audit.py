"""Audit records: actor, UTC time, source address, action, target, outcome; never a secret."""

from __future__ import annotations

import json
import logging

from flask import has_request_context
from flask_login import current_user

from .extensions import db
from .models import AuditEvent
from .security import client_ip
from .text import escape_controls

log = logging.getLogger("portal.audit")

_MAX_FIELD = 500


def clean(value: object, limit: int = _MAX_FIELD) -> str:
    """Make untrusted text safe for logs and records: control characters escaped, truncated."""
    return escape_controls(value)[:limit]


def _request_actor_and_ip() -> tuple[str, str | None]:
    if not has_request_context():
        return "system", None
    actor = current_user.username if current_user.is_authenticated else "anonymous"
    return actor, client_ip()


def record(
    action: str,
    target: str = "",
    outcome: str = "success",
    details: dict | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Add an audit event to the session (the caller commits) and mirror it to the log."""
    request_actor, ip = _request_actor_and_ip()
    event = AuditEvent(
        actor=clean(actor if actor is not None else request_actor, 128),
        ip=ip,
        action=action,
        target=clean(target),
        outcome=outcome,
        details=json.dumps({k: clean(v) for k, v in (details or {}).items()}) if details else None,
    )
    db.session.add(event)
    log.info(
        "audit action=%s actor=%s ip=%s target=%s outcome=%s",
        action,
        event.actor,
        ip,
        event.target,
        outcome,
    )
    return event
