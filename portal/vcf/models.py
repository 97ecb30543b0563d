"""Value types shared by the SDDC Manager and VCF Installer clients."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

ERROR_KINDS = frozenset(
    {
        "dns",
        "refused",
        "timeout",
        "tls",
        "auth",
        "forbidden",
        "not_found",
        "server",
        "malformed",
        "http",
        "connection",
        "rate_limited",
        "rejected",
    }
)

# Characters that would let a host setting smuggle a path, credentials or a second
# authority into the URL we build from it.
_FORBIDDEN_HOST_CHARS = frozenset("/\\?#@%[] \t\r\n")


@dataclass(frozen=True)
class EndpointSettings:
    """How to reach and authenticate against one SDDC Manager or VCF Installer."""

    host: str
    username: str
    password: str = field(repr=False)
    port: int = 443
    verify_tls: bool = True
    ca_pem: str | None = None
    pinned_sha256: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 2
    retry_backoff: float = 0.5

    def __post_init__(self) -> None:
        if not self.host or any(ch in _FORBIDDEN_HOST_CHARS for ch in self.host):
            raise ValueError("host must be a plain host name or IP address")
        if ":" in self.host:
            try:
                ipaddress.IPv6Address(self.host)
            except ValueError:
                raise ValueError("host must be a plain host name or IP address") from None
        if isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise ValueError("port must be between 1 and 65535")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.retries < 0 or self.retry_backoff < 0:
            raise ValueError("retries and retry_backoff must not be negative")

    @property
    def base_url(self) -> str:
        """The https:// origin of the endpoint, IPv6 literals bracketed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


@dataclass(frozen=True, slots=True)  # slots: a sync holds 100,000 of them
class FetchedCredential:
    """One account and its password as read from SDDC Manager or the VCF Installer."""

    source: str
    hostname: str
    username: str
    password: str | None = field(repr=False)
    credential_type: str
    account_type: str
    resource_type: str
    resource_id: str | None = None
    resource_ip: str | None = None
    domain_names: tuple[str, ...] = ()
    remote_id: str | None = None
    modified_at: str | None = None
    expiry_date: str | None = None
    expiry_status: str | None = None
    auto_rotate_days: int | None = None
    auto_rotate_next: str | None = None


@dataclass(frozen=True)
class CredentialExpiry:
    """One credential's expiry as an SDDC Manager expiry check reported it."""

    credential_id: str
    username: str | None
    resource_name: str | None
    resource_type: str | None
    expiry_date: str | None
    status: str | None  # ACTIVE, EXPIRING, EXPIRED, UNKNOWN (or a newer value)
    connectivity_status: str | None
    last_checked: str | None
    error: str | None  # why this credential could not be checked (cleaned), if it failed
    # 9.1 connectivityErrorDetails: the message and what SDDC Manager says to do (cleaned).
    connectivity_error: str | None = None
    remediation: str | None = None


@dataclass(frozen=True)
class ExpirationCheck:
    """An expiry check started with POST /v1/credentials/expirations."""

    id: str
    status: str  # IN_PROGRESS, COMPLETED, FAILED (or a newer value)
    elements: tuple[CredentialExpiry, ...] = ()

    @property
    def done(self) -> bool:
        """Whether SDDC Manager has finished the check (successfully or not)."""
        return self.status != "IN_PROGRESS"


@dataclass(frozen=True)
class ConnectionTestResult:
    """Outcome of a connection test, fit to show to an operator."""

    ok: bool
    message: str
    certificate_sha256: str | None
    credential_count: int | None


def text_of(value: Any) -> str | None:
    """A server's string kept exactly as sent, or None when it is absent, not a string or
    blank (every client reads optional text fields this way)."""
    return value if isinstance(value, str) and value.strip() else None


class VcfError(Exception):
    """Operator-facing failure; str(e) is a short message naming the cause, never a secret."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        certificate_sha256: str | None = None,
        error_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown VcfError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.certificate_sha256 = certificate_sha256
        # SDDC Manager's errorCode (cleaned), e.g. RESOURCE_IS_NOT_IN_ACTIVE_STATE.
        self.error_code = error_code
        # Seconds the server asked us to wait (429 with Retry-After).
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message
