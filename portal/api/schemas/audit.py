"""The audit log: its filters, its records, the note on archived records, and the
destinations records are forwarded to."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ...audit.forwarding import DestinationIn
from ...audit.queries import AuditQuery
from ...platform.http import MAX_ID
from .common import Timestamp

__all__ = [
    "ArchivedNote",
    "AuditPage",
    "AuditPageQuery",
    "AuditRecord",
    "DestinationCreated",
    "DestinationIn",
    "DestinationList",
    "DestinationOut",
]


class AuditPageQuery(AuditQuery):
    """The audit page's filters, and which page of records: newest first."""

    limit: int = Field(100, ge=1, le=500)
    before: int | None = Field(
        None,
        ge=1,
        le=MAX_ID,
        description="Only records older than this id (the next page: this page's last id)",
    )


class AuditRecord(BaseModel):
    """An audit record: who did what to which target, from where, with what outcome."""

    id: int
    at: Timestamp
    actor: str
    ip: str | None
    action: str
    target: str
    outcome: str
    details: str | None = Field(description="The record's details as JSON text, if any")


class ArchivedNote(BaseModel):
    """Records of the period asked for left the database for archive files."""

    before: Timestamp | None = Field(description="The oldest record the database still holds")
    folder: str = Field(description="Where the archives are, in the portal's data directory")
    files: list[str] = Field(description="Archive files holding the period (the first 10)")
    file_count: int
    search: str = Field(description="The command that searches them on the portal's machine")


class AuditPage(BaseModel):
    """Audit records newest first; `archived` when the period reaches before the database's
    oldest record."""

    items: list[AuditRecord]
    archived: ArchivedNote | None


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
