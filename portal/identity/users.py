"""Users: creation, temporary passwords, roles, disabling, deletion, and the rule that an
active admin always remains. Callers commit."""

from __future__ import annotations

import json
import re
from typing import cast

from flask_login import current_user
from sqlalchemy import func, select

from .. import audit
from ..models import ROLES, User
from ..platform import clock
from ..platform.extensions import db
from ..platform.security import hash_password
from . import tokens
from .sessions import revoke_user_sessions

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")


DEFAULT_PREFERENCES = {"dashboard_view": "cards", "time_zone": "local"}
# The values each preference takes, the default first. time_zone: exact times in the
# browser's time zone ("local") or in UTC.
PREFERENCE_CHOICES = {"dashboard_view": ("cards", "list"), "time_zone": ("local", "utc")}


def actor() -> User:
    """The signed-in user of this request: the User that Flask-Login's `current_user` proxy
    stands for. Only for code that runs after sign-in (behind login_required or a check of
    `is_authenticated`); Flask-Login types the proxy as `Any | None`."""
    return cast(User, current_user._get_current_object())


class UserRuleError(ValueError):
    """A change that a user rule forbids; the message is for the operator."""


def username_problem(username: str) -> str | None:
    """Why a new user name cannot be used, or None."""
    if not USERNAME_RE.match(username):
        return "2 to 64 letters, digits, dot, dash, underscore or @."
    if db.session.scalar(select(User.id).where(User.username == username)):
        return "This user name is taken."
    return None


def add_user(username: str, role: str, password: str, actor: str | None = None) -> User:
    """Create a user whose password must be changed at first sign-in (audited)."""
    if role not in ROLES:
        raise UserRuleError(f"Unknown role {role!r}.")
    user = User(
        username=username,
        role=role,
        password_hash=hash_password(password),
        must_change_password=True,
    )
    db.session.add(user)
    audit.record("user.create", username, details={"role": role}, actor=actor)
    return user


def set_temporary_password(user: User, password: str, actor: str | None = None) -> None:
    """Reset a password: must be changed at next sign-in; unlocks; ends sessions and revokes
    the user's API tokens; audited.
    Directory and OIDC accounts have no password here to reset."""
    if user.source != "local":
        raise UserRuleError(
            f"{user.username} signs in through {user.source.upper()}: reset the password there."
        )
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    user.password_changed_at = clock.now()
    revoke_user_sessions(user.id)
    tokens.revoke_all(user, "password reset", actor=actor)
    audit.record("user.reset_password", user.username, actor=actor)


def _is_active_admin(role: str, disabled: bool) -> bool:
    return role == "admin" and not disabled


def ensure_active_admin_remains(
    user: User, *, role: str | None = None, disabled: bool | None = None, deleting: bool = False
) -> None:
    """Refuse a change to `user` that would leave the portal without an active admin.

    Only a change that takes an active admin out of that state can break the rule: demoting
    or deleting a disabled admin changes nothing.
    """
    if not _is_active_admin(user.role, bool(user.disabled)):
        return
    after_role = user.role if role is None else role
    after_disabled = bool(user.disabled) if disabled is None else disabled
    if not deleting and _is_active_admin(after_role, after_disabled):
        return
    others = db.session.scalar(
        select(func.count(User.id)).where(
            User.role == "admin", User.disabled.is_(False), User.id != user.id
        )
    )
    if not others:
        verb = "deleted" if deleting else "disabled" if after_disabled else "demoted"
        raise UserRuleError(f"The last active admin cannot be {verb}.")


def _not_oneself(user: User, by: User | None, message: str) -> None:
    if by is not None and by.id == user.id:
        raise UserRuleError(message)


def change_role(user: User, role: str, actor: str | None = None, by: User | None = None) -> str:
    """Give `user` another role (audited); returns the previous one. Nobody (`by`) changes
    their own role, and an active admin always remains."""
    if role not in ROLES:
        raise UserRuleError(f"Unknown role {role!r}.")
    if role != user.role:
        _not_oneself(user, by, "You cannot change your own role.")
    ensure_active_admin_remains(user, role=role)
    old, user.role = user.role, role
    audit.record("user.role", user.username, details={"from": old, "to": role}, actor=actor)
    return old


def set_disabled(
    user: User, disabled: bool, actor: str | None = None, by: User | None = None
) -> None:
    """Disable (ending the user's sessions and revoking their tokens for good) or re-enable
    (unlocking) a user; audited. Nobody (`by`) disables themselves."""
    if disabled:
        _not_oneself(user, by, "You cannot disable yourself.")
    ensure_active_admin_remains(user, disabled=disabled)
    user.disabled = disabled
    if disabled:
        revoke_user_sessions(user.id)
        tokens.revoke_all(user, "user disabled", actor=actor)
    else:
        user.failed_logins = 0
        user.locked_until = None
    audit.record("user.disable" if disabled else "user.enable", user.username, actor=actor)


def locked_until(user: User):
    """When the account's lock after failed sign-ins ends, or None when it is not locked."""
    if user.locked_until is not None and user.locked_until > clock.now():
        return user.locked_until
    return None


def unlock(user: User, actor: str | None = None) -> bool:
    """End a lock after failed sign-ins now, and forget the failures (audited). False when
    the account was not locked: nothing is done."""
    until = locked_until(user)
    if until is None:
        return False
    user.locked_until = None
    user.failed_logins = 0
    user.login_checks = 0
    audit.record(
        "user.unlock", user.username, details={"was_locked_until": clock.iso(until)}, actor=actor
    )
    return True


def delete_user(user: User, actor: str | None = None, by: User | None = None) -> None:
    """Delete a user (audited); never the last active admin, and nobody (`by`) themselves."""
    _not_oneself(user, by, "You cannot delete yourself.")
    ensure_active_admin_remains(user, deleting=True)
    name = user.username
    db.session.delete(user)
    audit.record("user.delete", name, actor=actor)


def preferences(user: User) -> dict:
    """The user's stored preferences with defaults filled in."""
    stored = json.loads(user.preferences) if user.preferences else {}
    return {key: stored.get(key, default) for key, default in DEFAULT_PREFERENCES.items()}


def set_preferences(user: User, changes: dict) -> dict:
    """Store changed preferences (already validated); returns them all."""
    current = preferences(user)
    current.update({key: value for key, value in changes.items() if key in DEFAULT_PREFERENCES})
    user.preferences = json.dumps(current)
    return current
