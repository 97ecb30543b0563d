"""The settings of the sign-in providers (LDAP / Active Directory, OpenID Connect).

Stored in the database (`sign_in_providers`), one row per kind: the options as JSON and the one
secret (the LDAP bind password, the OIDC client secret) encrypted under the data key. The
pydantic models below are the only definition of what an option may be: the settings pages
and the JSON API both validate through them. `LdapChange` and `OidcChange` add what a change
brings besides the options (whether sign-in is on, the secret), and the API's request models
are built from them. Secrets are write-only: an update without one keeps the stored one.
Callers commit.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any, Generic, Literal, TypeVar, overload
from urllib.parse import urlsplit

from cryptography import x509
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ... import audit
from ...models import SignInProvider
from ...platform import clock
from ...platform.crypto import SIGN_IN_SECRET, cipher
from ...platform.extensions import db

log = logging.getLogger(__name__)
KINDS = ("ldap", "oidc")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_SECRET = 1024

# What each flavour of directory usually needs; an empty option takes these.
FLAVOURS = {
    "active_directory": {
        # Disabled accounts are found, so that they are refused as disabled, not as unknown.
        "user_filter": (
            "(&(objectClass=user)(objectCategory=person)"
            "(|(sAMAccountName={username})(userPrincipalName={username})))"
        ),
        "username_attribute": "sAMAccountName",
        "group_mode": "nested",
        "group_filter": "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={user_dn}))",
    },
    "openldap": {
        "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
        "username_attribute": "uid",
        "group_mode": "member",
        "group_filter": "(&(objectClass=groupOfNames)(member={user_dn}))",
    },
}


class OptionsError(ValueError):
    """Settings that cannot be stored; `field` names the offending option."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _plain(value: str, field: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{field} has no control characters")
    return value.strip()


def _pem_bundle(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    try:
        certificates = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValueError("the CA bundle is not a PEM certificate bundle") from None
    if not certificates:
        raise ValueError("the CA bundle holds no certificate")
    return value + "\n"


class LdapOptions(BaseModel):
    """LDAP or Active Directory sign-in. `{username}` and `{user_dn}` in filters are replaced
    by the escaped values."""

    model_config = ConfigDict(extra="forbid")

    flavor: Literal["active_directory", "openldap"] = "openldap"
    urls: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="ldaps://host[:port] or ldap://host[:port], tried in order",
    )
    start_tls: bool = Field(True, description="For ldap:// URLs: upgrade with StartTLS")
    allow_plain: bool = Field(
        False, description="Allow ldap:// without StartTLS: passwords cross the network in clear"
    )
    verify_certificates: bool = True
    ca_bundle: str = Field("", max_length=65536, description="PEM; empty: the system's CAs")
    bind_dn: str = Field("", max_length=512, description="Service account; empty: anonymous")
    user_base: str = Field("", max_length=512)
    user_filter: str = Field("", max_length=1024, description="Empty: the flavour's default")
    username_attribute: str = Field("", max_length=64)
    group_mode: Literal["", "memberof", "member", "nested"] = Field(
        "",
        description="memberof: the user's memberOf; member: group entries naming the user; "
        "nested: Active Directory groups through LDAP_MATCHING_RULE_IN_CHAIN",
    )
    group_base: str = Field("", max_length=512, description="Empty: the user base")
    group_filter: str = Field("", max_length=1024)
    group_name_attribute: str = Field("cn", min_length=1, max_length=64)
    timeout_seconds: int = Field(5, ge=1, le=60)
    recheck_minutes: int = Field(
        15, ge=0, le=1440, description="How often signed-in users are looked up again; 0: never"
    )
    second_factor: Literal["policy", "provider"] = Field(
        "policy",
        description="policy: the portal's second-factor policy applies; provider: the "
        "directory is trusted to have done it",
    )

    @field_validator(
        "bind_dn",
        "user_base",
        "user_filter",
        "username_attribute",
        "group_base",
        "group_filter",
        "group_name_attribute",
    )
    @classmethod
    def _no_controls(cls, value: str, info) -> str:
        return _plain(value, info.field_name)

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        cleaned = []
        for url in urls:
            url = _plain(url, "urls")
            parts = urlsplit(url)
            try:
                port = parts.port
            except ValueError:
                raise ValueError(f"{url}: the port is not a number from 1 to 65535") from None
            if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
                raise ValueError(f"{url}: an URL is ldaps://host[:port] or ldap://host[:port]")
            if parts.path not in ("", "/") or parts.query or parts.username or port == 0:
                raise ValueError(f"{url}: only a scheme, a host and a port")
            cleaned.append(url.rstrip("/"))
        return cleaned

    @field_validator("ca_bundle")
    @classmethod
    def _ca(cls, value: str) -> str:
        return _pem_bundle(value)

    @model_validator(mode="after")
    def _plain_refused(self) -> LdapOptions:
        if any(u.startswith("ldap://") for u in self.urls):
            if not self.start_tls and not self.allow_plain:
                raise ValueError(
                    "ldap:// without StartTLS sends passwords in clear: use ldaps://, turn "
                    "StartTLS on, or allow plain LDAP explicitly"
                )
        return self

    def effective(self, name: str) -> str:
        """An option, or the flavour's default when it is empty."""
        value = getattr(self, name)
        return value or FLAVOURS[self.flavor].get(name, "")

    def ready(self) -> list[str]:
        """What is missing before this can be turned on (empty when complete)."""
        missing = []
        if not self.urls:
            missing.append("urls")
        if not self.user_base:
            missing.append("user_base")
        if "{username}" not in self.effective("user_filter"):
            missing.append("user_filter ({username} is needed)")
        if self.effective("group_mode") != "memberof" and "{user_dn}" not in self.effective(
            "group_filter"
        ):
            missing.append("group_filter ({user_dn} is needed)")
        return missing


