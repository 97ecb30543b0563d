"""Dual control: the policies of sensitive credentials, access requests (ask, approve, deny,
revoke, break-glass) and the approver's inbox."""

from __future__ import annotations

from flask import abort, jsonify
from flask_login import login_required

from .. import audit
from ..access.guards import (
    admin_required,
    confirm_recent_auth,
    credential_for,
    environment_for,
    environment_level,
    recent_sign_in,
)
from ..control import gate, policies
from ..control import requests as control
from ..identity import tokens
from ..identity.users import actor
from ..models import AccessRequest
from ..platform import transaction
from ..platform.extensions import db
from ..platform.http import json_error
from . import schemas as s
from .base import bp
from .spec import FieldErrors, api_operation


def _answer(exc: control.RequestError):
    if exc.status == 422 and exc.field:
        raise FieldErrors({exc.field: str(exc)}) from None
    return json_error(exc.status, str(exc), {"field": exc.field} if exc.field else None)


@bp.get("/policies")
@admin_required
@api_operation({200: s.Policy})
def global_policy():
    """The global default rules: they apply in every environment, which may add its own."""
    return jsonify(policies.describe(None))


@bp.put("/policies")
@admin_required
@recent_sign_in("policy.change")
@api_operation({200: s.Policy}, s.PolicyIn)
def set_global_policy(body: s.PolicyIn):
    """Replace the global default rules (admins); audited with the rules before and after."""
    answer = policies.set_rules(None, body, actor().username)
    gate.forget()
    return jsonify(answer)


@bp.get("/environments/<int:env_id>/policies")
@login_required
@api_operation({200: s.Policy})
def environment_policy(env_id: int):
    """Which credentials of the environment are sensitive and what they need: the global
    defaults, which apply everywhere, and the environment's own rules, which add to them."""
    return jsonify(policies.describe(environment_for(env_id, "view")))


@bp.put("/environments/<int:env_id>/policies")
@login_required
@environment_level("manage")
@recent_sign_in("policy.change")
@api_operation({200: s.Policy}, s.PolicyIn)
def set_environment_policy(env_id: int, body: s.PolicyIn):
    """Replace the environment's rules (its managers and admins): they add to the global
    defaults, which they cannot relax. Audited with the rules before and after."""
    environment = environment_for(env_id, "manage")
    answer = policies.set_rules(environment, body, actor().username)
    gate.forget()
    return jsonify(answer)


@bp.post("/credentials/<int:cred_id>/access-requests")
@login_required
@api_operation({201: s.AccessRequestOut}, s.AccessRequestIn, scope="reveal", errors=(409,))
def request_access(cred_id: int, body: s.AccessRequestIn):
    """Ask for access to a sensitive credential's password for `minutes`, with a reason:
    approvers of its environment are alerted. With `break_glass` (an emergency, where the
    policy allows it) the window opens at once, every possible approver is alerted, and the
    credential is rotated when the window closes."""
    cred = credential_for(cred_id, "reveal")
    if body.break_glass:
        refused = _break_glass_refused(cred_id)
        if refused is not None:
            return refused
    try:
        req = control.create(actor(), cred, body)
    except control.RequestError as exc:
        return _answer(exc)
    return jsonify(control.request_dict(req, cred)), 201


def _break_glass_refused(cred_id: int):
    """Break-glass is a person's emergency, as approving is a person's decision: it needs a
    browser session (never an API token) signed in within 15 minutes, or the password again
    (`confirm_password`). The refusal (403, audited `access.break_glass` denied), or None."""
    if tokens.current() is not None:
        reason, message = (
            "api token",
            "Break-glass needs a browser session: an API token may not open it.",
        )
        details = {"needs": "session"}
    elif not confirm_recent_auth():
        reason, message = (
            "no sign-in within 15 minutes",
            "Break-glass needs a recent sign-in. Confirm your password: send it as "
            "confirm_password.",
        )
        details = {"needs": "recent_sign_in"}
    else:
        return None
    audit.record(
        "access.break_glass",
        f"credential {cred_id}",
        outcome="denied",
        details={"credential_id": cred_id, "reason": reason},
    )
    transaction.keep()
    return json_error(403, message, details)


@bp.get("/access-requests")
@login_required
@api_operation({200: s.AccessRequestList}, query=s.AccessRequestQuery)
def list_access_requests(query: s.AccessRequestQuery):
    """Requests the caller may see: their own, and those of the environments they may approve
    in (`state=pending` is the approver's inbox; `state=open` the windows open now, among
    them others' break-glass windows to review; `mine=true` only their own)."""
    user = actor()
    pending, glass = control.inbox_counts(user)
    return jsonify(
        items=control.listing(user, query.state, query.mine),
        pending_for_me=pending,
        break_glass_open=glass,
    )


def _request(req_id: int) -> AccessRequest:
    req = db.session.get(AccessRequest, req_id)
    if req is None or not control.visible(actor(), req):
        abort(404, description="No such request.")
    return req


@bp.get("/access-requests/<int:req_id>")
@login_required
@api_operation({200: s.AccessRequestOut})
def get_access_request(req_id: int):
    """One request (the requester's own, or one the caller may decide)."""
    return jsonify(control.request_dict(_request(req_id)))


def _decide(req_id: int, step, reason: str | None):
    try:
        req = step(actor(), _request(req_id), reason)
    except control.RequestError as exc:
        return _answer(exc)
    return jsonify(control.request_dict(req))


@bp.post("/access-requests/<int:req_id>/approve")
@login_required
@api_operation(
    {200: s.AccessRequestOut}, s.DecisionIn, body_required=False, scope="session", errors=(409,)
)
def approve_access_request(req_id: int, body: s.DecisionIn):
    """Approve a pending request (approve level on its environment, never one's own): the
    requester's window opens now for the minutes asked. A person's decision: not with a
    token."""
    return _decide(req_id, control.approve, body.reason)


@bp.post("/access-requests/<int:req_id>/deny")
@login_required
@api_operation({200: s.AccessRequestOut}, s.DecisionIn, scope="session", errors=(409,))
def deny_access_request(req_id: int, body: s.DecisionIn):
    """Deny a pending request with a `reason` (approve level, never one's own)."""
    return _decide(req_id, control.deny, body.reason)


@bp.post("/access-requests/<int:req_id>/revoke")
@login_required
@api_operation(
    {200: s.AccessRequestOut}, s.DecisionIn, body_required=False, scope="reveal", errors=(409,)
)
def revoke_access_request(req_id: int, body: s.DecisionIn):
    """End a request or window early: the requester's own, or anyone's for an approver of the
    environment. A break-glass window ended so is rotated like one that ran out."""
    return _decide(req_id, control.revoke, body.reason)
