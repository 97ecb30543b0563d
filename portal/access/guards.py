"""Role and level checks for views (the rules themselves live in portal/access/grants.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort, redirect, request, url_for
from flask_login import current_user, login_required

from .. import audit
from ..identity.directory import accounts
from ..identity.sessions import current_session, end_session, recently_authenticated
from ..identity.signin import password_failure
from ..identity.users import actor
from ..models import Credential, Environment
from ..platform import clock, transaction
from ..platform.extensions import db
from ..platform.http import json_error
from ..platform.security import verify_password
from . import grants


def role_required(*roles: str):
    """Allow the view to users whose effective role is one of `roles`; others get 403."""

    def decorate(view):
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            if not grants.has_role(actor(), roles):
                abort(403, description=f"This action needs the {' or '.join(roles)} role.")
            return view(*args, **kwargs)

        return wrapper

    return decorate


admin_required = role_required("admin")
admin_required.__doc__ = "Allow the view to admins only; everyone else gets 403."


def environment_for(env_id: int, needed: str = "view") -> Environment:
    """The environment, when the current user has `needed` on it; 404 when they may not see
    it at all (its existence does not leak), 403 when they see it at a lower level."""
    level = grants.level(actor(), env_id)
    if level is None:
        abort(404, description="No such environment.")
    if not grants.at_least(level, needed):
        abort(403, description=f"This action needs the {needed} level on this environment.")
    env = db.session.get(Environment, env_id)
    if env is None:  # level() found it; only a deletion in between ends here
        abort(404, description="No such environment.")
    return env


def environment_level(needed: str):
    """Check the level on the route's environment (`env_id`) before anything else of the
    request is looked at: whoever may not act there learns nothing from how the body would
    have been judged (404 or 403 comes first, never 422)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            environment_for(kwargs["env_id"], needed)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def credential_for(cred_id: int, needed: str = "view") -> Credential:
    """The credential, when the current user has `needed` on its environment; 404 for a
    credential they may not see, 403 for one they see at a lower level."""
    cred = db.session.get(Credential, cred_id)
    if cred is None or grants.level(actor(), cred.environment_id) is None:
        abort(404, description="No such credential.")
    environment_for(cred.environment_id, needed)
    return cred


SEEN_REFUSAL = "Who saw what is for auditors, admins and the managers of an environment."


def seen_scope() -> set[int] | None:
    """The environments whose "who saw what" the current user may read (None: all); 403 for
    a user who may read none."""
    scope = grants.audit_scope(actor())
    if scope is not None and not scope:
        abort(403, description=SEEN_REFUSAL)
    return scope


def seen_readers(view):
    """Check that the user may read who saw what somewhere before anything else of the
    request is looked at (403 comes before a bad query's 400)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        seen_scope()
        return view(*args, **kwargs)

    return wrapper


def seen_credential(cred_id: int) -> Credential:
    """A credential whose "who saw it" the current user may read: 404 for one they may not
    see, 403 where they neither audit nor manage."""
    cred = credential_for(cred_id, "view")
    scope = grants.audit_scope(actor())
    if scope is not None and cred.environment_id not in scope:
        abort(403, description=SEEN_REFUSAL)
    return cred


def visible_ids(needed: str = "view") -> set[int] | None:
    """The environments the current user has `needed` on (None: all)."""
    return grants.visible_environment_ids(actor(), needed)


RECENT_SIGN_IN_MESSAGE = (
    "Confirm your password: this needs a sign-in within the last 15 minutes. Send the "
    "password as confirm_password, or to POST /api/v1/me/reauth first."
)


def recent_sign_in(action: str, refuse: Callable | None = None):
    """Declare a view sensitive: the one rule for exports, grants, users, groups, settings,
    keys and tokens, honoured alike by pages and the API (a page's GET shows its form).

    A browser session needs a sign-in within 15 minutes, or the password re-typed
    (`confirm_password` in the form or the JSON body, or `POST /api/v1/me/reauth` before).
    An API token passes: it was made after a recent sign-in, for a scope the route checks,
    and a script has no password to type. A refusal is audited once as `action` with
    outcome `denied`; it answers `refuse()` (a page's own form) or 403: the JSON error
    (`details.needs: "recent_sign_in"`) under /api/, the error page elsewhere.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            name = current_user.username if current_user.is_authenticated else None
            if request.method in ("GET", "HEAD") or token_or_recent_auth():
                _drop_confirm_password(view)
                return view(*args, **kwargs)
            audit.record(
                action,
                request.path,
                outcome="denied",
                details={"reason": "no sign-in within 15 minutes"},
                actor=name,
            )
            transaction.keep()  # the refusal is audited, whatever the answer
            if not current_user.is_authenticated:  # the fifth wrong password signed them out
                if request.path.startswith("/api/"):
                    return json_error(401, "Signed out after too many wrong passwords.")
                return redirect(url_for("auth.login"))
            if refuse is not None:
                return refuse()
            if request.path.startswith("/api/"):
                return json_error(403, RECENT_SIGN_IN_MESSAGE, {"needs": "recent_sign_in"})
            abort(403, description="Confirm your password: sign in again, then retry.")

        wrapper.recent_sign_in = action  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _drop_confirm_password(view) -> None:
    # Taken by the rule: the body's model (which may forbid unknown fields) does not see it,
    # unless it declares the field itself.
    op = getattr(view, "api_operation", None)
    body = op.body if op is not None else None
    if body is None or "confirm_password" in body.model_fields or not request.is_json:
        return
    data = request.get_json(silent=True)  # the parsed body is cached: the view reads this
    if isinstance(data, dict):
        data.pop("confirm_password", None)


def token_or_recent_auth() -> bool:
    """For sensitive API actions: a token is its own proof; a session needs a sign-in within
    15 minutes or the password in `confirm_password`."""
    from ..identity.tokens import current

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
    user = actor()
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
    if password_failure(user, "auth.reauth"):
        end_session()
    return False
