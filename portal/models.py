"""Database models. Portable SQL only: the same models run on SQLite and PostgreSQL."""

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
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .platform import clock
from .platform.extensions import db

# Global roles, lowest first: a user's effective role is the highest of their own and their
# groups' (portal/access/grants.py).
ROLES = ("member", "auditor", "readonly", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
# Levels of a grant on one environment, lowest first.
LEVELS = ("view", "reveal", "manage")
SOURCES = ("manager", "installer")
# Where an account signs in: a local password, an LDAP / Active Directory bind, or an OpenID
# Provider. Directory and OIDC accounts are created at their first sign-in.
SIGN_IN_SOURCES = ("local", "ldap", "oidc")
# A group is managed on the Users page ("local"), or filled at each sign-in from the groups the
# LDAP directory ("ldap") or the OpenID Provider ("oidc") names: each source fills only its own.
GROUP_SOURCES = ("local", "ldap", "oidc")


def utcnow() -> datetime:
    """Current UTC time, naive, as stored in the database."""
    return clock.now()


class User(UserMixin, db.Model):
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


class Group(db.Model):
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


class GroupMember(db.Model):
    """A user's membership of a group."""

    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class EnvironmentGrant(db.Model):
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


class UserSession(db.Model):
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


class RecoveryCode(db.Model):
    """A single-use recovery code, kept as a hash (the code itself is shown once)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class CredentialAction(db.Model):
    """An operation on credentials carried out by SDDC Manager: rotate, update, remediate, or
    the auto-rotate policy. Queued by a person, run by the scheduler's process."""

    __tablename__ = "credential_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    operation: Mapped[str] = mapped_column(String(16), nullable=False)
    # queued, running, success, partial, failed, cancelled
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued", index=True)
    requested_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    upstream_task_id: Mapped[str | None] = mapped_column(String(128))
    # The password of an update or remediation, encrypted, until SDDC Manager has it.
    password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    auto_rotate_enabled: Mapped[bool | None] = mapped_column(Boolean)
    auto_rotate_days: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    # SDDC Manager was busy (its limit of operations, a 429): not tried again before this.
    not_before: Mapped[datetime | None] = mapped_column(DateTime)

    items: Mapped[list[CredentialActionItem]] = relationship(
        back_populates="action", cascade="all, delete-orphan", passive_deletes=True
    )


class CredentialActionItem(db.Model):
    """One credential of an action, with its own outcome."""

    __tablename__ = "credential_action_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(
        ForeignKey("credential_actions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL"), index=True
    )
    resource_name: Mapped[str] = mapped_column(String(512), nullable=False)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    username: Mapped[str] = mapped_column(String(512), nullable=False)
    credential_type: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    error: Mapped[str | None] = mapped_column(Text)

    action: Mapped[CredentialAction] = relationship(back_populates="items")


class ApiToken(db.Model):
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


class RateWindow(db.Model):
    """Reveals and exports counted per token or session per minute, across workers."""

    __tablename__ = "rate_windows"
    __table_args__ = (UniqueConstraint("subject", "window_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(80), nullable=False)
    window_start: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Passkey(db.Model):
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


class LoginFailure(db.Model):
    """One failed sign-in, kept to throttle by address across workers and restarts."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_ip_at", "ip", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), nullable=False)
    ip: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Environment(db.Model):
    """A VCF environment: an SDDC Manager and/or a VCF Installer."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    endpoints: Mapped[list[Endpoint]] = relationship(
        back_populates="environment", cascade="all, delete-orphan", passive_deletes=True
    )


# Environment names are unique without regard to case (migration 0012).
Index("ix_environments_name_any_case", func.lower(Environment.name), unique=True)


class Endpoint(db.Model):
    """One source of an environment (SDDC Manager or VCF Installer) and its sync settings."""

    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("environment_id", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
    )
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False, default=443)
    username: Mapped[str] = mapped_column(String(255), nullable=False)
    password_enc: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    verify_tls: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    ca_pem: Mapped[str | None] = mapped_column(Text)
    pinned_sha256: Mapped[str | None] = mapped_column(String(64))
    sync_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    sync_interval_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=60)
    sync_paused: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The source's present and absent credentials, kept current by every writer of credentials
    # in its own transaction, so that the dashboard never counts the credentials table.
    # Expiry as SDDC Manager sees it: asked after each successful sync and on demand.
    expiry_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    expiry_checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    expiry_error: Mapped[str | None] = mapped_column(Text)
    credential_count: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    absent_count: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )

    environment: Mapped[Environment] = relationship(back_populates="endpoints")


