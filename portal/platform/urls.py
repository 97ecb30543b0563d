"""Absolute URLs of the portal (the OpenID Connect callback, links sent elsewhere), built from
PORTAL_EXTERNAL_URL and never from what a client put in its Host header.

Without PORTAL_EXTERNAL_URL, the request's host is used only when it is one of the names the
served certificate is valid for, a loopback name, or this machine's address: a request with
`Host: evil.example` cannot make the portal name evil.example to an identity provider.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from flask import abort, current_app, request, url_for

from . import certs

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@lru_cache(maxsize=4)
def _certificate_names(path: Path, mtime: float) -> frozenset[str]:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return frozenset()
    return frozenset(str(name.value).lower() for name in names)


def known_hosts() -> frozenset[str]:
    """The host names a request may use when PORTAL_EXTERNAL_URL is not set."""
    path = current_app.config["PORTAL_SETTINGS"].ssl_dir / "cert.pem"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    ip = certs.primary_ip()
    return LOOPBACK_NAMES | _certificate_names(path, mtime) | ({ip} if ip else set())


def _request_host_is_known() -> bool:
    host = (urlsplit(f"//{request.host}").hostname or "").lower()
    names = known_hosts()
    if host in names:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return any(name.startswith("*.") and host.endswith(name[1:]) for name in names)


def external_url(endpoint: str, **values) -> str:
    """The absolute URL of `endpoint` as browsers reach the portal."""
    base = current_app.config["PORTAL_SETTINGS"].external_url
    if base is not None:
        return base + url_for(endpoint, **values)
    if not _request_host_is_known():
        abort(
            400,
            description="This host name is not one of the portal's. Set PORTAL_EXTERNAL_URL "
            "to the address browsers use (https://HOST[:PORT]).",
        )
    return url_for(endpoint, _external=True, **values)
