"""Role and level checks for views (the rules themselves live in portal/grants.py)."""

from __future__ import annotations

from functools import wraps

from flask import abort, request
from flask_login import current_user, login_required

from . import clock, grants
from .directory import accounts
from .extensions import db
from .models import Credential, Environment
from .security import verify_password
from .sessions import current_session, end_session, recently_authenticated
from .signin import password_failure


def role_required(*roles: str):
    """Allow the view to users whose effective role is one of `roles`; others get 403."""

    def decorate(view):
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            if not grants.has_role(current_user, roles):
                abort(403, description=f"This action needs the {' or '.join(roles)} role.")
            return view(*args, **kwargs)

        return wrapper

    return decorate


admin_required = role_required("admin")
admin_required.__doc__ = "Allow the view to admins only; everyone else gets 403."


def environment_for(env_id: int, needed: str = "view") -> Environment:
    """The environment, when the current user has `needed` on it; 404 when they may not see
    it at all (its existence does not leak), 403 when they see it at a lower level."""
    level = grants.level(current_user, env_id)
    if level is None:
        abort(404, description="No such environment.")
    if not grants.at_least(level, needed):
        abort(403, description=f"This action needs the {needed} level on this environment.")
    return db.session.get(Environment, env_id)


def credential_for(cred_id: int, needed: str = "view") -> Credential:
    """The credential, when the current user has `needed` on its environment; 404 for a
    credential they may not see, 403 for one they see at a lower level."""
    cred = db.session.get(Credential, cred_id)
    if cred is None or grants.level(current_user, cred.environment_id) is None:
        abort(404, description="No such credential.")
    environment_for(cred.environment_id, needed)
    return cred


def visible_ids(needed: str = "view") -> set[int] | None:
    """The environments the current user has `needed` on (None: all)."""
    return grants.visible_environment_ids(current_user, needed)


def token_or_recent_auth() -> bool:
    """For sensitive API actions: a token is its own proof; a session needs a sign-in within
    15 minutes or the password in `confirm_password`."""
    from .tokens import current

    return current() is not None or confirm_recent_auth()


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
    locks it and ends the session). LDAP users type their directory password; when the
    directory cannot be asked, nothing is counted. OpenID Connect users have no password
    here: they sign in again with their provider."""
    user = current_user._get_current_object()
    if user.source == "local":
        right = verify_password(user.password_hash, typed)
    elif user.source == "ldap":
        right = accounts.ldap_password_check(user, typed)
    else:
        right = None
    if right is None:
        return False
    if right:
        row = current_session()
        if row is not None:
            row.authenticated_at = clock.now()
        return True
    if password_failure(current_user._get_current_object(), "auth.reauth"):
        end_session()
    return False
