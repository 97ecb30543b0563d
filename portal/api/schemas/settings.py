"""Settings: the second-factor policy, the sign-in providers (LDAP, OpenID Connect) and the
break-glass copies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ...environments.endpoints import MAX_PASSWORD
from ...identity.directory.options import LdapChange, LdapOptions, OidcChange, OidcOptions
from ...ops.break_glass_settings import KEEP_RANGE, MAX_FOLDER, MAX_RECIPIENT, MAX_RECIPIENTS
from .common import Timestamp


class SecurityPolicy(BaseModel):
    """Who must have a second factor."""

    model_config = ConfigDict(extra="forbid", strict=True)

    require_second_factor: Literal["none", "admins", "everyone"]


class SecurityPolicyIn(SecurityPolicy):
    """The policy to set; the password is needed when the sign-in is older than 15 minutes."""

    confirm_password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD)


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


def _settings_in(change: type[BaseModel], options: type[BaseModel], name: str) -> type[BaseModel]:
    """A change as the service takes it: any option (a missing one keeps its value), `enabled`,
    and the secret (write-only; missing or null keeps the stored one, "" removes it)."""
    fields: dict[str, Any] = {}
    for field, info in change.model_fields.items():
        if field in options.model_fields:
            # A type, for every option (pydantic types it as optional): the options' rules
            # run in the service, which names the first refusal.
            annotation: Any = info.annotation
            fields[field] = (annotation | None, Field(None, description=info.description))
        else:
            # `enabled` and the secret, optional already: their rules as the service has them.
            fields[field] = (info.annotation, info)
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


LdapSettingsIn = _settings_in(LdapChange, LdapOptions, "LdapSettingsIn")


OidcSettings = _settings_out(OidcOptions, "client_secret", "OidcSettings")


OidcSettingsIn = _settings_in(OidcChange, OidcOptions, "OidcSettingsIn")


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


class BreakGlassCopy(BaseModel):
    """One break-glass copy: when, its outcome, the file and how many passwords it holds."""

    at: Timestamp = Field(description="When the copy started, UTC")
    state: Literal["success", "handoff_failed", "failed"] = Field(
        description="handoff_failed: the file is written, the hand-off command failed"
    )
    folder: str
    file: str | None = Field(description="The file's name in the folder; null when none")
    count: int = Field(description="Passwords in the copy (credentials and service accounts)")
    recipients: int = Field(description="How many public keys it is encrypted to")
    pruned: int = Field(0, description="Older copies deleted so that the newest `keep` stay")
    error: str | None
    actor: str = Field(description="Who made it: a user, scheduler or cli")


class BreakGlassSettings(BaseModel):
    """The break-glass settings, the copies' state and the last copy."""

    recipients: list[str] = Field(description="age X25519 public keys (age1...)")
    folder: str = Field(description="Where copies are written; empty: PORTAL_DATA_DIR/break-glass")
    folder_in_use: str = Field(description="The folder copies go to now")
    schedule: str = Field(description="off, every Nh (N from 1 to 168) or daily HH:MM, in UTC")
    keep: int = Field(description="How many of the newest copies are kept")
    active: bool = Field(description="Copies are made on schedule: a recipient is set, not off")
    next_copy_at: Timestamp | None = Field(description="The next scheduled copy, UTC")
    handoff_program: str | None = Field(
        description="The program PORTAL_BREAK_GLASS_COMMAND hands each copy to (set on the "
        "server only); null when none"
    )
    last_copy: BreakGlassCopy | None


class BreakGlassSettingsIn(BaseModel):
    """Settings to change; a missing field keeps its value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    recipients: list[Annotated[str, Field(max_length=MAX_RECIPIENT)]] | None = Field(
        None,
        max_length=MAX_RECIPIENTS,
        description="age X25519 public keys (age1..., from age-keygen); every copy opens with "
        "any one of their private keys",
    )
    folder: str | None = Field(
        None, max_length=MAX_FOLDER, description="An absolute path; empty: the default"
    )
    schedule: str | None = Field(
        None, max_length=32, description="off, every Nh (N from 1 to 168) or daily HH:MM, in UTC"
    )
    keep: int | None = Field(None, ge=KEEP_RANGE[0], le=KEEP_RANGE[1])
    confirm_password: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PASSWORD,
        description="Your password, when you signed in more than 15 minutes ago",
        json_schema_extra={"writeOnly": True},
    )
