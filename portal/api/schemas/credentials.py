"""Credentials: pages, password age, reveals, history, exports, and actions through SDDC Manager."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...environments.service import (
    MAX_PASSWORD,
)
from ...platform.http import MAX_ID
from ...vault.credentials import MAX_PER_PAGE, MAX_STALE_DAYS, STALE_DAYS, CredentialFilters
from .checkouts import CheckoutHolder, RotationState
from .common import Source, Timestamp

Requirement = Literal["approval", "checkout"]


class CredentialQuery(CredentialFilters):
    """Search box, column filters (substring for host, user and domain), sort and page."""

    page: int = Field(1, ge=1, le=10**6)
    per_page: int = Field(50, ge=1, le=MAX_PER_PAGE)


class AccessState(BaseModel):
    """The caller's pending request for access, or open window, on a sensitive credential."""

    request_id: int
    state: Literal["pending", "open"]
    kind: Literal["approval", "break_glass"]
    closes_at: Timestamp = Field(description="The window's end, or when the request expires")


class Credential(BaseModel):
    """Credential metadata; never the password."""

    id: int
    environment_id: int
    hostname: str
    username: str
    credential_type: str | None
    account_type: str | None
    resource_type: str | None
    resource_ip: str | None
    domain: str | None
    source: Source
    status: Literal["present", "absent"]
    absent_since: Timestamp | None
    first_seen_at: Timestamp | None
    last_changed_at: Timestamp | None
    expiry_date: str | None
    expiry_status: str | None
    auto_rotate_days: int | None
    requires: list[Requirement] = Field(
        default_factory=list,
        description="Dual control: what the policy asks before the password is shown "
        "(empty: not sensitive)",
    )
    needs: list[Requirement] | None = Field(
        None,
        description="In lists and searches: what the caller still needs now to see the "
        "password (an approved window, a check-out; `checkout` also while another holds it)",
    )
    access: AccessState | None = Field(
        None,
        description="In lists and searches: the caller's pending request or open window on it",
    )
    break_glass: bool | None = Field(
        None,
        description="In lists and searches, for a credential that needs approval: whether its "
        "rules allow break-glass (null: it needs no approval)",
    )
    rotation_due: bool = Field(
        False, description="A rotation is owed (after a check-out or a break-glass window)"
    )
    environment: str | None = Field(None, description="Only in searches across environments")
    can_reveal: bool | None = Field(
        None,
        description="Only in searches across environments: the caller may reveal and copy it "
        "(reveal or more on its environment)",
    )
    sources: list[Source] | None = Field(
        None,
        description="Only in searches across environments: every source that holds this "
        "account with this password (the item is the copy of the first)",
    )
    differs_from: list[Source] | None = Field(
        None,
        description="Only in searches across environments: sources that hold this account "
        "with another password (each is an item of its own)",
    )
    checkout: CheckoutHolder | None = Field(
        None, description="In lists and searches: the active check-out, if any"
    )
    needs_rotation: RotationState | None = Field(
        None, description="In lists and searches: the rotation the portal owes, if any"
    )
    stale: bool | None = Field(
        None,
        description="Only in searches across environments: this is the VCF Installer's copy "
        "(the bring-up value) of an account fleet management holds with another password: "
        "the installer's value no longer works",
    )


class CredentialPage(BaseModel):
    """One page of credentials and the total that match."""

    items: list[Credential]
    total: int
    page: int
    per_page: int


class PasswordAgeQuery(BaseModel):
    """The age in days beyond which a password is stale."""

    days: int = Field(STALE_DAYS, ge=1, le=MAX_STALE_DAYS)


class AgeBucket(BaseModel):
    """How many current passwords have an age in this range."""

    label: str
    min_days: int
    max_days: int | None
    count: int


class AgedCredential(Credential):
    """A credential with the age of its password."""

    age_days: int


class PasswordAge(BaseModel):
    """Password age buckets, stale passwords, and those SDDC Manager flags as expiring."""

    threshold_days: int
    buckets: list[AgeBucket]
    stale: list[AgedCredential]
    expiring: list[AgedCredential]


class RevealRequest(BaseModel):
    """Why the password is shown: "copy" is audited as a copy, anything else as a reveal."""

    purpose: str | None = Field(None, examples=["reveal", "copy"])


class Password(BaseModel):
    """A password (null when the credential has none)."""

    password: str | None


class HeldBy(BaseModel):
    """A check-out held while a password was current: who, from when, until when, and how
    it ended."""

    checkout_id: int
    holder: str
    from_: Timestamp = Field(alias="from")
    until: Timestamp | None
    end_reason: str | None


class HistoryEntry(BaseModel):
    """One password a credential had; never the password itself."""

    id: int
    first_seen_at: Timestamp | None
    changed_at: Timestamp | None
    changed_by: str | None
    current: bool
    held_by: list[HeldBy] = Field(
        default_factory=list,
        description="The check-outs held while this password was the current one",
    )


class HistoryList(BaseModel):
    """Password history, newest first."""

    items: list[HistoryEntry]
    requires: list[Requirement] = Field(
        default_factory=list, description="What the policy asks before a value is shown"
    )
    needs: list[Requirement] = Field(
        default_factory=list, description="What the caller still needs now to see a value"
    )


class CredentialExportRequest(CredentialFilters):
    """An export with passwords: the format and the credential list's filters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["csv", "xlsx"] = "csv"


class AutoRotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool
    frequency_days: int | None = Field(None, ge=1, le=90)


class ActionIn(BaseModel):
    """An operation through SDDC Manager on credentials of one environment; an update of one
    fleet management account goes through fleet password management (VCF 9.1) instead."""

    model_config = ConfigDict(extra="forbid", strict=True)

    operation: Literal["rotate", "update", "remediate", "auto_rotate"]
    credential_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=1, max_length=500
    )
    password: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PASSWORD,
        description="update: the new password; remediate: the one already set on the component",
        json_schema_extra={"writeOnly": True},
    )
    generate_password: bool = Field(
        False, description="update: let the portal generate a strong password instead"
    )
    auto_rotate: AutoRotateIn | None = None
    dry_run: bool = Field(False, description="Only answer what would be done")
    confirm_password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD)


class ActionItem(BaseModel):
    credential_id: int | None
    hostname: str
    username: str
    credential_type: str
    state: str
    error: str | None


class ActionPlan(BaseModel):
    """A dry run: the exact list an action would carry out."""

    environment_id: int
    operation: str
    items: list[ActionItem]


class ActionQueued(BaseModel):
    id: int


class Action(BaseModel):
    """An action and the outcome per credential (never a password)."""

    id: int
    environment_id: int
    operation: Literal["rotate", "update", "remediate", "auto_rotate", "fleet_update"] = Field(
        description="fleet_update: an update of a fleet management account, carried out by "
        "VCF Operations fleet password management (VCF 9.1), not SDDC Manager"
    )
    state: Literal["queued", "running", "success", "partial", "failed", "cancelled"]
    requested_by: str
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    upstream_task_id: str | None
    error: str | None
    auto_rotate: dict[str, Any] | None
    retryable: bool
    cancellable: bool
    items: list[ActionItem]


class ActionList(BaseModel):
    items: list[Action]


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    password: str | None = Field(
        None, min_length=1, max_length=MAX_PASSWORD, json_schema_extra={"writeOnly": True}
    )
    confirm_password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD)


class ExpiryCheckQueued(BaseModel):
    requested_at: Timestamp
