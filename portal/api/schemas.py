"""Request and response models of the JSON API: they validate bodies and describe the API.

Where a service owns the rules for values (environments, definitions), the request model
describes the shape only; `api_operation(..., validate=False)` then leaves the values to it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from ..environments.service import (
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
from ..identity.directory.options import MAX_SECRET, LdapOptions, OidcOptions
from ..platform.http import MAX_ID
from ..vault.credentials import MAX_PER_PAGE, MAX_STALE_DAYS, STALE_DAYS, CredentialFilters

Source = Literal["manager", "installer"]
# ISO 8601 in UTC with a Z ("2026-12-07T09:12:01Z"): RFC 3339's date-time.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


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
    can_manage: bool = Field(description="The caller may pause, resume and run it (manage)")


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
    role: Literal["member", "auditor", "readonly", "admin"] = Field(
        description="The effective global role: the highest of the own role and the groups'"
    )
    recent_auth: bool
    second_factor_required: bool = Field(
        description="The policy requires a second factor this user has not set up yet: "
        "nothing but /me and /me/second-factor answers until one is confirmed"
    )
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


# -- second factor -----------------------------------------------------------------------------


class PasswordIn(BaseModel):
    """The signed-in user's current password, required to change their second factors."""

    model_config = ConfigDict(extra="forbid", strict=True)

    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class TotpStarted(BaseModel):
    """A new authenticator-app secret, shown this once; the first code confirms it."""

    secret: str = Field(description="Base32 secret to type into the app")
    otpauth_uri: str = Field(description="otpauth:// URI, the content of the QR code")


class CodeIn(BaseModel):
    """A 6-digit code from the authenticator app."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: str = Field(min_length=1, max_length=64)


class RecoveryCodes(BaseModel):
    """Ten single-use recovery codes, shown this once (kept only as hashes)."""

    recovery_codes: list[str]


class TotpState(BaseModel):
    enabled: bool
    confirmed_at: Timestamp | None
    pending: bool = Field(description="An app is being set up and waits for its first code")


class PasskeyOut(BaseModel):
    id: int
    name: str
    created_at: Timestamp | None
    last_used_at: Timestamp | None


class SecondFactors(BaseModel):
    """The signed-in user's second factors (never a secret)."""

    totp: TotpState
    passkeys: list[PasskeyOut]
    recovery_codes_left: int
    required: bool = Field(description="The policy requires this user to have a factor")


class PasskeyOptions(BaseModel):
    """PublicKeyCredentialCreationOptions (WebAuthn), binary fields in base64url."""

    model_config = ConfigDict(extra="allow")

    challenge: str
    rp: dict[str, Any]
    user: dict[str, Any]


class PasskeyIn(BaseModel):
    """The browser's registration response (PublicKeyCredential as JSON) and a name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    credential: dict[str, Any]


class PasskeyAdded(BaseModel):
    passkey: PasskeyOut
    recovery_codes: list[str] | None = Field(
        None, description="New recovery codes when this is the user's first factor"
    )


class SecurityPolicy(BaseModel):
    """Who must have a second factor."""

    model_config = ConfigDict(extra="forbid", strict=True)

    require_second_factor: Literal["none", "admins", "everyone"]


class SecurityPolicyIn(SecurityPolicy):
    """The policy to set; the password is needed when the sign-in is older than 15 minutes."""

    confirm_password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD)


# -- sign-in providers ------------------------------------------------------------------------


def _settings_out(
    options: type[BaseModel], secret: str, name: str, **extra: Any
) -> type[BaseModel]:
    """The stored settings as answered: every option, on or off, whether the secret is set."""
    return create_model(
        name,
        __base__=options,
        __doc__=f"The stored settings; the {secret.replace('_', ' ')} is never answered.",
        enabled=(bool, ...),
        updated_at=(Timestamp | None, Field(None, description="ISO 8601, UTC")),
        updated_by=(str | None, None),
        **{f"{secret}_set": (bool, ...)},
        **extra,
    )


def _settings_in(options: type[BaseModel], secret: str, name: str) -> type[BaseModel]:
    """A change: any option (a missing one keeps its value), `enabled`, and the secret
    (write-only; missing or null keeps the stored one, "" removes it)."""
    fields: dict[str, Any] = {
        field: (info.annotation | None, Field(None, description=info.description))
        for field, info in options.model_fields.items()
    }
    fields["enabled"] = (bool | None, Field(None, description="Turned on only when complete"))
    fields[secret] = (
        str | None,
        Field(None, max_length=MAX_SECRET, json_schema_extra={"writeOnly": True}),
    )
    fields["confirm_password"] = (
        str | None,
        Field(
            None,
            min_length=1,
            max_length=MAX_PASSWORD,
            description="Your password, when you signed in more than 15 minutes ago",
            json_schema_extra={"writeOnly": True},
        ),
    )
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        __doc__="Settings to change; a missing field keeps its value.",
        **fields,
    )


LdapSettings = _settings_out(
    LdapOptions,
    "bind_password",
    "LdapSettings",
    in_use=(
        dict[str, str],
        Field(
            description="The filters and attributes in use: the option, or the flavour's "
            "default where the option is empty"
        ),
    ),
)
LdapSettingsIn = _settings_in(LdapOptions, "bind_password", "LdapSettingsIn")
OidcSettings = _settings_out(OidcOptions, "client_secret", "OidcSettings")
OidcSettingsIn = _settings_in(OidcOptions, "client_secret", "OidcSettingsIn")


class LdapTestIn(BaseModel):
    """A user to look up with the stored LDAP settings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(min_length=1, max_length=256)


