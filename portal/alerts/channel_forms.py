"""The settings form of a notification channel, as pydantic models: one per kind, each rule
written once, beside its message. A refusal names the form field (`ChannelError.field`), so
the page shows it where it belongs; the secrets' "blank keeps the stored one" rule needs the
stored channel and stays with `channels.apply_form`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from ..platform.text import escape_controls
from ..vcf import VcfError
from ..vcf.tls import build_ca_context

SMTP_SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
WEBHOOK_FORMATS = ("json", "text")
MAX_RECIPIENTS = 20
MIN_SECRET = 16
MAX_SECRET = 256
MAX_CA_PEM = 256 * 1024
_ADDRESS = re.compile(r"^[^@\s<>,;\"']{1,64}@[A-Za-z0-9.-]{1,253}$")
_HOST = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")


class ChannelError(Exception):
    """A channel setting we refuse; `field` names the form field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def _printable(value: Any, limit: int) -> str:
    text = str(value or "").strip()
    if len(text) > limit or any(not ch.isprintable() for ch in text):
        raise ValueError(f"At most {limit} printable characters.")
    return text


def _text(limit: int):
    return BeforeValidator(lambda value: _printable(value, limit))


def _name(value: Any) -> str:
    name = _printable(value, 64)
    if not name:
        raise ValueError("Give the channel a name.")
    return name


def _flag(value: Any) -> bool:
    return str(value or "").lower() in ("1", "on", "true", "yes")


def _choice(choices: tuple[str, ...], default: str, message: str):
    def check(value: Any) -> str:
        text = str(value or "") or default
        if text not in choices:
            raise ValueError(message)
        return text

    return BeforeValidator(check)


def _ca_pem(value: Any) -> str | None:
    pem = str(value or "").strip()
    if not pem:
        return None
    if len(pem) > MAX_CA_PEM:
        raise ValueError("The CA bundle is larger than 256 KiB.")
    try:
        build_ca_context(pem)
    except VcfError as exc:
        raise ValueError(str(exc).capitalize() + ".") from None
    return pem


def _events(value: Any) -> list[str]:
    return [v for v in (value or []) if isinstance(v, str)]


def _secret(value: Any) -> str:
    text = str(value or "")
    if len(text) > MAX_SECRET:
        raise ValueError(f"At most {MAX_SECRET} characters.")
    return text


class ChannelForm(BaseModel):
    """What every channel has. Fields are checked in this order; the first refusal is shown."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, BeforeValidator(_name)]
    events: Annotated[list[str], BeforeValidator(_events)]
    enabled: Annotated[bool, BeforeValidator(_flag)]
    verify_tls: Annotated[bool, BeforeValidator(_flag)]
    ca_pem: Annotated[str | None, BeforeValidator(_ca_pem)]


def _port(value: Any) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    if len(text) > 5 or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("The port is a number from 1 to 65535.")
    return int(text)


def _host(value: Any) -> str:
    text = str(value or "").strip()
    if not text or not _HOST.match(text):
        raise ValueError("Enter the SMTP server's host name or address.")
    return text


def _sender(value: Any) -> str:
    text = str(value or "").strip()
    if not _ADDRESS.match(text):
        raise ValueError("Enter one e-mail address.")
    return text


def _recipients(value: Any) -> list[str]:
    recipients = [r for r in re.split(r"[,;\s]+", str(value or "")) if r]
    if not recipients or len(recipients) > MAX_RECIPIENTS:
        raise ValueError(f"Enter 1 to {MAX_RECIPIENTS} e-mail addresses.")
    for address in recipients:
        if not _ADDRESS.match(address):
            shown = escape_controls(address)[:80]
            raise ValueError(f"{shown!r} is not an e-mail address.")
    return list(dict.fromkeys(recipients))


class EmailForm(ChannelForm):
    """An SMTP channel. A sign-in needs STARTTLS or TLS: a password is never sent in clear."""

    smtp_security: Annotated[
        Literal["starttls", "tls", "none"],
        _choice(SMTP_SECURITY, "starttls", "Choose STARTTLS, TLS or none."),
    ]
    smtp_host: Annotated[str, BeforeValidator(_host)]
    smtp_port: Annotated[int | None, BeforeValidator(_port)]
    smtp_username: Annotated[str, _text(255)]
    smtp_password: Annotated[str, BeforeValidator(_secret)]
    mail_from: Annotated[str, BeforeValidator(_sender)]
    mail_to: Annotated[list[str], BeforeValidator(_recipients)]

    @model_validator(mode="after")
    def _signed_in_over_tls(self):
        if self.smtp_username and self.smtp_security == "none":
            raise _FieldError(
                "smtp_username", "Sign-in needs STARTTLS or TLS: a password is never sent in clear."
            )
        return self

    @property
    def port(self) -> int:
        return self.smtp_port or DEFAULT_PORTS[self.smtp_security]


def _webhook_url(value: Any) -> str:
    url = str(value or "").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if (
        parts.scheme != "https"
        or not parts.hostname
        or len(url) > 2048
        or any(not ch.isprintable() or ch.isspace() for ch in url)
    ):
        raise ValueError("Enter an https:// URL.")
    return url


def _signing_secret(value: Any) -> str:
    secret = str(value or "")
    if secret and not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise ValueError(f"The signing secret has {MIN_SECRET} to {MAX_SECRET} characters.")
    return secret


class WebhookForm(ChannelForm):
    """A webhook: an https:// URL, JSON (signed) or text."""

    webhook_format: Annotated[
        Literal["json", "text"], _choice(WEBHOOK_FORMATS, "json", "Choose JSON or text.")
    ]
    webhook_url: Annotated[str, BeforeValidator(_webhook_url)]
    webhook_secret: Annotated[str, BeforeValidator(_signing_secret)]


class _FieldError(ValueError):
    """A rule across fields, refused on the field the person must change."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def parse(model: type[ChannelForm], form: dict) -> Any:
    """The form as `model`, or ChannelError naming the first field refused (in the order the
    model lists them) with its message."""
    values = {name: form.get(name) for name in model.model_fields}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):
            raise ChannelError(cause.field, str(cause)) from None
        field_name = str(error["loc"][0]) if error["loc"] else "name"
        raise ChannelError(field_name, str(cause) if cause else error["msg"]) from None
