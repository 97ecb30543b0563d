"""Who saw what: a person's report, the credentials' "seen by", and rotating what they saw."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from ...audit.seen import SeenQuery
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
