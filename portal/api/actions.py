"""Acting on credentials through SDDC Manager (JSON, admin): rotate, update, remediate,
auto-rotate; their progress, retry and cancel; expiry checks on demand."""

from __future__ import annotations

from flask import abort, current_app, jsonify
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import audit
from ..access import grants
from ..access.guards import environment_for, token_or_recent_auth
from ..control import gate
from ..control.requests import target_of
from ..identity.users import actor
from ..lifecycle import actions, expiry_checks, fleet_updates
from ..models import Credential, CredentialAction, Endpoint
from ..platform import clock, transaction
from ..platform.extensions import db
from ..platform.http import json_error
from ..vcf import VcfError
from . import schemas as s
from .base import bp
from .spec import FieldErrors, api_operation


def refused_for_sign_in(action: str = "credential.action"):
    """The answer to an action asked from a session whose sign-in is too old: audited as
    `action` denied (kept), 403 naming confirm_password (401 once signed out)."""
    audit.record(action, "", outcome="denied", details={"reason": "re-auth"})
    transaction.keep()
    if not current_user.is_authenticated:
        return json_error(401, "Signed out after too many wrong passwords.")
    return json_error(403, "Confirm your password: send it as confirm_password.")


def _action(action_id: int, needed: str = "manage") -> CredentialAction:
    """The action, when the user has `needed` on its environment (404 when they may not see
    it, 403 below `needed`). Reading one is metadata (view); acting on one needs manage."""
    action = db.session.get(CredentialAction, action_id)
    if action is None or grants.level(actor(), action.environment_id) is None:
        abort(404, description="No such action.")
    environment_for(action.environment_id, needed)
    return action


def _check_selection(credential_ids: list[int]) -> None:
    """Credentials of environments the user may not see are reported as missing (so their
    existence does not leak); those seen below the manage level answer 403."""
    rows = db.session.execute(
        select(Credential.id, Credential.environment_id).where(
            Credential.id.in_(list(dict.fromkeys(credential_ids))[: actions.MAX_ITEMS + 1])
        )
    ).all()
    visible = grants.visible_environment_ids(actor())
    for cred_id, environment_id in rows:
        if visible is not None and environment_id not in visible:
            raise FieldErrors({"credential_ids": f"No such credential: {cred_id}."})
    for environment_id in {environment_id for _, environment_id in rows}:
        environment_for(environment_id, "manage")


# Operations that set a password the caller chose (and so knows): on a sensitive credential
# they need what reading its password needs (SDDC Manager's own rotate stays allowed).
CHOSEN_PASSWORD = ("update", "remediate")


def _refused_by_dual_control(operation: str, credential_ids: list[int], password: str | None):
    """The 403 answer (audited `credential.<operation>.refused`) when a caller-chosen
    password would be set on a credential the caller may not see the password of; None when
    nothing stands in the way."""
    if operation not in CHOSEN_PASSWORD or not password:
        return None
    creds = db.session.scalars(
        select(Credential)
        .where(Credential.id.in_(list(dict.fromkeys(credential_ids))))
        .order_by(Credential.id)
    ).all()
    unmet = gate.withheld(actor(), creds)
    cred = next((c for c in creds if c.id in unmet), None)
    if cred is None:
        return None
    return gate.refuse(f"credential.{operation}", target_of(cred), cred, unmet[cred.id])


