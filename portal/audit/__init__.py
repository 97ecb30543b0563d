"""Audit records: actor, UTC time, source address, action, target, outcome; never a secret.

Each record is sealed as it is written and chained soon after (chain.py), so a change made to
the table outside the portal shows in `flask --app app audit verify`."""

from __future__ import annotations

import json
import logging

from flask import g, has_request_context
from flask_login import current_user
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from ..models import AuditEvent, utcnow
from ..platform.extensions import db
from ..platform.security import client_ip
from ..platform.text import escape_controls, quoted
from .chain import seal_values

log = logging.getLogger("portal.audit")

_MAX_FIELD = 500
_PENDING = "portal_audit_log"


def clean(value: object, limit: int = _MAX_FIELD) -> str:
    """Make untrusted text safe for logs and records: control characters escaped, truncated."""
    return escape_controls(value)[:limit]


def _request_actor_and_ip() -> tuple[str, str | None]:
    if not has_request_context():
        return "system", None
    actor = current_user.username if current_user.is_authenticated else "anonymous"
    return actor, client_ip()


def _values(
    action: str, target: str, outcome: str, details: dict | None, actor: str | None
) -> dict:
    request_actor, ip = _request_actor_and_ip()
    token = g.get("api_token") if has_request_context() else None
    if token is not None:  # every record of a request a token signed names the token
        details = {**(details or {}), "via_token": token.name, "token_id": token.id}
    return {
        "at": utcnow(),
        "actor": clean(actor if actor is not None else request_actor, 128),
        "ip": ip,
        "action": action,
        "target": clean(target),
        "outcome": outcome,
        "details": json.dumps({k: clean(v) for k, v in (details or {}).items()})
        if details
        else None,
    }


def _pending(values: dict) -> None:
    db.session.info.setdefault(_PENDING, []).append(
        (values["action"], values["actor"], values["ip"], values["target"], values["outcome"])
    )


# Outcomes that record a refusal: a request that wrote one is not audited again as refused.
REFUSALS = frozenset({"denied", "failure", "blocked", "locked"})


def record(
    action: str,
    target: str = "",
    outcome: str = "success",
    details: dict | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Add an audit event to the session (the caller commits); the log mirrors it once the
    transaction commits."""
    values = _values(action, target, outcome, details, actor)
    if outcome in REFUSALS and has_request_context():
        g.refusal_audited = True  # the route audited its own refusal (portal.refusals)
    entry = AuditEvent(**seal_values(values))
    db.session.add(entry)
    _pending(values)
    return entry


def record_many(
    action: str,
    entries: list[tuple[str, str, dict | None]],
    actor: str | None = None,
) -> None:
    """Add one audit event per (target, outcome, details) in a single statement (an action
    on hundreds of credentials); the caller commits, and the log mirrors them after."""
    if not entries:
        return
    now = utcnow()
    rows = []
    for target, outcome, details in entries:
        values = {**_values(action, target, outcome, details, actor), "at": now}
        rows.append(seal_values(values))
        _pending(values)
    db.session.execute(insert(AuditEvent), rows)


@event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    # The log says what happened only once the database does: an event rolled back with its
    # transaction is never logged.
    for line in session.info.pop(_PENDING, []):
        log.info("audit action=%s actor=%s ip=%s target=%s outcome=%s", *map(quoted, line))


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
