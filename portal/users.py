"""User administration (admin only)."""

from __future__ import annotations

import re

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from . import audit, clock
from .access import admin_required, confirm_recent_auth
from .extensions import db
from .models import ROLES, User
from .security import hash_password, password_problem
from .sessions import revoke_user_sessions

bp = Blueprint("users", __name__, url_prefix="/users")

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")


def add_user(username: str, role: str, password: str, actor: str | None = None) -> User:
    """Create a user whose password must be changed at first sign-in (audited, committed)."""
    user = User(
        username=username,
        role=role,
        password_hash=hash_password(password),
        must_change_password=True,
    )
    db.session.add(user)
    audit.record("user.create", username, details={"role": role}, actor=actor, commit=False)
    db.session.commit()
    return user


def set_temporary_password(user: User, password: str, actor: str | None = None) -> None:
    """Reset a password: must be changed at next sign-in; unlocks; ends sessions; audited."""
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    user.password_changed_at = clock.now()
    revoke_user_sessions(user.id)
    audit.record("user.reset_password", user.username, actor=actor, commit=False)
    db.session.commit()


def _active_admins() -> int:
    return (
        db.session.scalar(
            select(func.count(User.id)).where(User.role == "admin", User.disabled.is_(False))
        )
        or 0
    )


def _render(errors: dict | None = None, status: int = 200):
    users = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("users.html", users=users, roles=ROLES, errors=errors or {}), status


@bp.get("/")
@admin_required
def list_users():
    """List users with their role and state."""
    return _render()


def _require_reauth():
    if not confirm_recent_auth():
        flash("Confirm your own password to manage users.", "error")
        return _render({"confirm_password": "Your password is required."}, 403)
    return None


@bp.post("/")
@admin_required
def create_user():
    """Create a user with a temporary password to be changed at first sign-in."""
    if (refusal := _require_reauth()) is not None:
        return refusal
    username = (request.form.get("username") or "").strip()
    role = request.form.get("role") or "readonly"
    password = request.form.get("password") or ""
    errors = {}
    if not USERNAME_RE.match(username):
        errors["username"] = "2 to 64 letters, digits, dot, dash, underscore or @."
    elif db.session.scalar(select(User.id).where(User.username == username)):
        errors["username"] = "This user name is taken."
    if role not in ROLES:
        errors["role"] = "Unknown role."
    if problem := password_problem(password, username):
        errors["password"] = problem
    if errors:
        return _render(errors, 400)
    add_user(username, role, password)
    flash(f"User {username} created; they must change the password at first sign-in.", "info")
    return redirect(url_for("users.list_users"))


def _target(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description="No such user.")
    return user


def _refuse(message: str):
    flash(message, "error")
    return _render(status=409)


@bp.post("/<int:user_id>/role")
@admin_required
def set_role(user_id: int):
    """Change a user's role; the last admin and oneself cannot be demoted."""
    if (refusal := _require_reauth()) is not None:
        return refusal
    user = _target(user_id)
    role = request.form.get("role")
    if role not in ROLES:
        return _render({"role": "Unknown role."}, 400)
    if user.id == current_user.id and role != user.role:
        return _refuse("You cannot change your own role.")
    if user.role == "admin" and role != "admin" and _active_admins() <= 1:
        return _refuse("The last admin cannot be demoted.")
    old = user.role
    user.role = role
    audit.record("user.role", user.username, details={"from": old, "to": role}, commit=False)
    db.session.commit()
    flash(f"{user.username} is now {role}.", "info")
    return redirect(url_for("users.list_users"))


@bp.post("/<int:user_id>/reset-password")
@admin_required
def reset_password(user_id: int):
    """Set a temporary password; the user must change it at next sign-in."""
    if (refusal := _require_reauth()) is not None:
        return refusal
    user = _target(user_id)
    password = request.form.get("password") or ""
    if problem := password_problem(password, user.username):
        return _render({f"password_{user.id}": problem}, 400)
    set_temporary_password(user, password)
    flash(f"Temporary password set for {user.username}.", "info")
    return redirect(url_for("users.list_users"))


@bp.post("/<int:user_id>/disable")
@admin_required
def toggle_disabled(user_id: int):
    """Disable or re-enable a user; disabling ends their sessions."""
    if (refusal := _require_reauth()) is not None:
        return refusal
    user = _target(user_id)
    disable = request.form.get("disabled") == "1"
    if disable and user.id == current_user.id:
        return _refuse("You cannot disable yourself.")
    if disable and user.role == "admin" and not user.disabled and _active_admins() <= 1:
        return _refuse("The last admin cannot be disabled.")
    user.disabled = disable
    if disable:
        revoke_user_sessions(user.id)
    else:
        user.failed_logins = 0
        user.locked_until = None
    audit.record("user.disable" if disable else "user.enable", user.username, commit=False)
    db.session.commit()
    flash(f"{user.username} is {'disabled' if disable else 'enabled'}.", "info")
    return redirect(url_for("users.list_users"))


@bp.post("/<int:user_id>/delete")
@admin_required
def delete_user(user_id: int):
    """Delete a user; nobody can delete themselves or the last admin."""
    if (refusal := _require_reauth()) is not None:
        return refusal
    user = _target(user_id)
    if user.id == current_user.id:
        return _refuse("You cannot delete yourself.")
    if user.role == "admin" and not user.disabled and _active_admins() <= 1:
        return _refuse("The last admin cannot be deleted.")
    name = user.username
    db.session.delete(user)
    audit.record("user.delete", name, commit=False)
    db.session.commit()
    flash(f"User {name} deleted.", "info")
    return redirect(url_for("users.list_users"))
