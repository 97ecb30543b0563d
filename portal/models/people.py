"""Operators, their groups, grants, sessions, second factors, API tokens and sign-in."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import ROLE_RANK, ROLES, Model, utcnow


class User(UserMixin, Model):
    """An operator account."""

    __tablename__ = "users"
    __table_args__ = (Index("ix_users_source_external_id", "source", "external_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="readonly")
    must_change_password: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # An authenticator app being set up: encrypted like the confirmed secret, replaced by it
    # when the first code confirms it.
    totp_pending_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The newest 30-second step whose code was accepted: a code is good once (no replay).
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    # Password checks in progress (claimed before checking, released after): with the wrong
    # passwords counted in failed_logins, they bound the guesses checked per lockout window.
    login_checks: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    login_checks_at: Mapped[datetime | None] = mapped_column(DateTime)
    preferences: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    # local, ldap or oidc; a directory or OIDC account has no usable password hash here.
    source: Mapped[str] = mapped_column(
        String(8), nullable=False, default="local", server_default="local"
    )
    # The LDAP entry's DN, or the OIDC issuer and subject: who the account is at its source.
    external_id: Mapped[str | None] = mapped_column(String(512))
    # When the directory last confirmed the account (sign-in or periodic check).
    directory_checked_at: Mapped[datetime | None] = mapped_column(DateTime)

    @property
    def is_active(self) -> bool:
        """Disabled users cannot sign in."""
        return not self.disabled

    groups: Mapped[list[Group]] = relationship(
        secondary="group_members", back_populates="members", order_by="Group.name"
    )

    @property
    def effective_role(self) -> str:
        """The highest of the user's own role and their groups' roles (unknown roles count
        as nothing)."""
        if self.role == ROLES[-1]:
            return self.role  # nothing ranks above: no need to read the groups
        roles = [self.role, *(group.role for group in self.groups)]
        return max(
            (r for r in roles if r in ROLE_RANK), key=ROLE_RANK.__getitem__, default="member"
        )

    @property
    def is_admin(self) -> bool:
        """True when the effective role is admin (own or through a group)."""
        return self.effective_role == "admin"


class Group(Model):
    """A local group of users: mapped to a global role, and a subject of grants."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # The global role its members get at least; "member" gives none beyond their own.
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="member")
    # local: members managed here; ldap or oidc: members are the users of that source whose
    # directory or provider names a group of this name (case-insensitive) at sign-in.
    source: Mapped[str] = mapped_column(
        String(16), nullable=False, default="local", server_default="local"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    members: Mapped[list[User]] = relationship(
        secondary="group_members", back_populates="groups", order_by="User.username"
    )


class GroupMember(Model):
    """A user's membership of a group."""

    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EnvironmentGrant(Model):
    """Access to one environment at one level, for a user or for a group (exactly one)."""

    __tablename__ = "environment_grants"
    __table_args__ = (
        UniqueConstraint("environment_id", "user_id"),
        UniqueConstraint("environment_id", "group_id"),
        CheckConstraint(
            "(user_id IS NULL) <> (group_id IS NULL)", name="ck_environment_grants_subject"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class UserSession(Model):
    """A signed-in browser session, held on the server so that logout revokes it."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie token
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    authenticated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    # Set while the session waits for the second factor: it is not signed in until then.
    pending_until: Mapped[datetime | None] = mapped_column(DateTime)
    # The WebAuthn challenge this session was last given (single use).
    challenge: Mapped[str | None] = mapped_column(String(128))

    user: Mapped[User] = relationship()


class RecoveryCode(Model):
    """A single-use recovery code, kept as a hash (the code itself is shown once)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class ApiToken(Model):
    """A personal API token: its value is shown once and kept only as a SHA-256 hash."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    allowed_networks: Mapped[str | None] = mapped_column(Text)  # JSON list of CIDRs
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()


class RateWindow(Model):
    """Reveals and exports counted per token or session per minute, across workers."""

    __tablename__ = "rate_windows"
    __table_args__ = (UniqueConstraint("subject", "window_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(80), nullable=False)
    window_start: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Passkey(Model):
    """A WebAuthn credential (passkey or security key) registered as a second factor."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    credential_id: Mapped[str] = mapped_column(String(512), nullable=False, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sign_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    transports: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)


class LoginFailure(Model):
    """One failed sign-in, kept to throttle by address across workers and restarts."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_ip_at", "ip", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), nullable=False)
    ip: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class SignInProvider(Model):
    """The settings of one sign-in provider ("ldap" or "oidc"): the options as JSON, the one
    secret (bind password, client secret) encrypted under the data key."""

    __tablename__ = "sign_in_providers"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    options: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(128))
