"""The audit trail, the portal's own metadata, and the notification channels, outbox and
deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Model, utcnow


class AuditEvent(Model):
    """An audit record: who did what to which target, from where, with what outcome."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        # "Who saw what": one person's records of a period (portal.audit.seen).
        Index("ix_audit_events_actor_at", "actor", "at"),
        Index("ix_audit_events_seq", "seq", unique=True),
        Index("ix_audit_events_nonce", "nonce", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    ip: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    target: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="success")
    details: Mapped[str | None] = mapped_column(Text)
    # Tamper evidence (portal.audit.chain): the seal written with the record, and its place
    # and link in the chain, given soon after its commit.
    nonce: Mapped[str | None] = mapped_column(String(32))
    mac: Mapped[str | None] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    chain: Mapped[str | None] = mapped_column(String(64))


class CredentialSighting(Model):
    """Which credentials an audit record showed a password of: one for a reveal or copy, the
    exported list for an export (portal.audit.sightings). An index of the sealed records, so
    that "who saw this password" needs no search of their text."""

    __tablename__ = "credential_sightings"
    __table_args__ = (
        Index("ix_credential_sightings_event", "event_id", unique=True),
        Index("ix_credential_sightings_credential", "credential_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("audit_events.id", ondelete="CASCADE"), nullable=False
    )
    # A reveal, copy or former value: its credential (no foreign key: the record outlives a
    # purged credential).
    credential_id: Mapped[int | None] = mapped_column(Integer)
    # An export: the ids of the credentials in the file, as ranges ("3-250,260"); the sealed
    # record holds their count and digest.
    credential_ids: Mapped[str | None] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    event: Mapped[AuditEvent] = relationship()


class AuditCheckpoint(Model):
    """A signed statement of the chain's head at a time (portal.audit.checkpoints); the same
    is written to a file beside the backups and forwarded."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    record_id: Mapped[int | None] = mapped_column(Integer)
    chain: Mapped[str] = mapped_column(String(64), nullable=False)
    key_id: Mapped[str] = mapped_column(String(64), nullable=False)
    signature: Mapped[str] = mapped_column(Text, nullable=False)


class AuditDestination(Model):
    """Where the audit records are forwarded off the VM (portal.audit.forwarding): each gets
    every sealed record once, in chain order, from its cursor `sent_seq`."""

    __tablename__ = "audit_destinations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    address: Mapped[str] = mapped_column(String(512), nullable=False)
    ca_pem: Mapped[str | None] = mapped_column(Text)
    token_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    sent_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    sent_checkpoint_id: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime)
    behind_alerted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class PortalMeta(Model):
    """Small key/value facts about this installation (key check value, install time)."""

    __tablename__ = "portal_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class NotificationChannel(Model):
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


class NotificationOutbox(Model):
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


class NotificationDelivery(Model):
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
