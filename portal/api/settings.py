"""Portal-wide security settings (JSON, admin): the second-factor policy."""

from __future__ import annotations

from flask import jsonify
from flask_login import current_user

from .. import audit, second_factor
from ..access import admin_required, confirm_recent_auth
from ..extensions import db
from ..http import json_error
from . import schemas as s
from .base import bp
from .spec import api_operation


@bp.get("/settings/security")
@admin_required
@api_operation({200: s.SecurityPolicy})
def security_policy():
    """Who must have a second factor: none, admins or everyone."""
    return jsonify(require_second_factor=second_factor.policy())


@bp.patch("/settings/security")
@admin_required
@api_operation({200: s.SecurityPolicy}, s.SecurityPolicyIn, errors=(403, 409))
def set_security_policy(body: s.SecurityPolicyIn):
    """Change who must have a second factor (audited). Needs a sign-in within 15 minutes or
    the password in `confirm_password`."""
    if not confirm_recent_auth():
        audit.record("settings.security", second_factor.POLICY_KEY, outcome="denied")
        db.session.commit()
        return json_error(403, "Confirm your password: send it as confirm_password.")
    second_factor.set_policy(body.require_second_factor, current_user._get_current_object())
    db.session.commit()
    return jsonify(require_second_factor=second_factor.policy())
