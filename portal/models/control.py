"""Dual control: which credentials are sensitive and what they need (policies), the requests
for access to them and their windows, and the check-outs that give one person exclusive use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Model, utcnow

# What a sensitive credential may need, in the order the gate names them.
REQUIREMENTS = ("approval", "checkout")
REQUEST_KINDS = ("approval", "break_glass")
REQUEST_STATES = ("pending", "approved", "denied", "revoked", "expired", "closed", "cancelled")


class AccessPolicy(Model):
    """One rule: the credentials it matches (NULL = any; `username` may hold `*`) and what they
    need. Rules of an environment apply in `position` order; rules with no environment are the
    global default, a minimum in every environment (its own rules add to them)."""

    __tablename__ = "access_policies"
    __table_args__ = (Index("ix_access_policies_env_position", "environment_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int | None] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    resource_type: Mapped[str | None] = mapped_column(String(64))
    credential_type: Mapped[str | None] = mapped_column(String(64))
    account_type: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(512))
    # Comma-separated subset of REQUIREMENTS.
    requires: Mapped[str] = mapped_column(String(32), nullable=False, default="approval")
    # Whether the requester may open a window alone in an emergency.
    break_glass: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class AccessRequest(Model):
    """A person's request to see one credential's password, its decision and its window."""

    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), nullable=False, index=True
    )
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False, index=True
    )
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requester_name: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="approval")
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    ticket: Mapped[str | None] = mapped_column(String(128))
    minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decider_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decider_name: Mapped[str | None] = mapped_column(String(128))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    opens_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The window's end; a pending request also expires at this time.
    closes_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The credential's last_changed_at when the window opened: a change closes the window.
    changed_at_approval: Mapped[datetime | None] = mapped_column(DateTime)
    closed_reason: Mapped[str | None] = mapped_column(String(64))


class CredentialCheckout(Model):
    """One person's exclusive use of a credential, until check-in, expiry or take-back."""

    __tablename__ = "credential_checkouts"
    __table_args__ = (
        # At most one active check-out per credential.
        Index(
            "uq_credential_checkouts_one_active",
            "credential_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), nullable=False, index=True
    )
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), nullable=False
    )
    holder_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    holder_name: Mapped[str] = mapped_column(String(128), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    ended_by_name: Mapped[str | None] = mapped_column(String(128))
    # checkin, expired, taken_back
    end_reason: Mapped[str | None] = mapped_column(String(32))
    # The rotation that followed.
    action_id: Mapped[int | None] = mapped_column(
        ForeignKey("credential_actions.id", ondelete="SET NULL")
    )
