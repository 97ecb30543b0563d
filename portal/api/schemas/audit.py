"""The audit log: its filters, its records, the note on archived records, the destinations
records are forwarded to, and who saw what (a person's report, the credentials' "seen by",
and rotating what they saw)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...audit.forwarding import DestinationIn
from ...audit.queries import AuditQuery
from ...audit.seen import SeenQuery
from ...environments.endpoints import MAX_PASSWORD
from ...platform.http import MAX_ID
from .common import Source, Timestamp

__all__ = [
    "ArchivedNote",
    "AuditPage",
    "AuditPageQuery",
    "AuditRecord",
    "DestinationCreated",
    "DestinationIn",
    "DestinationList",
    "DestinationOut",
    "SeenByItem",
    "SeenByList",
    "SeenItem",
    "SeenPageQuery",
    "SeenReport",
    "SeenRotateIn",
    "SeenRotation",
    "SeenRotationAction",
    "SeenRotationItem",
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


Way = Literal["reveal", "copy", "former", "export"]
Basis = Literal["recorded", "by_name", "estimated"]


class SeenPageQuery(SeenQuery):
    """Whose report, which period, which page of it."""

    page: int = Field(1, ge=1, le=10**6)
    per_page: int = Field(100, ge=1, le=1000)


class SeenItem(BaseModel):
    """A credential whose password the person saw in the period; never the password."""

    credential_id: int | None = Field(description="null where no credential matches")
    environment_id: int | None
    environment: str
    hostname: str
    username: str
    credential_type: str
    source: Source | None
    status: Literal["present", "absent", "purged", "unmatched"]
    ways: list[Way] = Field(
        description="reveal, copy, former (a value from the history), export (a file)"
    )
    times: int = Field(description="How many audit records showed it")
    first_shown_at: Timestamp
    last_shown_at: Timestamp
    still_current: bool | None = Field(
        description="The password they saw is still the credential's (null: unknown)"
    )
    basis: Basis = Field(
        description="recorded (by id or the export's list), by_name (an older record's "
        "text), estimated (an older export: its environment's credentials then)"
    )
    target: str | None = Field(description="The audit record's target where no credential matches")


class SeenReport(BaseModel):
    """Every password a person revealed, copied or exported in a period, one item per
    credential, sorted by environment, host and account."""

    person: str
    since: date | None
    until: date | None
    items: list[SeenItem]
    total: int
    page: int
    per_page: int
    records: dict[Way, int] = Field(
        description="How many audit records of each kind (reveal, copy, former, export) the "
        "items come from"
    )
    definitions_exports: list[Timestamp] = Field(
        description="When they exported the environment definitions with the service "
        "accounts' passwords (for auditors and admins only)"
    )


class SeenByItem(BaseModel):
    """A person who saw the credential's current password."""

    person: str
    ways: list[Way]
    times: int
    first_shown_at: Timestamp
    last_shown_at: Timestamp
    basis: Basis


class SeenByList(BaseModel):
    """Who saw the credential's password since it last changed, the most recent first."""

    since: Timestamp = Field(description="When the portal stored the current password")
    items: list[SeenByItem]


class SeenRotateIn(SeenQuery):
    """Rotate what a person saw in a period (a dry run first)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    dry_run: bool = Field(False, strict=True, description="Only answer what would be done")
    confirm_password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD)


class SeenRotationItem(BaseModel):
    """A credential of the report and what the rotation does with it (SDDC Manager's copy
    of an account stands for the VCF Installer's)."""

    credential_id: int | None
    environment_id: int | None
    environment: str
    hostname: str
    username: str
    credential_type: str
    state: Literal["planned", "later", "skipped"] = Field(
        description="planned (in an action), later (over the limit of one request: run it "
        "again), skipped (see reason)"
    )
    reason: str | None


class SeenRotationAction(BaseModel):
    """One rotate action: one environment, at most 500 credentials."""

    id: int | None = Field(
        description="The action (GET /credential-actions/{id}); null in a dry run"
    )
    environment_id: int
    environment: str
    credentials: int


class SeenRotation(BaseModel):
    """The rotation of what a person saw: its actions and every credential's state."""

    person: str
    dry_run: bool
    actions: list[SeenRotationAction]
    items: list[SeenRotationItem]
    planned: int
    later: int
    skipped: int
