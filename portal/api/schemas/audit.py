"""Who saw what: a person's report, the credentials' "seen by", and rotating what they saw."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...audit.seen import SeenQuery
from ...environments.service import MAX_PASSWORD
from .common import Source, Timestamp

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
