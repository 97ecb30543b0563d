"""Who may do what, and where: effective global roles and levels per environment.

The only place of the rule. A user's effective global role is the highest of their own role
and the roles mapped to their groups (member < auditor < readonly < admin). A role implies a
level on every environment (admin: manage, readonly: reveal, auditor: view, member: none);
grants to the user or to one of their groups add levels on single environments. The level on
an environment is the highest of these. Views ask `level` and `visible_environment_ids`;
queries filter with the ids. Callers commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select

from .. import audit
from ..models import LEVELS, Environment, EnvironmentGrant, Group, GroupMember, User
from ..platform.extensions import db

LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
# The level a global role gives on every environment.
ROLE_LEVEL: dict[str, str | None] = {
    "member": None,
    "auditor": "view",
    "readonly": "reveal",
    "admin": "manage",
}


class GrantError(ValueError):
    """A grant that cannot be stored; `field` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def effective_role(user: User) -> str:
    """The highest of the user's own role and their groups' roles (`User.effective_role`)."""
    return user.effective_role


def has_role(user: User, roles: tuple[str, ...]) -> bool:
    """True when the user's effective role is one of `roles`. Roles are not nested beyond
    environments: the audit log is for auditors and admins, not for read-only users."""
    return effective_role(user) in roles


def at_least(level: str | None, needed: str) -> bool:
    """True when `level` (None: no access) allows what needs `needed`."""
    return level is not None and LEVEL_RANK[level] >= LEVEL_RANK[needed]


def _highest(levels: Iterable[str | None]) -> str | None:
    known = [level for level in levels if level in LEVEL_RANK]
    return max(known, key=LEVEL_RANK.__getitem__, default=None)


def _granted_to(user: User):
    """SQL condition: a grant to the user or to one of their groups."""
    their_groups = select(GroupMember.group_id).where(GroupMember.user_id == user.id)
    return or_(EnvironmentGrant.user_id == user.id, EnvironmentGrant.group_id.in_(their_groups))


def level(user: User, environment_id: int) -> str | None:
    """The user's level on an environment, or None when they may not see it (or it does not
    exist: both answer 404)."""
    if db.session.get(Environment, environment_id) is None:
        return None
    granted = db.session.scalars(
        select(EnvironmentGrant.level).where(
            EnvironmentGrant.environment_id == environment_id, _granted_to(user)
        )
    )
    return _highest([ROLE_LEVEL[effective_role(user)], *granted])


def visible_environment_ids(user: User, needed: str = "view") -> set[int] | None:
    """The ids of the environments on which the user has `needed` or more; None for all."""
    if at_least(ROLE_LEVEL[effective_role(user)], needed):
        return None
    enough = LEVELS[LEVEL_RANK[needed] :]
    return set(
        db.session.scalars(
            select(EnvironmentGrant.environment_id)
            .where(_granted_to(user), EnvironmentGrant.level.in_(enough))
            .distinct()
        )
    )


def usernames_at_least(environment_id: int, needed: str, besides: int | None = None) -> list[str]:
    """The enabled users with `needed` or more on the environment, by name (but the user
    `besides`): through their own role or a group's, or a grant to them or to one of their
    groups. One query."""
    roles = [role for role, given in ROLE_LEVEL.items() if at_least(given, needed)]
    enough = LEVELS[LEVEL_RANK[needed] :]
    here = (EnvironmentGrant.environment_id == environment_id) & EnvironmentGrant.level.in_(enough)
    granted_groups = select(EnvironmentGrant.group_id).where(
        here, EnvironmentGrant.group_id.is_not(None)
    )
    role_groups = select(Group.id).where(Group.role.in_(roles))
    members = select(GroupMember.user_id).where(
        GroupMember.group_id.in_(granted_groups) | GroupMember.group_id.in_(role_groups)
    )
    granted_users = select(EnvironmentGrant.user_id).where(
        here, EnvironmentGrant.user_id.is_not(None)
    )
    exists = select(Environment.id).where(Environment.id == environment_id).exists()
    query = (
        select(User.username)
        .where(
            User.disabled.is_(False),
            exists,
            User.role.in_(roles) | User.id.in_(granted_users) | User.id.in_(members),
        )
        .order_by(User.username)
    )
    if besides is not None:
        query = query.where(User.id != besides)
    return list(db.session.scalars(query))