class Credential(db.Model):
    """A credential fetched from a source; the password is encrypted."""

    __tablename__ = "credentials"
    __table_args__ = (
        UniqueConstraint(
            "environment_id",
            "source",
            "hostname",
            "credential_type",
            "username",
            name="uq_credential_identity",
        ),
        Index("ix_credentials_env_host", "environment_id", "hostname"),
        # Expiry checks and actions find credentials by SDDC Manager's id.
        Index("ix_credentials_env_source_remote", "environment_id", "source", "remote_id"),
        # A source's present and absent counts, read from the index alone.
        Index("ix_credentials_env_source_present", "environment_id", "source", "present"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
    )
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    hostname: Mapped[str] = mapped_column(String(512), nullable=False)
    username: Mapped[str] = mapped_column(String(512), nullable=False)
    credential_type: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    account_type: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    resource_id: Mapped[str | None] = mapped_column(String(128))
    resource_ip: Mapped[str | None] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    remote_id: Mapped[str | None] = mapped_column(String(128))
    password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # HMAC of the password (crypto.CREDENTIAL_PASSWORD_MAC): unchanged passwords are found
    # without decrypting; NULL for rows synced before the column existed.
    password_mac: Mapped[bytes | None] = mapped_column(LargeBinary)
    present: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    absent_since: Mapped[datetime | None] = mapped_column(DateTime)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_changed_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    remote_modified_at: Mapped[str | None] = mapped_column(String(64))
    expiry_date: Mapped[str | None] = mapped_column(String(64))
    expiry_status: Mapped[str | None] = mapped_column(String(32))
    auto_rotate_days: Mapped[int | None] = mapped_column(Integer)
    auto_rotate_next: Mapped[str | None] = mapped_column(String(64))


class PasswordHistory(db.Model):
    """Every value a credential's password has had, newest last."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), nullable=False, index=True
    )
    password_enc: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    changed_at: Mapped[datetime | None] = mapped_column(DateTime)  # when it was replaced
    changed_by: Mapped[str] = mapped_column(String(16), nullable=False, default="SYNC")


class SyncRun(db.Model):
    """One sync of one environment source, from queued to its outcome."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_env_source_state", "environment_id", "source", "state"),
        # At most one queued or running sync per environment source, whichever worker asks:
        # a partial unique index, which SQLite and PostgreSQL both enforce.
        Index(
            "uq_sync_runs_one_active",
            "environment_id",
            "source",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
    )
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    phase: Mapped[str | None] = mapped_column(String(32))
    requested_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    count_new: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    count_changed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    count_unchanged: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    count_absent: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Who carries out a running run ("host pid token") and when it last said it still does:
    # a run whose owner stopped renewing is failed by whichever process notices.
    owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEvent(db.Model):
    """An audit record: who did what to which target, from where, with what outcome."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    ip: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="success")
    details: Mapped[str | None] = mapped_column(Text)


class SignInProvider(db.Model):
    """The settings of one sign-in provider ("ldap" or "oidc"): the options as JSON, the one
    secret (bind password, client secret) encrypted under the data key."""

    __tablename__ = "sign_in_providers"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    options: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(128))


class PortalMeta(db.Model):
    """Small key/value facts about this installation (key check value, install time)."""

    __tablename__ = "portal_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class NotificationChannel(db.Model):
    """Where alerts go: an SMTP e-mail channel or a webhook, with the event kinds it gets."""

    __tablename__ = "notification_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # email, webhook
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    events: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # JSON list of kinds
    # Settings that are not secret, as JSON: SMTP host, port, security, user, from, to,
    # verify_tls, ca_pem; the webhook's format, verify_tls, ca_pem and the URL's host (shown).
    config: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    smtp_password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The whole webhook URL is a secret: Slack's and Teams' URLs embed their key.
    webhook_url_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    webhook_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Failed delivery attempts since the channel was created; only grows (a metric counter).
    failure_count: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )


class NotificationOutbox(db.Model):
    """An event to announce, added in the transaction of what it reports; the scheduler's
    process fans it out to the channels that want its kind and delivers it."""

    __tablename__ = "notification_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[str | None] = mapped_column(Text)  # JSON object
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # Set once delivery rows exist for every channel that wanted it.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)


class NotificationDelivery(db.Model):
    """One event for one channel: pending (with its next attempt), delivered or abandoned."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(
        ForeignKey("notification_outbox.id", ondelete="CASCADE"), nullable=False, index=True
    )
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("notification_channels.id", ondelete="CASCADE"), nullable=False, index=True
    )
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)

    outbox: Mapped[NotificationOutbox] = relationship()
    channel: Mapped[NotificationChannel] = relationship()
