"""Certificate fingerprints and the TLS trust modes of an endpoint.

An endpoint is trusted in exactly one of these ways, strongest setting first:

* ``pinned_sha256``: the connection succeeds exactly when the leaf certificate's SHA-256
  matches, whatever ``verify_tls`` says. Pinning is verification, so urllib3 reports the
  connection as verified and emits no ``InsecureRequestWarning``.
* ``verify_tls=False``: no verification (``ca_pem`` is then ignored); the operator chose
  this, so the warning urllib3 would emit is silenced around each request only.
* ``ca_pem`` (with ``verify_tls=True``): the certificate must chain to one of these CAs
  (system CAs are *not* added) and match the host name.
* otherwise: the CA bundle requests ships (certifi). Environment variables such as
  ``REQUESTS_CA_BUNDLE`` are ignored so that only the endpoint's own settings apply.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
from typing import Any

from requests.adapters import HTTPAdapter

from .models import VcfError

_HEX64 = re.compile(r"[0-9a-f]{64}")


def normalize_fingerprint(value: str) -> str:
    """Return a SHA-256 fingerprint as 64 lowercase hex chars; ValueError for anything else."""
    if not isinstance(value, str):
        raise ValueError("fingerprint must be a string")
    text = value.strip().lower()
    for prefix in ("sha256:", "sha-256:", "sha256 ", "sha-256 "):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    text = text.replace(":", "").replace(" ", "").replace("-", "")
    if not _HEX64.fullmatch(text):
        raise ValueError("not a SHA-256 fingerprint (expected 64 hex digits)")
    return text


def format_fingerprint(hex64: str) -> str:
    """Return a fingerprint in the colon-separated uppercase form, e.g. ``AB:CD:...``."""
    text = normalize_fingerprint(hex64).upper()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def fingerprint_of_der(der: bytes) -> str:
    """Return the colon-separated uppercase SHA-256 fingerprint of a DER certificate."""
    return format_fingerprint(hashlib.sha256(der).hexdigest())


def fetch_certificate_sha256(host: str, port: int, timeout: float = 10.0) -> str:
    """Return the SHA-256 fingerprint (``AB:CD:...``) of the server's leaf certificate.

    The certificate is not verified: the point is to show the operator what the server
    presents so they can compare it out of band and pin it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Reading the certificate of an untrusted server is the whole purpose here; nothing
    # is sent over this connection.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    server_name = None if _is_ip_literal(host) else host
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
    except socket.gaierror:
        raise VcfError("dns", f"cannot resolve host {host}") from None
    except ConnectionRefusedError:
        raise VcfError("refused", f"connection refused by {host}:{port}") from None
    except TimeoutError:
        raise VcfError("timeout", f"timed out connecting to {host}:{port}") from None
    except ssl.SSLError:
        raise VcfError("tls", f"TLS handshake with {host}:{port} failed") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise VcfError("connection", f"cannot connect to {host}:{port}: {reason}") from None
    if not der:
        raise VcfError("tls", f"{host}:{port} presented no certificate")
    return fingerprint_of_der(der)


def build_ca_context(ca_pem: str) -> ssl.SSLContext:
    """Return a verifying client context that trusts only the CAs in ``ca_pem``."""
    try:
        context = ssl.create_default_context(cadata=ca_pem)
    except (ssl.SSLError, ValueError, TypeError):
        raise VcfError("tls", "the trusted CA bundle could not be loaded (is it PEM?)") from None
    if not context.get_ca_certs():
        raise VcfError("tls", "the trusted CA bundle holds no CA certificate")
    return context


class EndpointTlsAdapter(HTTPAdapter):
    """An HTTPAdapter that enforces a certificate pin or a private CA bundle."""

    def __init__(
        self, *, pin_hex: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        # Set before super().__init__(), which calls init_poolmanager().
        self._pin_hex = pin_hex
        self._ssl_context = None if pin_hex else ssl_context
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kw: Any):
        """Create the pool manager with the pin or the private CA context."""
        if self._pin_hex:
            kw["assert_fingerprint"] = self._pin_hex
            kw["cert_reqs"] = "CERT_NONE"
        elif self._ssl_context is not None:
            kw["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block, **kw)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        """Keep requests from overriding the pin with CA verification settings."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        if self._pin_hex:
            pool_kwargs["cert_reqs"] = "CERT_NONE"
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
        elif self._ssl_context is not None:
            pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert) -> None:
        """Undo requests' default CA bundle so only the pin or the private CAs apply."""
        super().cert_verify(conn, url, verify, cert)
        if self._pin_hex:
            conn.cert_reqs = "CERT_NONE"
        elif self._ssl_context is not None:
            # requests would point ca_certs at certifi, which urllib3 then loads *into*
            # our context: the private bundle must replace the system CAs, not extend them.
            conn.cert_reqs = "CERT_REQUIRED"
        if self._pin_hex or self._ssl_context is not None:
            conn.ca_certs = None
            conn.ca_cert_dir = None


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