def audit_scope(user: User) -> set[int] | None:
    """The environments whose password activity (who saw what) the user may read: every one
    for auditors and admins (None), those they manage for everyone else (empty: none). It is
    metadata about other people, so the reveal level is not enough."""
    if has_role(user, ("auditor", "admin")):
        return None
    return visible_environment_ids(user, "manage")


def restrict(query, column, ids: set[int] | None):
    """`query` limited to rows whose `column` is one of `ids` (None: unchanged)."""
    return query if ids is None else query.where(column.in_(sorted(ids)))


def _subject(grant: EnvironmentGrant, names: dict) -> str:
    if grant.user_id is not None:
        return f"user:{names['user'][grant.user_id]}"
    return f"group:{names['group'][grant.group_id]}"


def grants_of(environment: Environment) -> list[dict]:
    """The grants on an environment as `{"subject": "user:NAME"|"group:NAME", "level"}`."""
    rows = db.session.scalars(
        select(EnvironmentGrant).where(EnvironmentGrant.environment_id == environment.id)
    ).all()
    names = {
        "user": dict(db.session.execute(select(User.id, User.username)).all()),
        "group": dict(db.session.execute(select(Group.id, Group.name)).all()),
    }
    return sorted(
        ({"subject": _subject(g, names), "level": g.level} for g in rows),
        key=lambda g: g["subject"],
    )


def _resolve(subject: str, index: int) -> tuple[str, int]:
    kind, _, name = subject.partition(":")
    field = f"{index}.subject"
    if any(ord(c) < 32 for c in name):  # never a name; PostgreSQL refuses NUL in a query
        raise GrantError(field, "No such name.")
    if kind == "user":
        found = db.session.scalar(select(User.id).where(User.username == name))
    elif kind == "group":
        found = db.session.scalar(select(Group.id).where(Group.name == name))
    else:
        raise GrantError(field, "A subject is user:NAME or group:NAME.")
    if found is None:
        raise GrantError(field, f"No such {kind}: {name}.")
    return kind, found


def describe(entries: list[dict]) -> str:
    """Grants as one line for the audit log: `group:ops=view, user:erin=manage`."""
    return ", ".join(f"{e['subject']}={e['level']}" for e in entries) or "(none)"


def set_grants(environment: Environment, entries: list[tuple[str, str]]) -> list[dict]:
    """Replace the grants on an environment by `entries` (subject, level); audited with the
    grants before and after. Answers the grants after."""
    seen: set[tuple[str, int]] = set()
    wanted: list[EnvironmentGrant] = []
    for index, (subject, grant_level) in enumerate(entries):
        if grant_level not in LEVEL_RANK:
            raise GrantError(f"{index}.level", f"The level is one of: {', '.join(LEVELS)}.")
        kind, subject_id = _resolve(subject, index)
        if (kind, subject_id) in seen:
            raise GrantError(f"{index}.subject", "Each subject at most once.")
        seen.add((kind, subject_id))
        wanted.append(
            EnvironmentGrant(
                environment_id=environment.id,
                user_id=subject_id if kind == "user" else None,
                group_id=subject_id if kind == "group" else None,
                level=grant_level,
            )
        )
    before = grants_of(environment)
    db.session.execute(
        EnvironmentGrant.__table__.delete().where(EnvironmentGrant.environment_id == environment.id)
    )
    db.session.add_all(wanted)
    db.session.flush()
    after = grants_of(environment)
    if before != after:
        audit.record(
            "environment.grants",
            environment.name,
            details={"id": environment.id, "before": describe(before), "after": describe(after)},
        )
    return after
