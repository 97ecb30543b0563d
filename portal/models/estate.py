"""Environments, their endpoints, the credentials fetched from them, their history, sync runs
and the actions on them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
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

from .base import Model, utcnow


class CredentialAction(Model):
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


class CredentialActionItem(Model):
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


class Environment(Model):
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


class Endpoint(Model):
    """One source of an environment (SDDC Manager, VCF Installer or VCF Operations fleet
    management) and its sync settings."""

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
    # Fleet management only: the fleet appliance's root password, which the 9.0 locker asks
    # for to decrypt each entry (encrypted, write-only), and which API answered the last sync.
    locker_password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    api_detected: Mapped[str | None] = mapped_column(String(64))

    environment: Mapped[Environment] = relationship(back_populates="endpoints")


class Credential(Model):
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
    # A rotation is owed (after a check-out or a break-glass window: checkin,
    # checkout_expired, break_glass, taken_back) until a ROTATE succeeds.
    rotation_due_since: Mapped[datetime | None] = mapped_column(DateTime)
    rotation_due_reason: Mapped[str | None] = mapped_column(String(32))
    rotation_error: Mapped[str | None] = mapped_column(Text)
    rotation_attempts: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    # Whether SDDC Manager reaches the account, as its last expiry check said (ACTIVE, ERROR,
    # UNKNOWN), and, on an ERROR, its message and what it says to do (9.1
    # connectivityErrorDetails: errorMessage, remediationMessage), made safe for display.
    connectivity_status: Mapped[str | None] = mapped_column(String(32))
    connectivity_error: Mapped[str | None] = mapped_column(Text)
    connectivity_remediation: Mapped[str | None] = mapped_column(Text)


class AttentionFinding(Model):
    """A finding of the "needs attention" list that was announced: each is alerted once, and
    forgotten when it no longer holds (so that it is announced again if it comes back)."""

    __tablename__ = "attention_findings"
    __table_args__ = (UniqueConstraint("credential_id", "kind", name="uq_attention_finding"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), nullable=False
    )
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # connectivity, expired, expiry_unknown, stale_spec
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class PasswordHistory(Model):
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


class SyncRun(Model):
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
