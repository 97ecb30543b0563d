"""One endpoint of an environment (SDDC Manager, VCF Installer) as the page form, the API and
an imported definition send it: a pydantic model per source, each field's rule beside its
message, which the API's request model derives from. What needs the stored endpoint stays in
`parse_endpoint`: a missing field keeps its stored value, a new endpoint needs a host, an
account and (unless imported) a password, and the stored password never follows a changed
host, port, account or TLS trust."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar

from cryptography import x509
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from ..models import Endpoint
from ..platform.crypto import ENDPOINT_PASSWORD, cipher
from ..vcf import normalize_fingerprint

# The limits of endpoint fields, written once: the validators below enforce them with the
# portal's messages, the Field bounds describe them to the API, the page form shows them.
MAX_HOST = 253  # a DNS name
MAX_USERNAME = 255
MAX_PASSWORD = 512
MIN_PORT, MAX_PORT = 1, 65535
MIN_INTERVAL, MAX_INTERVAL = 5, 1440

HOST_RE = re.compile(
    rf"^(?=.{{1,{MAX_HOST}}}$)"
    r"([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_HOST_MESSAGE = "Enter a host name or IP address."
_USERNAME_MESSAGE = f"Enter the service account (at most {MAX_USERNAME} characters)."
_FLAGS = {"true": True, "1": True, "on": True, "false": False, "0": False, "off": False}


def is_host(host: str) -> bool:
    """Whether `host` is a host name, an IPv4 address or an IPv6 address without a zone."""
    return bool(HOST_RE.match(host)) or _is_ipv6(host)


def _is_ipv6(host: str) -> bool:
    # A strict parse: a loose pattern let "::::" through to the URL builder, which fails.
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return address.scope_id is None


def validate_ca_pem(text: str) -> str:
    """Return the PEM bundle normalised; ValueError when it holds no certificate."""
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        raise ValueError("Not a PEM certificate bundle.") from None
    if not certs:
        raise ValueError("Not a PEM certificate bundle.")
    return text.strip() + "\n"


# Each validator takes what was sent, as JSON or a form gives it; None means "not given".


def _host(value: Any) -> str | None:
    if value is None:
        return None
    host = value.strip() if isinstance(value, str) else value
    if not isinstance(host, str) or not is_host(host):
        raise ValueError(_HOST_MESSAGE)
    return host


def _username(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_USERNAME:
        raise ValueError(_USERNAME_MESSAGE)
    return value.strip()


def _password(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("Expected text.")
    if len(value) > MAX_PASSWORD:
        raise ValueError(f"At most {MAX_PASSWORD} characters.")
    return value or None  # empty: keep the stored one


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _FLAGS:
        return _FLAGS[value.lower()]
    raise ValueError("Expected true or false.")


def _whole_number(low: int, high: int) -> BeforeValidator:
    def check(value: Any) -> int | None:
        if value is None or value == "":
            return None
        try:
            number = int(value)
            if isinstance(value, float) and value != number:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ValueError("Expected a whole number.") from None
        if not low <= number <= high:
            raise ValueError(f"Must be between {low} and {high}.")
        return number

    return BeforeValidator(check)


def _ca_pem(value: Any) -> str | None:
    return validate_ca_pem(str(value)) if value else None


def _fingerprint(value: Any) -> str | None:
    if not value:
        return None
    try:
        return normalize_fingerprint(str(value))
    except ValueError:
        raise ValueError("Expected a SHA-256 fingerprint (64 hex digits).") from None


class EndpointForm(BaseModel):
    """Settings of an SDDC Manager or VCF Installer as sent; every field may be missing (the
    stored value, or for a new endpoint the source's default, is kept)."""

    model_config = ConfigDict(extra="ignore")

    # What a new endpoint takes for a field not sent; on these fields null means "not sent".
    defaults: ClassVar[dict[str, Any]] = {
        "port": 443,
        "verify_tls": True,
        "sync_interval_minutes": 60,
    }
    # Stored encrypted and never answered; missing or empty keeps the stored one.
    write_only: ClassVar[tuple[str, ...]] = ("password",)

    host: Annotated[str | None, BeforeValidator(_host)] = Field(
        None, max_length=MAX_HOST, description="Host name or IP address"
    )
    port: Annotated[int | None, _whole_number(MIN_PORT, MAX_PORT)] = Field(
        None, ge=MIN_PORT, le=MAX_PORT, description="Default 443"
    )
    username: Annotated[str | None, BeforeValidator(_username)] = Field(
        None, max_length=MAX_USERNAME
    )
    password: Annotated[str | None, BeforeValidator(_password)] = Field(
        None,
        max_length=MAX_PASSWORD,
        description="Write-only; empty or missing keeps the stored one, which never follows "
        "a changed host, port, account or TLS trust",
        json_schema_extra={"writeOnly": True},
    )
    verify_tls: Annotated[bool | None, BeforeValidator(_flag)] = None
    ca_pem: Annotated[str | None, BeforeValidator(_ca_pem)] = Field(
        None, description="PEM bundle of the CA to trust"
    )
    pinned_sha256: Annotated[str | None, BeforeValidator(_fingerprint)] = Field(
        None, description="When set, replaces CA verification"
    )
    sync_enabled: Annotated[bool | None, BeforeValidator(_flag)] = None
    sync_interval_minutes: Annotated[int | None, _whole_number(MIN_INTERVAL, MAX_INTERVAL)] = Field(
        None, ge=MIN_INTERVAL, le=MAX_INTERVAL
    )

    @classmethod
    def stored_fields(cls) -> tuple[str, ...]:
        """The fields stored as they are (the write-only ones left out), in order."""
        return tuple(name for name in cls.model_fields if name not in cls.write_only)


class ManagerEndpointForm(EndpointForm):
    """An SDDC Manager: synced on its schedule from the start."""

    defaults: ClassVar[dict[str, Any]] = {**EndpointForm.defaults, "sync_enabled": True}


class InstallerEndpointForm(EndpointForm):
    """A VCF Installer: its scheduled sync is turned on by choice."""

    defaults: ClassVar[dict[str, Any]] = {**EndpointForm.defaults, "sync_enabled": False}


class FleetEndpointForm(EndpointForm):
    """VCF Operations fleet management (VCF 9): synced on its schedule from the start; the
    fleet appliance's root password, which the 9.0 locker needs to decrypt each value, is
    write-only like the service account's."""

    defaults: ClassVar[dict[str, Any]] = {**EndpointForm.defaults, "sync_enabled": True}
    write_only: ClassVar[tuple[str, ...]] = ("password", "locker_password")

    locker_password: Annotated[str | None, BeforeValidator(_password)] = Field(
        None,
        max_length=MAX_PASSWORD,
        description="Write-only: the fleet management appliance's root password, with which "
        "the VCF 9.0 locker (and 9.1 where it holds the values) decrypts each password; empty "
        "or missing keeps the stored one, which never follows a changed host, port, account "
        "or TLS trust",
        json_schema_extra={"writeOnly": True},
    )


ENDPOINT_FORMS: dict[str, type[EndpointForm]] = {
    "manager": ManagerEndpointForm,
    "installer": InstallerEndpointForm,
    "fleet": FleetEndpointForm,
}
ENDPOINT_FIELDS = EndpointForm.stored_fields()
DESTINATION_FIELDS = ("host", "port", "username", "verify_tls", "ca_pem", "pinned_sha256")
_REQUIRED: dict[str, str] = {"host": _HOST_MESSAGE, "username": _USERNAME_MESSAGE}


def _message(error: ErrorDetails) -> str:
    cause = (error.get("ctx") or {}).get("error")
    return str(cause) if cause is not None else error["msg"]


def _read(form: type[EndpointForm], data: dict) -> tuple[EndpointForm, dict[str, str]]:
    """The fields that are valid, as the form, and the message of each refused one."""
    try:
        return form.model_validate(data), {}
    except ValidationError as exc:
        refused = {str(error["loc"][0]): _message(error) for error in exc.errors()}
    # Every rule is one field's: without the refused ones the rest validates.
    return form.model_validate({k: v for k, v in data.items() if k not in refused}), refused


def _merged(form: EndpointForm, existing: Endpoint | None) -> dict[str, Any]:
    """The values to store: each field sent, else the stored one (or the source's default).
    Null on a field with a default means "not sent"; on the others it is the value (no CA,
    no pin; a host or account then missing)."""
    values: dict[str, Any] = {}
    for name in form.stored_fields():
        value = getattr(form, name)
        if name in form.model_fields_set and (value is not None or name not in form.defaults):
            values[name] = value
        elif existing is not None:
            values[name] = getattr(existing, name)
        else:
            values[name] = form.defaults.get(name)
    return values


def parse_endpoint(
    data: Any,
    source: str,
    prefix: str,
    existing: Endpoint | None,
    errors: dict[str, str],
    password_required: bool = True,
) -> dict | None:
    """Validate one endpoint object with its source's form and merge it with `existing`; each
    refusal goes into `errors` as `prefix.field`. Returns the values to store (with a password
    only when one was typed: none keeps the stored one), or None when data is no object."""
    if not isinstance(data, dict):
        errors[prefix] = "Expected an object."
        return None
    form_class = ENDPOINT_FORMS[source]
    form, refused = _read(form_class, data)
    values = _merged(form, existing)
    for name, message in _REQUIRED.items():
        if values[name] is None:
            refused.setdefault(name, message)
    # A refusal of the password as typed (too long) stays the one shown.
    if form.password:
        values["password"] = form.password
    elif existing is None:
        if password_required:
            refused.setdefault("password", "Enter the service account's password.")
    elif refused.keys() & set(DESTINATION_FIELDS) or _destination_changed(existing, values):
        # The stored password goes only where it was saved for: a new host, port, account or
        # TLS trust needs the password typed again (or supplied in the imported definition).
        # A refused destination field counts as changed: what was sent is not the stored value.
        refused.setdefault(
            "password", "Enter the password again: the host, port, account or TLS settings changed."
        )
    _locker(form, existing, values, refused)
    for name in form_class.model_fields:  # in the form's order
        if name in refused:
            errors[f"{prefix}.{name}"] = refused[name]
    return values


def _locker(
    form: EndpointForm, existing: Endpoint | None, values: dict, refused: dict[str, str]
) -> None:
    """The locker decryption password of a fleet endpoint: typed, kept, or (like the service
    account's) asked again when the endpoint now points elsewhere."""
    typed = getattr(form, "locker_password", None)
    if typed:
        values["locker_password"] = typed
        return
    if existing is None or existing.locker_password_enc is None:
        return
    if refused.keys() & set(DESTINATION_FIELDS) or _destination_changed(existing, values):
        refused.setdefault(
            "locker_password",
            "Enter the locker decryption password again: the host, port, account or TLS "
            "settings changed.",
        )


def _destination_changed(existing: Endpoint, values: dict) -> bool:
    """Whether values would send the endpoint's credentials anywhere else than saved."""
    return any(getattr(existing, name) != values.get(name) for name in DESTINATION_FIELDS)


def stored_password_for(existing: Endpoint | None, values: dict) -> str | None:
    """The stored password, only when values point exactly where it was saved for."""
    if existing is None or _destination_changed(existing, values):
        return None
    return cipher().decrypt(existing.password_enc, ENDPOINT_PASSWORD)
