"""Settings: the second-factor policy and the sign-in providers (LDAP, OpenID Connect)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ...environments.endpoints import MAX_PASSWORD
from ...identity.directory.options import LdapChange, LdapOptions, OidcChange, OidcOptions
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
