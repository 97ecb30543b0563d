"""Environments and their endpoints, connection tests, sync runs, the scheduler, definitions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...environments.endpoints import EndpointForm, FleetEndpointForm
from ...environments.service import MAX_DESCRIPTION, MAX_NAME
from ...platform.http import MAX_ID
from .common import Source, Timestamp


class EndpointIn(EndpointForm):
    """Settings of an SDDC Manager or VCF Installer; a missing field keeps the stored value."""


class FleetEndpointIn(FleetEndpointForm):
    """Settings of VCF Operations fleet management (VCF 9): an endpoint's, and the write-only
    locker decryption password; a missing field keeps the stored value."""


class EnvironmentIn(BaseModel):
    """An environment to create or change; null removes an endpoint."""

    name: str | None = Field(None, max_length=MAX_NAME)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)
    manager: EndpointIn | None = None
    installer: EndpointIn | None = None
    fleet: FleetEndpointIn | None = None


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


class FleetEndpointOut(EndpointOut):
    """Stored fleet management settings: whether a locker decryption password is stored
    (never the password) and which API answered the last sync."""

    locker_password_set: bool
    api_detected: str | None = Field(
        description="VCF 9.1 fleet password management or VCF 9.0 fleet management locker; "
        "null before a sync reached it"
    )


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
    fleet: FleetEndpointOut | None
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
    can_manage: bool = Field(description="The caller may pause, resume and run it (manage)")


class SchedulerState(BaseModel):
    """Whether the scheduler runs, and every job."""

    running: bool
    jobs: list[SchedulerJob]


class EndpointDefinition(EndpointFields):
    """Endpoint settings as exported; the password only when asked for."""

    password: str | None = None


class EnvironmentDefinition(BaseModel):
    """One environment as exported."""

    name: str
    description: str | None = None
    manager: EndpointDefinition | None = None
    installer: EndpointDefinition | None = None
    fleet: EndpointDefinition | None = None


class DefinitionsDocument(BaseModel):
    """Environment definitions, to move setups between portals."""

    format: Literal["vcf-credential-portal/environments"]
    version: int
    exported_at: Timestamp | None = None
    includes_passwords: bool | None = None
    environments: list[EnvironmentDefinition]


class DefinitionsImport(BaseModel):
    """A document as exported. Each environment is checked on its own: one that is not valid
    is skipped and reported in `errors` (by name, or by position), the others are imported."""

    model_config = ConfigDict(extra="allow")

    format: Literal["vcf-credential-portal/environments"]
    version: Literal[1]
    environments: list[Any] = Field(description="EnvironmentDefinition objects")


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