@bp.post("/credentials/actions")
@login_required
@api_operation({202: s.ActionQueued, 200: s.ActionPlan}, s.ActionIn, errors=(403, 422))
def queue_action(body: s.ActionIn):
    """Queue an operation through SDDC Manager (202 with its id), or with `dry_run` answer
    the exact list it would carry out (200). Needs the manage level on the environment. An
    update of one fleet management account goes through fleet password management (VCF 9.1)
    with the current password the portal holds; its new value is stored once the workflow
    has succeeded."""
    if grants.visible_environment_ids(actor(), "manage") == set():
        abort(403, description="Credential actions need the manage level on an environment.")
    _check_selection(body.credential_ids)
    # A fleet management account is changed by fleet password management, not SDDC Manager.
    fleet = fleet_updates.is_fleet(body.credential_ids)
    password = body.password
    if body.generate_password:
        if body.operation != "update" or password:
            raise FieldErrors({"generate_password": "Only for update, instead of a password."})
        password = actions.generate_password()
    refused = _refused_by_dual_control(body.operation, body.credential_ids, body.password)
    if refused is not None:
        return refused
    if body.dry_run:
        try:
            if fleet:
                environment, one = fleet_updates.selection(body.operation, body.credential_ids)
                creds = [one]
            else:
                environment, creds = actions.selection(body.credential_ids)
        except actions.ActionError as exc:
            raise FieldErrors({exc.field: str(exc)}) from None
        items = [
            {
                "credential_id": c.id,
                "hostname": c.hostname,
                "username": c.username,
                "credential_type": c.credential_type,
                "state": "planned",
                "error": None,
            }
            for c in creds
        ]
        operation = fleet_updates.OPERATION if fleet else body.operation
        return jsonify(environment_id=environment.id, operation=operation, items=items)
    if not token_or_recent_auth():
        return refused_for_sign_in()
    try:
        if fleet:
            action = fleet_updates.queue(
                current_user.username, body.operation, body.credential_ids, password
            )
        else:
            action = actions.queue(
                current_user.username,
                body.operation,
                body.credential_ids,
                password,
                body.auto_rotate.model_dump() if body.auto_rotate else None,
            )
    except actions.ActionError as exc:
        db.session.rollback()
        raise FieldErrors({exc.field: str(exc)}) from None
    settings = current_app.config["PORTAL_SETTINGS"]
    transaction.after_commit(lambda: actions.wake(settings))
    return jsonify(id=action.id), 202


@bp.get("/credential-actions/<int:action_id>")
@login_required
@api_operation({200: s.Action})
def get_action(action_id: int):
    """An action's state and the outcome per credential."""
    return jsonify(actions.as_dict(_action(action_id, "view")))


@bp.get("/environments/<int:env_id>/credential-actions")
@login_required
@api_operation({200: s.ActionList})
def list_actions(env_id: int):
    """The environment's 20 most recent actions."""
    environment_for(env_id, "view")
    return jsonify(items=[actions.as_dict(a) for a in actions.recent(env_id)])


def _change(action: CredentialAction, change, *args):
    try:
        change(action, *args)
    except actions.ActionError as exc:
        db.session.rollback()
        return json_error(409, str(exc))
    except VcfError as exc:
        db.session.rollback()
        return json_error(409, f"SDDC Manager refused: {exc}")
    settings = current_app.config["PORTAL_SETTINGS"]
    transaction.after_commit(lambda: actions.wake(settings))
    return jsonify(actions.as_dict(action))


@bp.post("/credential-actions/<int:action_id>/retry")
@login_required
@api_operation({200: s.Action}, s.RetryIn, body_required=False, errors=(403, 409))
def retry_action(action_id: int, body: s.RetryIn):
    """Retry the failed credentials of an action through SDDC Manager's task retry (update
    and remediate need the password again)."""
    action = _action(action_id)
    if not token_or_recent_auth():
        return refused_for_sign_in()
    items = [i.credential_id for i in action.items if i.credential_id is not None]
    refused = _refused_by_dual_control(action.operation, items, body.password)
    if refused is not None:
        return refused
    audit.record(
        f"credential.{action.operation}", "", outcome="retry", details={"action": action.id}
    )
    return _change(action, actions.retry, body.password)


@bp.post("/credential-actions/<int:action_id>/cancel")
@login_required
@api_operation({200: s.Action}, errors=(409,))
def cancel_action(action_id: int):
    """Cancel a queued action, or a failed task in SDDC Manager."""
    action = _action(action_id)
    audit.record(
        f"credential.{action.operation}", "", outcome="cancel", details={"action": action.id}
    )
    return _change(action, actions.cancel)


@bp.post("/environments/<int:env_id>/expiry-check")
@login_required
@api_operation({202: s.ExpiryCheckQueued}, errors=(409,))
def request_expiry_check(env_id: int):
    """Ask SDDC Manager for the expiry of every password now (answered at once; the dates
    arrive within a minute or two)."""
    environment = environment_for(env_id, "manage")
    endpoint = next((e for e in environment.endpoints if e.source == "manager"), None)
    if not isinstance(endpoint, Endpoint):
        return json_error(409, "This environment has no SDDC Manager configured.")
    expiry_checks.request(endpoint)
    audit.record("credential.expiry_check", environment.name)
    return jsonify(requested_at=clock.iso(endpoint.expiry_requested_at)), 202