class OidcOptions(BaseModel):
    """OpenID Connect sign-in: authorization code flow with PKCE."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = Field("OpenID Connect", min_length=1, max_length=40)
    issuer: str = Field("", max_length=512, description="https URL; discovery is read below it")
    client_id: str = Field("", max_length=255)
    scopes: str = Field("openid profile email", max_length=512)
    groups_claim: str = Field("groups", min_length=1, max_length=64)
    username_claim: str = Field("preferred_username", min_length=1, max_length=64)
    allowed_domains: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="E-mail domains allowed to sign in (a verified e-mail is then needed); "
        "empty: any",
    )
    ca_bundle: str = Field("", max_length=65536, description="PEM; empty: the system's CAs")
    timeout_seconds: int = Field(10, ge=1, le=60)
    second_factor: Literal["policy", "provider"] = Field(
        "policy",
        description="policy: the portal's second-factor policy applies; provider: the "
        "OpenID Provider is trusted to enforce it",
    )
    required_amr: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="With second_factor provider: the ID token's amr claim must name one of "
        "these methods (for example mfa, otp, hwk); empty: not checked",
    )

    @field_validator("required_amr")
    @classmethod
    def _amr(cls, values: list[str]) -> list[str]:
        cleaned = [_plain(value, "required_amr") for value in values]
        if any(not re.fullmatch(r"[A-Za-z0-9._:/-]{1,64}", value) for value in cleaned):
            raise ValueError("an authentication method is a short word such as mfa or otp")
        return list(dict.fromkeys(cleaned))

    @field_validator("display_name", "client_id", "scopes", "groups_claim", "username_claim")
    @classmethod
    def _no_controls(cls, value: str, info) -> str:
        return _plain(value, info.field_name)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        value = _plain(value, "issuer")
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("the issuer is an https:// URL without query or fragment")
        return value  # exactly as the provider names itself (some end with "/")

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: str) -> str:
        scopes = value.split()
        if scopes and "openid" not in scopes:
            raise ValueError("the scopes include openid")
        return " ".join(dict.fromkeys(scopes)) or "openid"

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        cleaned = []
        for domain in domains:
            domain = _plain(domain, "allowed_domains").lower().lstrip("@")
            if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", domain):
                raise ValueError(f"{domain!r} is not a domain name")
            cleaned.append(domain)
        return list(dict.fromkeys(cleaned))

    @field_validator("ca_bundle")
    @classmethod
    def _ca(cls, value: str) -> str:
        return _pem_bundle(value)

    def ready(self) -> list[str]:
        """What is missing before this can be turned on (empty when complete)."""
        return [name for name in ("issuer", "client_id") if not getattr(self, name)]


MODELS: dict[str, type[LdapOptions] | type[OidcOptions]] = {
    "ldap": LdapOptions,
    "oidc": OidcOptions,
}
SECRET_NAMES = {"ldap": "bind_password", "oidc": "client_secret"}


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_SECRET:
        raise ValueError(f"At most {MAX_SECRET} characters.")
    if _CONTROL.search(value):
        raise ValueError("No control characters.")
    return value


# A bind password or client secret as sent: write-only; None keeps the stored one, "" removes it.
Secret = Annotated[str | None, BeforeValidator(_secret)]


def _secret_field() -> Any:
    return Field(None, max_length=MAX_SECRET, json_schema_extra={"writeOnly": True})


def _enabled_field() -> Any:
    return Field(None, description="Turned on only when complete")


class LdapChange(LdapOptions):
    """What `save` takes for LDAP: every option (a missing one keeps its stored value),
    whether sign-in is on (None: as it is), and the bind password."""

    enabled: bool | None = _enabled_field()
    bind_password: Secret = _secret_field()


class OidcChange(OidcOptions):
    """What `save` takes for OpenID Connect: every option (a missing one keeps its stored
    value), whether sign-in is on (None: as it is), and the client secret."""

    enabled: bool | None = _enabled_field()
    client_secret: Secret = _secret_field()


CHANGES: dict[str, type[LdapChange] | type[OidcChange]] = {"ldap": LdapChange, "oidc": OidcChange}


# The options model of a Provider: LdapOptions or OidcOptions.
Options = TypeVar("Options", bound=BaseModel)


def _stored_options(model: type[Options], row: SignInProvider | None) -> Options | None:
    """The stored options, without any this version does not know; None when they are not
    valid (so that a changed option never takes the sign-in page down)."""
    if row is None:
        return model()
    try:
        data = json.loads(row.options)
        known = {key: value for key, value in data.items() if key in model.model_fields}
        return model.model_validate(known)
    except (ValueError, AttributeError, ValidationError):
        return None


class Provider(Generic[Options]):
    """One provider's stored settings, read once per use; `model` is the kind's options model."""

    def __init__(self, kind: str, row: SignInProvider | None, model: type[Options]):
        self.kind = kind
        self.enabled = bool(row and row.enabled)
        stored = _stored_options(model, row)
        if row is not None and stored is None:  # written by another version
            log.error("the stored %s settings are not valid here: %s sign-in is off", kind, kind)
            self.enabled = False
        self.options: Options = stored or model()
        self._secret_enc = row.secret_enc if row is not None else None
        self.updated_at = row.updated_at if row is not None else None
        self.updated_by = row.updated_by if row is not None else None

    @property
    def has_secret(self) -> bool:
        """True when a bind password or client secret is stored."""
        return self._secret_enc is not None

    def secret(self) -> str:
        """The decrypted secret ("" when none is stored)."""
        if self._secret_enc is None:
            return ""
        return cipher().decrypt(self._secret_enc, SIGN_IN_SECRET)

    def as_dict(self) -> dict:
        """The API shape: enabled, the options, whether the secret is set (never the secret)."""
        answer = {
            "enabled": self.enabled,
            **self.options.model_dump(),
            f"{SECRET_NAMES[self.kind]}_set": self.has_secret,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }
        options = self.options
        if isinstance(options, LdapOptions):  # the kind "ldap"
            # An empty option means the flavour's default: say which value is in use.
            flavour = FLAVOURS[options.flavor]
            answer["in_use"] = {name: options.effective(name) for name in flavour}
        return answer


@overload
def load(kind: Literal["ldap"]) -> Provider[LdapOptions]: ...
@overload
def load(kind: Literal["oidc"]) -> Provider[OidcOptions]: ...
@overload
def load(kind: str) -> Provider[LdapOptions] | Provider[OidcOptions]: ...
def load(kind: str) -> Provider[Any]:
    """The stored settings of `kind` ("ldap" or "oidc"); defaults when never saved."""
    return Provider(kind, db.session.get(SignInProvider, kind), MODELS[kind])


@overload
def enabled(kind: Literal["ldap"]) -> Provider[LdapOptions] | None: ...
@overload
def enabled(kind: Literal["oidc"]) -> Provider[OidcOptions] | None: ...
@overload
def enabled(kind: str) -> Provider[LdapOptions] | Provider[OidcOptions] | None: ...
def enabled(kind: str) -> Provider[Any] | None:
    """The provider's settings when it is turned on, else None."""
    provider = load(kind)
    return provider if provider.enabled else None


