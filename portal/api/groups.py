"""Local groups, their members and role mappings; users' roles; grants on environments
(admin)."""

from __future__ import annotations

from flask import abort, jsonify
from flask_login import current_user
from sqlalchemy import select

from ..access import grants, groups
from ..access.guards import admin_required, environment_for, recent_sign_in
from ..identity import users
from ..models import Group, User
from ..platform import clock
from ..platform.extensions import db
from ..platform.http import json_error
from . import schemas as s
from .base import bp
from .spec import FieldErrors, api_operation


def _group(group_id: int) -> Group:
    group = db.session.get(Group, group_id)
    if group is None:
        abort(404, description="No such group.")
    return group


@bp.get("/environments/<int:env_id>/grants")
@admin_required
@api_operation({200: s.GrantList})
def list_grants(env_id: int):
    """Every grant on an environment (`user:NAME` or `group:NAME` at a level)."""
    return jsonify(grants.grants_of(environment_for(env_id)))


@bp.put("/environments/<int:env_id>/grants")
@admin_required
@recent_sign_in("environment.grants")
@api_operation({200: s.GrantList}, s.GrantList, errors=(422,))
def replace_grants(env_id: int, body: s.GrantList):
    """Replace every grant on an environment; audited with the grants before and after."""
    environment = environment_for(env_id)
    try:
        after = grants.set_grants(environment, [(g.subject, g.level) for g in body.root])
    except grants.GrantError as exc:
        db.session.rollback()
        raise FieldErrors({exc.field: str(exc)}) from None
    return jsonify(after)


@bp.get("/groups")
@admin_required
@api_operation({200: s.GroupListOut})
def list_groups():
    """Every group with its role, source and members."""
    return jsonify(items=[groups.as_dict(g) for g in groups.listed()])


@bp.post("/groups")
@admin_required
@recent_sign_in("group.create")
@api_operation({201: s.Group}, s.GroupIn, errors=(403, 422))
def create_group(body: s.GroupIn):
    """Create a group mapped to a role."""
    try:
        group = groups.create(body.name, body.role, body.source)
        if body.members:
            groups.set_members(group, body.members)
    except groups.GroupError as exc:
        db.session.rollback()
        raise FieldErrors({exc.field: str(exc)}) from None
    return jsonify(groups.as_dict(group)), 201


@bp.get("/groups/<int:group_id>")
@admin_required
@api_operation({200: s.Group})
def get_group(group_id: int):
    """One group with its role and members."""
    return jsonify(groups.as_dict(_group(group_id)))


@bp.patch("/groups/<int:group_id>")
@admin_required
@recent_sign_in("group.update")
@api_operation({200: s.Group}, s.GroupChange, errors=(403, 422))
def update_group(group_id: int, body: s.GroupChange):
    """Change a group's role mapping and/or replace its members; audited before and after."""
    group = _group(group_id)
    try:
        if body.role is not None:
            groups.set_role(group, body.role)
        if body.members is not None:
            groups.set_members(group, body.members)
    except groups.GroupError as exc:
        db.session.rollback()
        raise FieldErrors({exc.field: str(exc)}) from None
    return jsonify(groups.as_dict(group))


@bp.delete("/groups/<int:group_id>")
@admin_required
@recent_sign_in("group.delete")
@api_operation({204: None}, errors=(403,))
def delete_group(group_id: int):
    """Delete a group with its memberships and grants (audited)."""
    groups.delete(_group(group_id))
    return "", 204


def _user_roles(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "effective_role": user.effective_role,
        "groups": [g.name for g in user.groups],
        "disabled": bool(user.disabled),
        "locked_until": clock.iso(users.locked_until(user)),
        "source": user.source,
    }


@bp.get("/users")
@admin_required
@api_operation({200: s.UserRolesList})
def list_user_roles():
    """Every user with their own role, groups and effective role."""
    everyone = db.session.scalars(select(User).order_by(User.username))
    return jsonify(items=[_user_roles(u) for u in everyone])


@bp.post("/users/<int:user_id>/unlock")
@admin_required
@recent_sign_in("user.unlock")
@api_operation({200: s.UserRoles}, errors=(403, 409))
def unlock_user(user_id: int):
    """End a user's lock after failed sign-ins now (audited); 409 when not locked."""
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description="No such user.")
    if not users.unlock(user):
        return json_error(409, f"{user.username} is not locked.")
    return jsonify(_user_roles(user))


@bp.patch("/users/<int:user_id>")
@admin_required
@recent_sign_in("user.role")
@api_operation({200: s.UserRoles}, s.RoleChange, errors=(403, 409, 422))
def set_user_role(user_id: int, body: s.RoleChange):
    """Give a user another own role (not oneself; an active admin always remains)."""
    user = db.session.get(User, user_id)
    if user is None:
        abort(404, description="No such user.")
    try:
        users.change_role(user, body.role, by=current_user._get_current_object())
    except users.UserRuleError as exc:
        db.session.rollback()
        return json_error(409, str(exc))
    return jsonify(_user_roles(user))
