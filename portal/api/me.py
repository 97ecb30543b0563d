"""The signed-in user's own facts and preferences (JSON)."""

from __future__ import annotations

import json

from flask import jsonify
from flask_login import current_user, login_required

from ..extensions import db
from ..http import json_error, json_object_body
from ..sessions import recently_authenticated
from .base import bp

PREFERENCES = {"dashboard_view": ("cards", "list")}


def preferences(user) -> dict:
    """The user's stored preferences with defaults filled in."""
    stored = json.loads(user.preferences) if user.preferences else {}
    return {key: stored.get(key, allowed[0]) for key, allowed in PREFERENCES.items()}


@bp.get("/me")
@login_required
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
def set_preferences():
    """Change preferences (dashboard_view: cards or list)."""
    data = json_object_body()
    current = preferences(current_user)
    errors = {}
    for key, value in data.items():
        if key not in PREFERENCES or value not in PREFERENCES[key]:
            errors[key] = f"Expected one of: {', '.join(PREFERENCES.get(key, ()))}" or "Unknown"
        else:
            current[key] = value
    if errors:
        return json_error(422, "Some fields are not valid.", errors)
    current_user.preferences = json.dumps(current)
    db.session.commit()
    return jsonify(preferences=current)
