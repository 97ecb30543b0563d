"""The signed-in user's own facts and preferences (JSON)."""

from __future__ import annotations

import json

from flask import jsonify
from flask_login import current_user, login_required

from ..extensions import db
from ..sessions import recently_authenticated
from . import schemas as s
from .base import bp
from .spec import api_operation

DEFAULT_PREFERENCES = {"dashboard_view": "cards"}


def preferences(user) -> dict:
    """The user's stored preferences with defaults filled in."""
    stored = json.loads(user.preferences) if user.preferences else {}
    return {key: stored.get(key, default) for key, default in DEFAULT_PREFERENCES.items()}


@bp.get("/me")
@login_required
@api_operation({200: s.Me})
def who_am_i():
    """User name, role, whether the password was typed recently, preferences."""
    return jsonify(
        username=current_user.username,
        role=current_user.role,
        recent_auth=recently_authenticated(),
        preferences=preferences(current_user),
    )


@bp.patch("/me/preferences")
@login_required
@api_operation({200: s.PreferencesOut}, s.PreferencesIn)
def set_preferences(body: s.PreferencesIn):
    """Change preferences (dashboard_view: cards or list)."""
    current = preferences(current_user)
    current.update(body.model_dump(exclude_none=True))
    current_user.preferences = json.dumps(current)
    db.session.commit()
    return jsonify(preferences=current)
