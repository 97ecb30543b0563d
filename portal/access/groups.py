"""Local groups: creation, deletion, members, and the global role each one maps to.

Every change is audited with the value before and after; callers commit. Access follows at
once: roles and grants are read from the database on every request (portal/access/grants.py).
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from .. import audit
from ..models import GROUP_SOURCES, ROLES, Group, User
from ..platform.extensions import db

GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
# Directory and OIDC group names come as the directory spells them (a path, an e-mail, a
# name with a comma): anything printable, up to 64 characters.
DIRECTORY_GROUP_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f\s][^\x00-\x1f\x7f]{0,63}$")


class GroupError(ValueError):
    """A group change that cannot be made; `field` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def listed() -> list[Group]:
    """Every group by name."""
    return list(db.session.scalars(select(Group).order_by(Group.name)))


def by_name(name: str) -> Group | None:
    """The group of this name, or None."""
    if any(ord(c) < 32 for c in name):  # never a name; PostgreSQL refuses NUL in a query
        return None
    return db.session.scalar(select(Group).where(Group.name == name))


def as_dict(group: Group) -> dict:
    """The API shape of a group: name, role, member names."""
    return {
        "id": group.id,
        "name": group.name,
        "role": group.role,
        "source": group.source,
        "members": [user.username for user in group.members],
    }


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise GroupError("role", f"The role is one of: {', '.join(ROLES)}.")


def create(name: str, role: str = "member", source: str = "local") -> Group:
    """Create a group mapped to `role` (audited). An "ldap" or "oidc" group takes its members
    from the directory or OpenID Provider groups of the same name at each sign-in."""
    name = name.strip()
    if source not in GROUP_SOURCES:
        raise GroupError("source", f"The source is one of: {', '.join(GROUP_SOURCES)}.")
    if source == "local" and not GROUP_NAME_RE.match(name):
        raise GroupError("name", "1 to 64 letters, digits, space, dot, dash, underscore or @.")
    if source != "local" and not DIRECTORY_GROUP_NAME_RE.match(name):
        raise GroupError("name", "1 to 64 printable characters, as the directory names it.")
    _check_role(role)
    taken = db.session.scalar(select(Group).where(func.lower(Group.name) == name.lower()))
    if taken is not None:
        raise GroupError("name", "This group name is taken.")
    group = Group(name=name, role=role, source=source)
    db.session.add(group)
    db.session.flush()
    audit.record("group.create", name, details={"role": role, "source": source})
    return group


def delete(group: Group) -> None:
    """Delete a group with its memberships and grants (audited)."""
    name, role = group.name, group.role
    members = ", ".join(u.username for u in group.members) or "(none)"
    db.session.delete(group)
    audit.record("group.delete", name, details={"role": role, "members": members})


def set_role(group: Group, role: str) -> None:
    """Map the group to another global role (audited with before and after)."""
    _check_role(role)
    if role == group.role:
        return
    old, group.role = group.role, role
    audit.record("group.role", group.name, details={"before": old, "after": role})


def set_members(group: Group, usernames: list[str]) -> None:
    """Make `usernames` the group's members (audited with before and after)."""
    names = list(dict.fromkeys(usernames))
    if group.source != "local" and names != [u.username for u in group.members]:
        raise GroupError("members", "The directory sets this group's members at each sign-in.")
    if any(ord(c) < 32 for name in names for c in name):  # PostgreSQL refuses NUL
        raise GroupError("members", "A user name has no control characters.")
    users = list(db.session.scalars(select(User).where(User.username.in_(names))))
    missing = sorted(set(names) - {u.username for u in users})
    if missing:
        raise GroupError("members", f"No such user: {missing[0]}.")
    before = [u.username for u in group.members]
    group.members = sorted(users, key=lambda u: u.username)
    after = [u.username for u in group.members]
    if before != after:
        audit.record(
            "group.members",
            group.name,
            details={
                "before": ", ".join(before) or "(none)",
                "after": ", ".join(after) or "(none)",
            },
        )


def add_member(group: Group, user: User) -> None:
    """Add a user to the group (audited)."""
    if user not in group.members:
        set_members(group, [u.username for u in group.members] + [user.username])


def remove_member(group: Group, user: User) -> None:
    """Remove a user from the group (audited); their access through it ends at once."""
    if user in group.members:
        set_members(group, [u.username for u in group.members if u.id != user.id])
