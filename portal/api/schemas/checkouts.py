"""Check-outs of credentials, and the credentials that need rotation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...control.checkouts import DEFAULT_MINUTES, MAX_MINUTES, MAX_REASON, MIN_MINUTES
from ...platform.http import MAX_ID
from .common import Timestamp


class CheckoutIn(BaseModel):
    """Exclusive use of a credential for a time, and why."""

    model_config = ConfigDict(extra="forbid", strict=True)

    minutes: int = Field(
        DEFAULT_MINUTES,
        ge=MIN_MINUTES,
        le=MAX_MINUTES,
        description="How long: the check-out ends by itself then, and the password is rotated",
    )
    reason: str = Field(min_length=1, max_length=MAX_REASON, examples=["CHG-1234 host patch"])

    @field_validator("reason")
    @classmethod
    def _said(cls, reason: str) -> str:
        reason = reason.strip()
        if not reason:
            raise ValueError("Say why you check it out.")
        return reason


class CheckinIn(BaseModel):
    """Ending a check-out (check-in, or a manager's take-back with its reason)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str | None = Field(None, max_length=MAX_REASON)


class RotationState(BaseModel):
    """A rotation the portal owes: since when, why, how many attempts failed and the last
    error."""

    since: Timestamp
    reason: str | None
    attempts: int
    error: str | None


class CheckoutHolder(BaseModel):
    """Who holds a credential's active check-out, until when, and whether it is the caller."""

    id: int
    holder: str
    until: Timestamp
    mine: bool


class Checkout(BaseModel):
    """A check-out, active or ended, with the rotation that followed it."""

    id: int
    credential_id: int
    environment_id: int
    holder: str
    reason: str
    created_at: Timestamp
    due_at: Timestamp
    state: Literal["active", "ended"]
    ended_at: Timestamp | None
    ended_by: str | None
    end_reason: Literal["checkin", "expired", "taken_back"] | None
    action_id: int | None = Field(description="The rotate action that followed its end")
    hostname: str | None = None
    username: str | None = None
    credential_type: str | None = None
    needs_rotation: bool | None = None


class CheckoutEnded(Checkout):
    """An ended check-out and what became of its rotation."""

    rotation: Literal["queued", "waiting"] = Field(
        description="queued: the rotate action is queued (action_id); waiting: SDDC Manager "
        "is busy or the rotation cannot run yet, the queue tries again"
    )


class CheckoutQuery(BaseModel):
    """Which check-outs: active (default), ended or all; of one environment or credential."""

    state: Literal["active", "ended", "all"] = "active"
    environment_id: int | None = Field(None, ge=1, le=MAX_ID)
    credential_id: int | None = Field(None, ge=1, le=MAX_ID)


class CheckoutList(BaseModel):
    """Check-outs, newest first (at most 200)."""

    items: list[Checkout]


class NeedsRotationQuery(BaseModel):
    """Of one environment, or all that the caller sees."""

    environment_id: int | None = Field(None, ge=1, le=MAX_ID)


class NeedsRotationItem(RotationState):
    """A credential that needs rotation and the latest attempt."""

    credential_id: int
    environment_id: int
    environment: str
    hostname: str
    username: str
    credential_type: str
    action_id: int | None
    action_state: str | None


class NeedsRotationList(BaseModel):
    """The credentials that need rotation, oldest first."""

    items: list[NeedsRotationItem]