def _describe(provider: Provider[Any]) -> dict:
    options = provider.options.model_dump()
    options.pop("ca_bundle", None)
    shown = {
        key: (", ".join(value) if isinstance(value, list) else value)
        for key, value in options.items()
    }
    return {"enabled": provider.enabled, **shown, "secret_set": provider.has_secret}


def _validated(model: type[LdapChange] | type[OidcChange], data: dict) -> LdapChange | OidcChange:
    """`data` as the model, or OptionsError naming the first refusal (in the model's order)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "options"
        message = first.get("msg", "invalid").removeprefix("Value error, ")
        raise OptionsError(field, message) from None


def save(kind: str, changes: dict, actor: str) -> Provider[LdapOptions] | Provider[OidcOptions]:
    """Validate and store new settings; `changes` may hold any option, `enabled` and the
    secret (absent or None: keep; "": remove). Audited with the values before and after,
    never the secret. Raises OptionsError."""
    if kind not in KINDS:
        raise OptionsError("kind", "The kind is ldap or oidc.")
    secret_name = SECRET_NAMES[kind]
    before = load(kind)
    change = _validated(CHANGES[kind], {**before.options.model_dump(), **changes})
    secret: str | None = getattr(change, secret_name)
    stored = change.model_dump(include=set(MODELS[kind].model_fields))
    row = db.session.get(SignInProvider, kind)
    if row is None:
        row = SignInProvider(kind=kind, enabled=False, options="{}")
        db.session.add(row)
    will_be_on = row.enabled if change.enabled is None else change.enabled
    if will_be_on:
        missing = change.ready()
        if kind == "oidc" and not (secret or (secret is None and before.has_secret)):
            missing.append(secret_name)
        if missing:
            raise OptionsError(missing[0].split(" ")[0], f"Needed first: {', '.join(missing)}.")
    row.options = json.dumps(stored, sort_keys=True)
    row.enabled = will_be_on
    if secret == "":
        row.secret_enc = None
    elif secret is not None:
        row.secret_enc = cipher().encrypt(secret, SIGN_IN_SECRET)
    row.updated_at = clock.now()
    row.updated_by = actor
    db.session.flush()
    after = load(kind)
    old, new = _describe(before), _describe(after)
    changed = {key for key in new if old.get(key) != new.get(key)}
    if secret:
        changed.add(secret_name)
    if before.options.ca_bundle != after.options.ca_bundle:
        changed.add("ca_bundle")
    if changed:
        audit.record(
            f"settings.{kind}",
            kind,
            details={
                "changed": ", ".join(sorted(changed)),
                "before": json.dumps({k: old.get(k) for k in sorted(changed) if k in old}),
                "after": json.dumps({k: new.get(k) for k in sorted(changed) if k in new}),
            },
        )
    return after
