"""The audit log's forwarding destinations."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ...audit.forwarding import DestinationIn

__all__ = ["DestinationCreated", "DestinationIn", "DestinationList", "DestinationOut"]


class DestinationOut(BaseModel):
    """A destination with its progress; never its token."""

    id: int
    kind: str
    address: str
    ca_pem: str | None
    has_token: bool
    created_at: str
    created_by: str
    sent_seq: int = Field(description="The chain position the destination has taken up to")
    backlog: int = Field(description="Sealed records it has not taken yet")
    last_success_at: str | None
    last_error: str | None
    last_error_at: str | None


class DestinationList(BaseModel):
    items: list[DestinationOut]


class DestinationCreated(BaseModel):
    id: int
