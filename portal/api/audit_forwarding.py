"""Where the audit records are forwarded (JSON, admin): list with progress, add, remove."""

from __future__ import annotations

from flask import abort, jsonify

from ..access.guards import admin_required, recent_sign_in
from ..audit import chain, forwarding
from ..identity.users import actor
from ..models import AuditDestination
from ..platform.extensions import db
from . import schemas as s
from .base import bp
from .spec import FieldErrors, api_operation


@bp.get("/settings/audit-forwarding/destinations")
@admin_required
@api_operation({200: s.DestinationList}, scope="admin")
def audit_destinations():
    """Every destination with its backlog and last error."""
    head = chain.head()[0]
    return jsonify(items=[forwarding.describe(d, head) for d in forwarding.destinations()])


@bp.post("/settings/audit-forwarding/destinations")
@admin_required
@recent_sign_in("settings.audit_forwarding")
@api_operation({201: s.DestinationCreated}, s.DestinationIn, errors=(403, 422), scope="admin")
def add_audit_destination(body: s.DestinationIn):
    """Forward every sealed record still in the database, then each new one, in order."""
    try:
        destination = forwarding.add(body, actor().username)
    except forwarding.DestinationError as exc:
        raise FieldErrors({exc.field: str(exc)}) from None
    return jsonify(id=destination.id), 201


@bp.delete("/settings/audit-forwarding/destinations/<int:destination_id>")
@admin_required
@recent_sign_in("settings.audit_forwarding")
@api_operation({204: None}, errors=(403,), scope="admin")
def remove_audit_destination(destination_id: int):
    """Stop forwarding to a destination (what it has taken stays where it is)."""
    destination = db.session.get(AuditDestination, destination_id)
    if destination is None:
        abort(404, description="No such destination.")
    forwarding.remove(destination, actor().username)
    return "", 204