class LdapTestOut(BaseModel):
    """What the directory says about the user: their entry, groups, and the portal groups
    those give."""

    dn: str
    username: str
    display_name: str
    email: str
    disabled: bool
    groups: list[str]
    portal_groups: list[str] = Field(description="Directory-sourced portal groups they match")
    server: str


# -- exports and tokens ------------------------------------------------------------------------


class CredentialExportRequest(CredentialFilters):
    """An export with passwords: the format and the credential list's filters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["csv", "xlsx"] = "csv"


class TokenIn(BaseModel):
    """A new personal token. Needs a sign-in within 15 minutes or `confirm_password`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    scope: Literal["read", "reveal", "admin"]
    expires_in_days: int = Field(ge=1, le=365)
    allowed_networks: list[str] | None = Field(
        None, max_length=32, description="CIDRs the token may be used from; all when absent"
    )
    confirm_password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD)


class TokenCreated(BaseModel):
    """The token's value, shown this once (kept only as a hash)."""

    id: int
    token: str
    name: str
    scope: Literal["read", "reveal", "admin"]
    expires_at: Timestamp


class Token(BaseModel):
    """A token as lists show it: never its value."""

    id: int
    name: str
    owner: str
    scope: Literal["read", "reveal", "admin"]
    created_at: Timestamp
    expires_at: Timestamp
    last_used_at: Timestamp | None
    last_used_ip: str | None
    allowed_networks: list[str]
    expired: bool


class TokenList(BaseModel):
    items: list[Token]


# -- credential actions ------------------------------------------------------------------------


class AutoRotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool
    frequency_days: int | None = Field(None, ge=1, le=90)


class ActionIn(BaseModel):
    """An operation through SDDC Manager on credentials of one environment."""

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
    operation: Literal["rotate", "update", "remediate", "auto_rotate"]
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


# -- groups, roles and grants ------------------------------------------------------------------

RoleName = Literal["member", "auditor", "readonly", "admin"]


class Grant(BaseModel):
    """Access to one environment for a user or a group, at one level."""

    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str = Field(
        pattern=r"^(user|group):.{1,64}$",
        max_length=70,
        description="`user:NAME` or `group:NAME`",
    )
    level: Literal["view", "reveal", "manage"] = Field(
        description="view: metadata; reveal: also passwords, history values and exports; "
        "manage: also editing the environment, syncs, pause and credential actions"
    )


class GrantList(RootModel[list[Grant]]):
    """Every grant on an environment; a PUT replaces them all."""

    root: list[Grant] = Field(max_length=1000)


class Group(BaseModel):
    """A group: the global role it maps to, where its members come from, and its members."""

    id: int
    name: str
    role: RoleName
    source: Literal["local", "ldap", "oidc"] = Field(
        description="local: members managed in the portal; ldap or oidc: members are the "
        "users of that source whose directory or provider names a group of this name, set "
        "at each sign-in"
    )
    members: list[str]


class GroupListOut(BaseModel):
    items: list[Group]


class GroupIn(BaseModel):
    """A new group."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    role: RoleName = "member"
    source: Literal["local", "ldap", "oidc"] = "local"
    members: list[str] = Field(default_factory=list, max_length=10000)


class GroupChange(BaseModel):
    """A change to a group: its role mapping and/or its whole member list."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: RoleName | None = None
    members: list[str] | None = Field(default=None, max_length=10000)


class UserRoles(BaseModel):
    """A user's own role, groups, and the effective role that follows from them."""

    id: int
    username: str
    role: RoleName
    effective_role: RoleName
    groups: list[str]
    disabled: bool
    locked_until: Timestamp | None = Field(
        None, description="While locked after failed sign-ins: when the lock ends (UTC)"
    )
    source: Literal["local", "ldap", "oidc"] = Field(
        description="Where the user signs in: a local password, LDAP, or OpenID Connect"
    )


class UserRolesList(BaseModel):
    items: list[UserRoles]


class RoleChange(BaseModel):
    """A user's new own role."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: RoleName
