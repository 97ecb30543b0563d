"""The "needs attention" list: accounts to act on, found by reading every source."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ...alerts.attention import AttentionFilters
from ...alerts.attention import Kind as AttentionKind
from .common import Source, Timestamp


class AttentionQuery(AttentionFilters):
    """One environment or all (those the caller sees), one kind or all, and the page."""


class AttentionItem(BaseModel):
    """One account that needs attention: why, and what to do."""

    credential_id: int
    environment_id: int
    environment: str
    kind: AttentionKind
    reason: str = Field(description="Why it is listed, in a few words")
    source: Source
    hostname: str
    username: str
    credential_type: str
    account_type: str
    resource_type: str
    expiry_date: str | None
    expiry_status: str | None
    connectivity_status: str | None = Field(
        description="SDDC Manager's connectivityStatus at its last expiry check"
    )
    message: str | None = Field(
        description="connectivity: SDDC Manager's message (connectivityErrorDetails.errorMessage)"
    )
    remediation_message: str | None = Field(
        description="connectivity: what SDDC Manager says to do "
        "(9.1 connectivityErrorDetails.remediationMessage)"
    )
    current_source: str | None = Field(
        description="stale_spec: the source whose password is current (the installer's is not)"
    )
    what_to_do: str
    actions: list[Literal["remediate", "rotate", "update", "expiry_check"]] = Field(
        description="What the caller can start through SDDC Manager for it (POST "
        "/credentials/actions, or the environment's expiry check): only where they manage "
        "the environment"
    )
    announced_at: Timestamp | None = Field(
        description="When the alert credential.needs_attention announced it (None: not yet)"
    )


class AttentionPage(BaseModel):
    """One page of the list, with the total and the count per kind."""

    items: list[AttentionItem]
    total: int
    page: int
    per_page: int
    by_kind: dict[str, int]
