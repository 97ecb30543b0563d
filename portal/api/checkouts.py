"""Check-out and check-in of credentials (exclusive use, rotated after), a manager's
take-back, the list of check-outs, and the credentials that need rotation."""

from __future__ import annotations

from flask import abort, current_app, jsonify
from flask_login import login_required

from .. import audit
from ..access import grants
from ..access.guards import credential_for, environment_for, visible_ids
from ..control import checkouts, rotation_due
from ..identity.users import actor
from ..lifecycle import actions
from ..models import Credential, CredentialCheckout
from ..platform import transaction
from ..platform.extensions import db
from ..platform.http import json_error
from . import schemas as s
from .base import bp
from .spec import api_operation


def _checkout(checkout_id: int, needed: str) -> CredentialCheckout:
    """The check-out, when the user has `needed` on its environment (404 when they may not
    see it, 403 below `needed`)."""
    checkout = db.session.get(CredentialCheckout, checkout_id)
    if checkout is None or grants.level(actor(), checkout.environment_id) is None:
        abort(404, description="No such check-out.")
    environment_for(checkout.environment_id, needed)
    return checkout


def _refused(exc: checkouts.CheckoutError, action: str, target: str):
    audit.record(action, target, outcome="refused", details={"reason": str(exc), **exc.details})
    transaction.keep()  # the refusal is audited, nothing else of the request kept
    return json_error(exc.status, str(exc), exc.details)


def _ended(checkout: CredentialCheckout, cred: Credential | None):
    rotation = {"queued": False, "action_id": None}
    if cred is not None:
        rotation = checkouts.rotate_now(cred, actor().username)
    if rotation["queued"]:
        settings = current_app.config["PORTAL_SETTINGS"]
        transaction.after_commit(lambda: actions.wake(settings))
    body = checkouts.as_dict(checkout, cred)
    return jsonify(body | {"rotation": "queued" if rotation["queued"] else "waiting"})


@bp.post("/credentials/<int:cred_id>/checkout")
@login_required
@api_operation({201: s.Checkout}, s.CheckoutIn, scope="reveal", errors=(409, 422))
def checkout_credential(cred_id: int, body: s.CheckoutIn):
    """Check a credential out: exclusive use for `minutes` (others cannot reveal it and see
    who holds it until when); at check-in or when the time runs out the portal rotates it
    through SDDC Manager. Needs the reveal level; 409 when someone holds it."""
    cred = credential_for(cred_id, "reveal")
    try:
        checkout = checkouts.check_out(actor(), cred, body.minutes, body.reason)
    except checkouts.CheckoutError as exc:
        return _refused(exc, "credential.checkout", checkouts.audit_name(cred))
    return jsonify(checkouts.as_dict(checkout, cred)), 201


@bp.post("/checkouts/<int:checkout_id>/checkin")
@login_required
@api_operation(
    {200: s.CheckoutEnded}, s.CheckinIn, body_required=False, scope="reveal", errors=(409,)
)
def checkin(checkout_id: int, body: s.CheckinIn):
    """Check a credential in (its holder): the check-out ends and the portal rotates the
    password through SDDC Manager (at once when SDDC Manager is free, else soon after); the
    new one arrives with the sync that follows."""
    checkout = _checkout(checkout_id, "view")
    user = actor()
    if checkout.holder_id != user.id:
        abort(403, description="Only its holder checks it in; a manager takes it back.")
    try:
        cred = checkouts.end(checkout, "checkin", user.username)
    except checkouts.CheckoutError as exc:
        return json_error(409, str(exc))
    return _ended(checkout, cred)


@bp.post("/checkouts/<int:checkout_id>/take-back")
@login_required
@api_operation({200: s.CheckoutEnded}, s.CheckinIn, body_required=False, errors=(409,))
def take_back(checkout_id: int, body: s.CheckinIn):
    """Take a check-out back from its holder (the manage level on its environment; admins):
    it ends at once and the password is rotated, as at check-in."""
    checkout = _checkout(checkout_id, "manage")
    try:
        cred = checkouts.end(checkout, "taken_back", actor().username, body.reason)
    except checkouts.CheckoutError as exc:
        return json_error(409, str(exc))
    return _ended(checkout, cred)


@bp.get("/checkouts")
@login_required
@api_operation({200: s.CheckoutList}, query=s.CheckoutQuery)
def list_checkouts(query: s.CheckoutQuery):
    """Check-outs of the environments the caller sees: active ones (`state=active`, the
    default), ended ones or all, newest first."""
    if query.environment_id is not None:
        environment_for(query.environment_id, "view")
    return jsonify(
        items=checkouts.listing(
            visible_ids(), query.state, query.environment_id, query.credential_id
        )
    )


@bp.get("/needs-rotation")
@login_required
@api_operation({200: s.NeedsRotationList}, query=s.NeedsRotationQuery)
def needs_rotation(query: s.NeedsRotationQuery):
    """The credentials whose rotation the portal owes (after a check-out or a break-glass
    window), with the attempts that failed and the last error; they stay here until SDDC
    Manager has rotated them."""
    if query.environment_id is not None:
        environment_for(query.environment_id, "view")
    return jsonify(items=rotation_due.listing(visible_ids(), query.environment_id))
