"""User and group administration pages (admin only)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..access import groups
from ..access.guards import admin_required, recent_sign_in
from ..identity import second_factor, users
from ..identity.users import UserRuleError
from ..models import ROLES, Group, User
from ..platform.extensions import db
from ..platform.security import password_problem

bp = Blueprint("users", __name__, url_prefix="/users")


def _render(errors: dict | None = None, status: int = 200):
    rows = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template(
        "users.html",
        users=rows,
        locked={user.id: until for user in rows if (until := users.locked_until(user))},
        groups=groups.listed(),
        roles=ROLES,
        factors=second_factor.kinds_by_user(),
        errors=errors or {},
    ), status


def _reauth_refused():
    flash("Confirm your own password to manage users.", "error")
    return _render({"confirm_password": "Your password is required."}, 403)


def _target(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description="No such user.")
    return user


def _refuse(message: str):
    db.session.rollback()
    flash(message, "error")
    return _render(status=409)


def _done(message: str):
    flash(message, "info")
    return redirect(url_for("users.list_users"))


@bp.get("/")
@admin_required
def list_users():
    """List users with their role and state."""
    return _render()


@bp.post("/")
@admin_required
@recent_sign_in("user.create", refuse=_reauth_refused)
def create_user():
    """Create a user with a temporary password to be changed at first sign-in."""
    username = (request.form.get("username") or "").strip()
    role = request.form.get("role") or "readonly"
    password = request.form.get("password") or ""
    errors = {}
    if problem := users.username_problem(username):
        errors["username"] = problem
    if role not in ROLES:
        errors["role"] = "Unknown role."
    if problem := password_problem(password, username):
        errors["password"] = problem
    if errors:
        return _render(errors, 400)
    users.add_user(username, role, password)
    return _done(f"User {username} created; they must change the password at first sign-in.")


@bp.post("/<int:user_id>/role")
@admin_required
@recent_sign_in("user.role", refuse=_reauth_refused)
def set_role(user_id: int):
    """Change a user's role; the last active admin and oneself cannot be demoted."""
    user = _target(user_id)
    role = request.form.get("role")
    if role not in ROLES:
        return _render({"role": "Unknown role."}, 400)
    try:
        users.change_role(user, role, by=current_user._get_current_object())
    except UserRuleError as exc:
        return _refuse(str(exc))
    return _done(f"{user.username} is now {role}.")


@bp.post("/<int:user_id>/reset-password")
@admin_required
@recent_sign_in("user.reset_password", refuse=_reauth_refused)
def reset_password(user_id: int):
    """Set a temporary password; the user must change it at next sign-in."""
    user = _target(user_id)
    password = request.form.get("password") or ""
    if user.source != "local":
        return _refuse(f"{user.username} signs in through the directory: reset it there.")
    if problem := password_problem(password, user.username):
        return _render({f"password_{user.id}": problem}, 400)
    users.set_temporary_password(user, password)
    return _done(f"Temporary password set for {user.username}.")


@bp.post("/<int:user_id>/disable")
@admin_required
@recent_sign_in("user.disable", refuse=_reauth_refused)
def toggle_disabled(user_id: int):
    """Disable or re-enable a user; disabling ends their sessions."""
    user = _target(user_id)
    disable = request.form.get("disabled") == "1"
    try:
        users.set_disabled(user, disable, by=current_user._get_current_object())
    except UserRuleError as exc:
        return _refuse(str(exc))
    return _done(f"{user.username} is {'disabled' if disable else 'enabled'}.")


@bp.post("/<int:user_id>/unlock")
@admin_required
@recent_sign_in("user.unlock", refuse=_reauth_refused)
def unlock_user(user_id: int):
    """End a lock after failed sign-ins (audited)."""
    user = _target(user_id)
    if not users.unlock(user):
        return _refuse(f"{user.username} is not locked.")
    return _done(f"{user.username} is unlocked.")


@bp.post("/<int:user_id>/delete")
@admin_required
@recent_sign_in("user.delete", refuse=_reauth_refused)
def delete_user(user_id: int):
    """Delete a user; nobody can delete themselves or the last active admin."""
    user = _target(user_id)
    name = user.username
    try:
        users.delete_user(user, by=current_user._get_current_object())
    except UserRuleError as exc:
        return _refuse(str(exc))
    return _done(f"User {name} deleted.")


@bp.post("/<int:user_id>/reset-second-factor")
@admin_required
@recent_sign_in("user.reset_second_factor", refuse=_reauth_refused)
def reset_second_factor(user_id: int):
    """Remove a user's second factors and recovery codes; they enrol again at next sign-in."""
    user = _target(user_id)
    second_factor.reset(user)
    return _done(f"Second factors of {user.username} removed; they set one up again.")


def _group(group_id: int) -> Group:
    group = db.session.get(Group, group_id)
    if group is None:
        abort(404, description="No such group.")
    return group


def _group_change(change, *args, done: str):
    try:
        change(*args)
    except groups.GroupError as exc:
        return _refuse(str(exc))
    return _done(done)


@bp.post("/groups")
@admin_required
@recent_sign_in("group.create", refuse=_reauth_refused)
def create_group():
    """Create a group mapped to a global role: local (members managed here) or filled from
    the directory or OpenID Provider group of the same name."""
    name = (request.form.get("name") or "").strip()
    role = request.form.get("role") or "member"
    source = request.form.get("source") or "local"
    return _group_change(groups.create, name, role, source, done=f"Group {name} created.")


@bp.post("/groups/<int:group_id>/role")
@admin_required
@recent_sign_in("group.update", refuse=_reauth_refused)
def set_group_role(group_id: int):
    """Map a group to another global role; its members' access changes at once."""
    group = _group(group_id)
    role = request.form.get("role") or ""
    return _group_change(groups.set_role, group, role, done=f"Group {group.name} maps to {role}.")


@bp.post("/groups/<int:group_id>/members")
@admin_required
@recent_sign_in("group.update", refuse=_reauth_refused)
def add_group_member(group_id: int):
    """Add a user to a group."""
    group = _group(group_id)
    user = db.session.scalar(select(User).where(User.username == request.form.get("username")))
    if user is None:
        return _refuse("No such user.")
    return _group_change(
        groups.add_member, group, user, done=f"{user.username} added to {group.name}."
    )


@bp.post("/groups/<int:group_id>/members/<int:user_id>/remove")
@admin_required
@recent_sign_in("group.update", refuse=_reauth_refused)
def remove_group_member(group_id: int, user_id: int):
    """Remove a user from a group; the access it gave ends at their next request."""
    group = _group(group_id)
    user = _target(user_id)
    return _group_change(
        groups.remove_member, group, user, done=f"{user.username} removed from {group.name}."
    )


@bp.post("/groups/<int:group_id>/delete")
@admin_required
@recent_sign_in("group.delete", refuse=_reauth_refused)
def delete_group(group_id: int):
    """Delete a group with its memberships and grants."""
    group = _group(group_id)
    name = group.name
    return _group_change(groups.delete, group, done=f"Group {name} deleted.")
