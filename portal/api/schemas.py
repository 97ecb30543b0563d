"""Request and response models of the JSON API: they validate bodies and describe the API.

Where a service owns the rules for values (environments, definitions), the request model
describes the shape only; `api_operation(..., validate=False)` then leaves the values to it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..credentials import MAX_PER_PAGE, MAX_STALE_DAYS, STALE_DAYS, CredentialFilters
from ..environments import (
    MAX_DESCRIPTION,
    MAX_HOST,
    MAX_INTERVAL,
    MAX_NAME,
    MAX_PASSWORD,
    MAX_PORT,
    MAX_USERNAME,
    MIN_INTERVAL,
    MIN_PORT,
)
from ..http import MAX_ID

Source = Literal["manager", "installer"]
Timestamp = str  # ISO 8601, UTC


class Error(BaseModel):
    """The one error body: a message, and details per field where there are some."""

    error: str
    details: dict[str, Any]


# -- environments ----------------------------------------------------------------------------


class EndpointIn(BaseModel):
    """Settings of an SDDC Manager or VCF Installer; a missing field keeps the stored value."""

    host: str | None = Field(None, max_length=MAX_HOST, description="Host name or IP address")
    port: int | None = Field(None, ge=MIN_PORT, le=MAX_PORT, description="Default 443")
    username: str | None = Field(None, max_length=MAX_USERNAME)
    password: str | None = Field(
        None,
        max_length=MAX_PASSWORD,
        description="Write-only; empty or missing keeps the stored one, which never follows "
        "a changed host, port, account or TLS trust",
        json_schema_extra={"writeOnly": True},
    )
    verify_tls: bool | None = None
    ca_pem: str | None = Field(None, description="PEM bundle of the CA to trust")
    pinned_sha256: str | None = Field(None, description="When set, replaces CA verification")
    sync_enabled: bool | None = None
    sync_interval_minutes: int | None = Field(None, ge=MIN_INTERVAL, le=MAX_INTERVAL)


class EnvironmentIn(BaseModel):
    """An environment to create or change; null removes an endpoint."""

    name: str | None = Field(None, max_length=MAX_NAME)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    manager: EndpointIn | None = None
    installer: EndpointIn | None = None


class EndpointFields(BaseModel):
    """The settings of an endpoint as the portal stores them; never the password."""

    host: str
    port: int
    username: str
    verify_tls: bool
    ca_pem: str | None
    pinned_sha256: str | None
    sync_enabled: bool
    sync_interval_minutes: int


class EndpointOut(EndpointFields):
    """Stored endpoint settings and whether its scheduled sync is paused."""

    sync_paused: bool


class ActiveRun(BaseModel):
    """A queued or running sync."""

    id: int
    state: str
    phase: str | None


class SourceStatus(BaseModel):
    """Sync status of one source of an environment."""

    state: str = Field(description="success, partial, failed or never")
    last_sync_at: Timestamp | None
    last_success_at: Timestamp | None
    last_error: str | None
    next_run_at: Timestamp | None
    credential_count: int
    absent_count: int
    active_run: ActiveRun | None


class Environment(BaseModel):
    """An environment with its endpoints and per-source status."""

    id: int
    name: str
    description: str
    created_at: Timestamp | None
    updated_at: Timestamp | None
    manager: EndpointOut | None
    installer: EndpointOut | None
    status: dict[str, SourceStatus]


class EnvironmentList(BaseModel):
    """Every environment."""

    items: list[Environment]


class ConnectionTestIn(EndpointIn):
    """Unsaved settings to try; with environment_id, the stored password may be used."""

    source: Source
    environment_id: int | None = Field(None, ge=1, le=MAX_ID)


class ConnectionTest(BaseModel):
    """The outcome of a connection test and the certificate seen."""

    ok: bool
    message: str
    certificate_sha256: str | None
    credential_count: int | None


# -- sync runs and scheduler -------------------------------------------------------------------


class SyncRequest(BaseModel):
    """Which source to sync; none means each configured source."""

    source: Source | None = None


class SourceChoice(BaseModel):
    """One source of an environment."""

    source: Source


class SyncCounts(BaseModel):
    """Credentials by what the sync found."""

    new: int | None
    changed: int | None
    unchanged: int | None
    absent: int | None


class SyncRun(BaseModel):
    """Progress and result of a sync run."""

    id: int
    environment_id: int
    source: Source
    trigger: str
    state: Literal["queued", "running", "success", "partial", "failed"]
    phase: str | None
    counts: SyncCounts
    error: str | None
    requested_by: str | None
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None


class SyncRunsQueued(SyncRun):
    """The first queued run, and every run queued by the request."""

    runs: list[SyncRun]


class SyncRunList(BaseModel):
    """The latest sync runs, newest first."""

    items: list[SyncRun]


class SchedulerJob(BaseModel):
    """The scheduled sync of one source of an environment."""

    environment_id: int
    environment: str
    source: Source
    enabled: bool
    paused: bool
    interval_minutes: int
    next_run_at: Timestamp | None
    last_run: SyncRun | None


class SchedulerState(BaseModel):
    """Whether the scheduler runs, and every job."""

    running: bool
    jobs: list[SchedulerJob]


# -- credentials ---------------------------------------------------------------------------


class CredentialQuery(CredentialFilters):
    """Search box, column filters (substring for host, user and domain), sort and page."""

    page: int = Field(1, ge=1, le=10**6)
    per_page: int = Field(50, ge=1, le=MAX_PER_PAGE)


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
    environment: str | None = Field(None, description="Only in searches across environments")
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


class HistoryEntry(BaseModel):
    """One password a credential had; never the password itself."""

    id: int
    first_seen_at: Timestamp | None
    changed_at: Timestamp | None
    changed_by: str | None
    current: bool


class HistoryList(BaseModel):
    """Password history, newest first."""

    items: list[HistoryEntry]


# -- definitions ---------------------------------------------------------------------------


class EndpointDefinition(EndpointFields):
    """Endpoint settings as exported; the password only when asked for."""

    password: str | None = None


class EnvironmentDefinition(BaseModel):
    """One environment as exported."""

    name: str
    description: str | None = None
    manager: EndpointDefinition | None = None
    installer: EndpointDefinition | None = None


class DefinitionsDocument(BaseModel):
    """Environment definitions, to move setups between portals."""

    format: Literal["vcf-credential-portal/environments"]
    version: int
    exported_at: Timestamp | None = None
    includes_passwords: bool | None = None
    environments: list[EnvironmentDefinition]


class ExportRequest(BaseModel):
    """Export with passwords: chosen explicitly, with the user's password typed again."""

    include_passwords: Literal[True]
    confirm_password: str = Field(json_schema_extra={"writeOnly": True})


class ImportResult(BaseModel):
    """What an import created and updated; errors per environment, then per field."""

    created: int
    updated: int
    errors: dict[str, dict[str, str]]
    without_password: list[str]


# -- the signed-in user --------------------------------------------------------------------


class Preferences(BaseModel):
    """The user's preferences."""

    dashboard_view: Literal["cards", "list"]
    time_zone: Literal["local", "utc"] = Field(
        description="Exact times in the browser's time zone or in UTC"
    )


class PreferencesIn(BaseModel):
    """Preferences to change; others are kept."""

    model_config = ConfigDict(extra="forbid")

    dashboard_view: Literal["cards", "list"] | None = None
    time_zone: Literal["local", "utc"] | None = None


class PreferencesOut(BaseModel):
    """The user's preferences after the change."""

    preferences: Preferences


class Me(BaseModel):
    """The signed-in user."""

    username: str
    role: Literal["admin", "readonly"]
    recent_auth: bool
    preferences: Preferences


class ReauthIn(BaseModel):
    """The signed-in user's password, typed again before a sensitive action such as an export."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    purpose: Literal["export"] | None = Field(
        None, description="What the password is for; a wrong one is audited as a denied export"
    )
    environment_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="The environment to export from; none: every one"
    )


class OpenAPIDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
