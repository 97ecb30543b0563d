"""The signed-in user's own facts and preferences (JSON)."""

from __future__ import annotations

from flask import jsonify
from flask_login import current_user, login_required

from .. import users
from ..extensions import db
from ..sessions import recently_authenticated
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
        role=current_user.role,
        recent_auth=recently_authenticated(),
        preferences=users.preferences(current_user),
    )


@bp.patch("/me/preferences")
@login_required
@api_operation({200: s.PreferencesOut}, s.PreferencesIn)
def set_preferences(body: s.PreferencesIn):
    """Change preferences (dashboard_view: cards or list)."""
    current = users.set_preferences(current_user, body.model_dump(exclude_none=True))
    db.session.commit()
    return jsonify(preferences=current)
