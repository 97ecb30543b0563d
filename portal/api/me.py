"""The signed-in user's own facts and preferences (JSON)."""

from __future__ import annotations

from flask import jsonify
from flask_login import current_user, login_required

from .. import audit
from ..access.guards import check_reauth_password, environment_for
from ..identity import second_factor, users
from ..identity.sessions import recently_authenticated
from ..platform import transaction
from ..platform.http import json_error
from . import schemas as s
from .base import bp
from .spec import api_operation


@bp.get("/me")
@login_required
@api_operation({200: s.Me})
def who_am_i():
    """User name, role, whether the password was typed recently, preferences."""
    return jsonify(
        username=current_user.username,
        role=current_user.effective_role,
        recent_auth=recently_authenticated(),
        second_factor_required=second_factor.needs_enrolment(users.actor()),
        preferences=users.preferences(users.actor()),
    )


@bp.patch("/me/preferences")
@login_required
@api_operation({200: s.PreferencesOut}, s.PreferencesIn)
def set_preferences(body: s.PreferencesIn):
    """Change preferences (dashboard_view: cards or list; time_zone: local or utc)."""
    current = users.set_preferences(users.actor(), body.model_dump(exclude_none=True))
    return jsonify(preferences=current)


@bp.post("/me/reauth")
@login_required
@api_operation({204: None}, s.ReauthIn, errors=(404,), scope="session")
def confirm_password(body: s.ReauthIn):
    """Type the password again; a right one counts as a fresh sign-in for 15 minutes."""
    target = None
    if body.purpose == "export":
        target = "all"
        if body.environment_id is not None:
            target = environment_for(body.environment_id).name
    username = current_user.username
    if check_reauth_password(body.password):
        return "", 204
    if target is not None:
        audit.record(
            "credential.export",
            target,
            outcome="denied",
            details={"reason": "wrong password"},
            actor=username,
        )
        transaction.keep()
    if not current_user.is_authenticated:
        return json_error(401, "Signed out after too many wrong passwords.")
    return json_error(403, "That password is not correct.")
