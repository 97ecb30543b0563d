"""REST clients for VMware Cloud Foundation: SDDC Manager credentials, VCF Installer specs and
VCF Operations fleet management (the management appliances of VCF 9).

This package knows HTTP and JSON only; it never touches the portal's database or Flask.
Clients are not thread-safe: use one per thread (the sync engine creates one per run).
"""

from __future__ import annotations

from typing import Literal, overload

from .fleet import API_90, API_91, FleetClient
from .fleet_accounts import APPLIANCE_LABELS, appliance_label
from .installer import InstallerClient, credentials_from_spec
from .lifecycle import EXPIRATION_RESOURCE_TYPES, OPERATIONS
from .manager import SddcManagerClient, parse_credential
from .models import (
    ConnectionTestResult,
    CredentialExpiry,
    EndpointSettings,
    ExpirationCheck,
    FetchedCredential,
    VcfError,
)
from .tls import fetch_certificate_sha256, format_fingerprint, normalize_fingerprint

SOURCES = ("manager", "installer", "fleet")

__all__ = [
    "API_90",
    "API_91",
    "APPLIANCE_LABELS",
    "EXPIRATION_RESOURCE_TYPES",
    "OPERATIONS",
    "SOURCES",
    "ConnectionTestResult",
    "CredentialExpiry",
    "EndpointSettings",
    "ExpirationCheck",
    "FetchedCredential",
    "FleetClient",
    "InstallerClient",
    "SddcManagerClient",
    "VcfError",
    "appliance_label",
    "client_for",
    "credentials_from_spec",
    "fetch_certificate_sha256",
    "format_fingerprint",
    "normalize_fingerprint",
    "parse_credential",
    "test_connection",
]


@overload
def client_for(source: Literal["manager"], settings: EndpointSettings) -> SddcManagerClient: ...
@overload
def client_for(source: Literal["installer"], settings: EndpointSettings) -> InstallerClient: ...
@overload
def client_for(
    source: Literal["fleet"],
    settings: EndpointSettings,
    locker_password: str | None = None,
    api_detected: str | None = None,
) -> FleetClient: ...
@overload
def client_for(
    source: str,
    settings: EndpointSettings,
    locker_password: str | None = None,
    api_detected: str | None = None,
) -> SddcManagerClient | InstallerClient | FleetClient: ...
def client_for(
    source: str,
    settings: EndpointSettings,
    locker_password: str | None = None,
    api_detected: str | None = None,
) -> SddcManagerClient | InstallerClient | FleetClient:
    """Return the client for ``source`` ("manager", "installer" or "fleet"; only fleet
    management takes the locker decryption password and the API it answered with before)."""
    if source == "manager":
        return SddcManagerClient(settings)
    if source == "installer":
        return InstallerClient(settings)
    if source == "fleet":
        return FleetClient(settings, locker_password, api_detected=api_detected)
    raise ValueError("source must be 'manager', 'installer' or 'fleet'")


def test_connection(source: str, settings: EndpointSettings) -> ConnectionTestResult:
    """Log in and read one page; report the outcome and the certificate fingerprint seen."""
    try:
        seen: str | None = fetch_certificate_sha256(
            settings.host, settings.port, settings.connect_timeout
        )
    except VcfError:
        seen = None
    try:
        with client_for(source, settings) as client:
            count = client.probe()
    except VcfError as exc:
        return ConnectionTestResult(
            ok=False,
            message=str(exc),
            certificate_sha256=exc.certificate_sha256 or seen,
            credential_count=None,
        )
    where = f"{settings.host}:{settings.port}"
    if source == "manager":
        what = "credentials" if count is not None else "credentials (count not reported)"
        shown = f"{count} " if count is not None else ""
        message = f"connected to SDDC Manager {where}: {shown}{what}"
    elif source == "fleet":
        api = getattr(client, "api_detected", None) or "fleet management"
        what = "accounts" if api == API_91 else "locker entries"
        shown = f"{count} {what}" if count is not None else f"{what} (count not reported)"
        message = f"connected to {api} {where}: {shown}"
    else:
        message = f"connected to VCF Installer {where}: {count} passwords in the first spec"
    return ConnectionTestResult(
        ok=True, message=message, certificate_sha256=seen, credential_count=count
    )


# pytest would otherwise collect the imported test_connection function as a test.
test_connection.__test__ = False  # type: ignore[attr-defined]
