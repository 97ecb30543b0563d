"""Groups, roles and grants."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from .common import Timestamp

RoleName = Literal["member", "auditor", "readonly", "admin"]


class Grant(BaseModel):
    """Access to one environment for a user or a group, at one level."""

    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str = Field(
        pattern=r"^(user|group):.{1,64}$",
        max_length=70,
        description="`user:NAME` or `group:NAME`",
    )
    level: Literal["view", "reveal", "approve", "manage"] = Field(
        description="view: metadata; reveal: also passwords, history values and exports; "
        "approve: also approving others' requests for sensitive credentials; "
        "manage: also editing the environment, syncs, pause and credential actions"
    )


class GrantList(RootModel[list[Grant]]):
    """Every grant on an environment; a PUT replaces them all."""

    root: list[Grant] = Field(max_length=1000)


class Group(BaseModel):
    """A group: the global role it maps to, where its members come from, and its members."""

    id: int
    name: str
    role: RoleName
    source: Literal["local", "ldap", "oidc"] = Field(
        description="local: members managed in the portal; ldap or oidc: members are the "
        "users of that source whose directory or provider names a group of this name, set "
        "at each sign-in"
    )
    members: list[str]


class GroupListOut(BaseModel):
    items: list[Group]


class GroupIn(BaseModel):
    """A new group."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    role: RoleName = "member"
    source: Literal["local", "ldap", "oidc"] = "local"
    members: list[str] = Field(default_factory=list, max_length=10000)


class GroupChange(BaseModel):
    """A change to a group: its role mapping and/or its whole member list."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: RoleName | None = None
    members: list[str] | None = Field(default=None, max_length=10000)


class UserRoles(BaseModel):
    """A user's own role, groups, and the effective role that follows from them."""

    id: int
    username: str
    role: RoleName
    effective_role: RoleName
    groups: list[str]
    disabled: bool
    locked_until: Timestamp | None = Field(
        None, description="While locked after failed sign-ins: when the lock ends (UTC)"
    )
    source: Literal["local", "ldap", "oidc"] = Field(
        description="Where the user signs in: a local password, LDAP, or OpenID Connect"
    )


class UserRolesList(BaseModel):
    items: list[UserRoles]


class RoleChange(BaseModel):
    """A user's new own role."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: RoleName
