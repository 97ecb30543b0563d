"""Dual control: policies of sensitive credentials, access requests and their windows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...control.policies import PolicyIn, Rule
from ...control.requests import AccessRequestIn, DecisionIn
from .common import Timestamp

__all__ = [
    "AccessRequestIn",
    "AccessRequestList",
    "AccessRequestOut",
    "AccessRequestQuery",
    "DecisionIn",
    "Policy",
    "PolicyIn",
    "Rule",
]

RequestState = Literal["pending", "approved", "denied", "revoked", "expired", "closed", "cancelled"]


class Policy(BaseModel):
    """The rules of an environment (or the global default) and the defaults, which apply to
    every environment as well: an environment's rules add to them."""

    environment_id: int | None = Field(description="null: the global default rules")
    rules: list[Rule] = Field(description="The environment's own rules (or the defaults)")
    defaults: list[Rule] = Field(
        description="The global default rules: they apply in every environment, whatever its "
        "own rules (a credential needs everything the matching rules of both ask)"
    )


class AccessRequestOut(BaseModel):
    """A request for access to a sensitive credential, its decision and its window."""

    id: int
    credential_id: int
    environment_id: int
    credential: str = Field(description="Environment / host / user (type)")
    hostname: str
    username: str
    requester: str
    kind: Literal["approval", "break_glass"]
    reason: str
    ticket: str | None
    minutes: int
    state: RequestState
    created_at: Timestamp
    decided_at: Timestamp | None
    decider: str | None
    decision_reason: str | None
    opens_at: Timestamp | None
    closes_at: Timestamp | None = Field(
        description="The window's end; for a pending request, when it expires undecided"
    )
    closed_reason: str | None
    open: bool = Field(description="The window is open now: the requester may see the password")


class AccessRequestList(BaseModel):
    """Requests, newest first (at most 200)."""

    items: list[AccessRequestOut]
    pending_for_me: int = Field(description="Pending requests the caller may decide")
    break_glass_open: int = Field(
        description="Others' break-glass windows open now that the caller may review and revoke"
    )


class AccessRequestQuery(BaseModel):
    """Which requests: by state (`open`: approved windows not yet ended), and only the
    caller's own."""

    model_config = ConfigDict(extra="forbid")

    state: (
        Literal[
            "pending", "open", "approved", "denied", "revoked", "expired", "closed", "cancelled"
        ]
        | None
    ) = None
    mine: bool = False
