"""How a failed request to SDDC Manager or the VCF Installer is told: the transport's error
mapped to a `VcfError` in the operator's words, and server text made safe for a message
(control characters removed, known secrets masked, truncated)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import requests
import urllib3

from .models import EndpointSettings, VcfError
from .tls import format_fingerprint

MAX_SERVER_TEXT = 300


def clean_text(value: object, limit: int = MAX_SERVER_TEXT) -> str:
    """Return server-provided text safe for a message: no control chars, at most ``limit``."""
    text = value if isinstance(value, str) else repr(value)
    # Cc covers CR/LF (log forging), Cf covers bidi overrides such as U+202E.
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))


def transport_error(
    exc: requests.RequestException,
    settings: EndpointSettings,
    tls_error: Callable[[list[BaseException]], VcfError],
) -> VcfError:
    """What went wrong with a request that got no answer, in the operator's words."""
    host, port = settings.host, settings.port
    where = f"{host}:{port}"
    chain = list(exception_chain(exc))
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_error(chain)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return VcfError(
            "timeout",
            f"timed out connecting to {where} after {settings.connect_timeout:g} s",
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return VcfError("timeout", f"{where} did not answer within {settings.read_timeout:g} s")
    if any(isinstance(e, (socket.gaierror, urllib3.exceptions.NameResolutionError)) for e in chain):
        return VcfError("dns", f"cannot resolve host {host}")
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return VcfError("refused", f"connection refused by {where}")
    if any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain):
        return VcfError("timeout", f"timed out talking to {where}")
    if any(
        isinstance(e, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected))
        for e in chain
    ) or isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return VcfError("connection", f"connection reset by {where}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return VcfError("connection", f"connection to {where} failed")
    return VcfError("connection", f"request to {where} failed ({type(exc).__name__})")


def tls_error(
    chain: list[BaseException], settings: EndpointSettings, pin_hex: str | None, seen: str | None
) -> VcfError:
    """A failed TLS handshake: the pin that did not match, or why verification failed."""
    where = f"{settings.host}:{settings.port}"
    seen_text = f"; certificate SHA-256 fingerprint seen: {seen}" if seen else ""
    if pin_hex:
        pinned = format_fingerprint(pin_hex)
        if seen is None or seen != pinned:
            return VcfError(
                "tls",
                f"the certificate of {where} does not match the pinned fingerprint{seen_text}",
                certificate_sha256=seen,
            )
    reason = "certificate verification failed"
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError) and item.verify_message:
            reason = f"certificate verification failed: {clean_text(item.verify_message, 120)}"
            break
    return VcfError("tls", f"TLS error with {where}: {reason}{seen_text}", certificate_sha256=seen)


MANAGER = "SDDC Manager"


def bad_credentials(settings: EndpointSettings, suffix: str = "") -> VcfError:
    """A refused login, naming the user (never the password); `suffix` says where or how."""
    user = clean_text(settings.username, 120)
    return VcfError("auth", f"bad credentials for user {user}{suffix}", status=401)


def status_error(
    response: requests.Response,
    method: str,
    path: str,
    settings: EndpointSettings,
    secrets: tuple[str, ...] = (),
    after_relogin: bool = False,
    product: str = "SDDC Manager",
) -> VcfError:
    """An HTTP error answer, with the server's message (secrets masked) where it helps;
    `product` names the surface that answered (SDDC Manager, VCF Operations, the fleet
    management locker)."""
    status = response.status_code
    user = clean_text(settings.username, 120)
    shown_path = clean_text(path, 160)
    detail = _server_detail(response, secrets)
    code = _error_code(response, secrets)
    if status == 401:
        text = "the access token was rejected" if after_relogin else "not authenticated"
        return VcfError("auth", f"{text} (HTTP 401) for user {user}", status=status)
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        when = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return VcfError(
            "rate_limited",
            f"{method} {shown_path}: too many requests (HTTP 429){when}{detail}",
            status=status,
            error_code=code,
            retry_after=retry_after,
        )
    if status == 403 and method != "GET" and "concurrent" in detail.lower() and product == MANAGER:
        # SDDC Manager answers 403 when 10 password operations already run (CONTRACT.md
        # 2.5): not a missing role, but a reason to try again later.
        return VcfError(
            "rate_limited",
            f"{product} refused {method} {shown_path} (HTTP 403){detail}",
            status=status,
            error_code=code,
        )
    if status == 400 and method != "GET":
        return VcfError(
            "rejected",
            f"{product} refused {method} {shown_path} (HTTP 400){detail}",
            status=status,
            error_code=code,
        )
    if status == 403:
        why = ": the account needs the ADMIN role" if product == MANAGER else f" (HTTP 403){detail}"
        return VcfError(
            "forbidden", f"access denied for user {user} by {product}{why}", status=status
        )
    if status == 404:
        return VcfError(
            "not_found",
            f"{method} {shown_path}: not found (HTTP 404){detail}",
            status=status,
            error_code=code,
        )
    if status >= 500:
        return VcfError(
            "server",
            f"server error HTTP {status} on {method} {shown_path}{detail}",
            status=status,
        )
    return VcfError(
        "http", f"unexpected HTTP {status} on {method} {shown_path}{detail}", status=status
    )


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content or b"null")
    except (ValueError, UnicodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _server_detail(response: requests.Response, secrets: tuple[str, ...] = ()) -> str:
    body = _error_body(response)
    parts = []
    message = body.get("message")
    if isinstance(message, str) and message.strip():
        parts.append(": " + safe_text(message, secrets=secrets))
    reference = body.get("referenceToken")
    if isinstance(reference, str) and reference.strip():
        parts.append(f" (referenceToken {safe_text(reference, 80, secrets)})")
    return "".join(parts)


def _error_code(response: requests.Response, secrets: tuple[str, ...]) -> str | None:
    code = _error_body(response).get("errorCode")
    if not isinstance(code, str) or not code.strip():
        return None
    return safe_text(code, 120, secrets)


def safe_text(text: str, limit: int = MAX_SERVER_TEXT, secrets: tuple[str, ...] = ()) -> str:
    """Server text for a message: secrets masked before and after cleaning (which folds
    whitespace and could rebuild one), and only then truncated."""
    cleaned = clean_text(mask(text, secrets), limit=len(text) + 1)
    return clean_text(mask(cleaned, secrets), limit)


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with each of ``secrets`` replaced by ``***``.

    A misbehaving server could echo what we sent it; never let that reach a message. Masked
    on the raw text, before cleaning and truncation could split or reshape a secret, and in
    the forms a server is likely to echo it in (JSON-escaped, URL-encoded)."""
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        forms = {
            secret,
            json.dumps(secret)[1:-1],
            quote(secret, safe=""),
            quote_plus(secret),
            " ".join(secret.split()),
        }
        for form in sorted(forms, key=len, reverse=True):
            if len(form) >= 4:
                text = text.replace(form, "***")
    return text


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (an HTTP date is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), 3600.0)
