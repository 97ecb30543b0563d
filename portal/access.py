"""Role checks for views."""

from __future__ import annotations

from functools import wraps

from flask import abort, request
from flask_login import current_user, login_required

from . import clock
from .auth import password_failure
from .security import verify_password
from .sessions import current_session, end_session, recently_authenticated


def admin_required(view):
    """Allow the view to admins only; read-only users get 403."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403, description="This action needs the admin role.")
        return view(*args, **kwargs)

    return wrapper


def confirm_recent_auth() -> bool:
    """For sensitive actions: True when signed in within 15 minutes or the password was re-typed.

    The password comes in the form field or JSON key `confirm_password`.
    """
    if recently_authenticated():
        return True
    data = request.get_json(silent=True) if request.is_json else None
    if isinstance(data, dict):
        typed = data.get("confirm_password")
    else:
        typed = request.form.get("confirm_password")
    if not isinstance(typed, str) or not typed:
        return False
    return check_reauth_password(typed)


def check_reauth_password(typed: str) -> bool:
    """Verify a re-typed password; a wrong one counts toward the account's lockout (the fifth
    locks it and ends the session)."""
    if verify_password(current_user.password_hash, typed):
        row = current_session()
        if row is not None:
            row.authenticated_at = clock.now()
        return True
    if password_failure(current_user._get_current_object(), "auth.reauth"):
        end_session()
    return False
