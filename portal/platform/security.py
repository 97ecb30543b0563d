"""Password rules and hashing, client addresses behind trusted proxies, headers, redirects."""

from __future__ import annotations

import ipaddress
from typing import TypeGuard
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn import zxcvbn

MIN_PASSWORD = 12
MAX_PASSWORD = 128

# A short list of passwords seen in breaches and VMware lab defaults; refused outright.
COMMON_PASSWORDS = frozenset(
    p.lower()
    for p in (
        "password1234",
        "password12345",
        "password123456",
        "passw0rd1234",
        "123456789012",
        "1234567890123",
        "12345678901234",
        "qwertyuiop12",
        "qwertyuiopasdf",
        "administrator",
        "administrator1",
        "adminadmin12",
        "adminpassword",
        "admin1234567",
        "letmein12345",
        "welcome12345",
        "welcome123456",
        "iloveyou1234",
        "changeme1234",
        "changemenow1",
        "trustno112345",
        "vmware123456",
        "vmware1!vmware1!",
        "vmware1!vmware1",
        "vmware123!vmware",
        "vmware1234567",
        "vmware12345678",
        "vcfadmin1234",
        "vcf123456789",
        "p@ssw0rd1234",
        "p@ssword1234",
        "password!123",
        "password@123",
        "passwordpassword",
        "aaaaaaaaaaaa",
        "111111111111",
        "000000000000",
        "abcdefghijkl",
        "abc123abc123",
        "football1234",
        "baseball1234",
        "superman1234",
        "sunshine1234",
        "princess1234",
        "dragon123456",
        "monkey123456",
        "master123456",
        "shadow123456",
        "qazwsxedcrfv",
        "1q2w3e4r5t6y",
        "zaq12wsxcde3",
        "correcthorsebatterystaple",
        "rainpole1234",
        "vsphere12345",
    )
)

HASH_METHOD_DEFAULT = "scrypt"
MIN_STRENGTH = 3  # zxcvbn's score, 0-4: 3 is "safely unguessable" for an online attack
# Words an attacker of this portal tries first, so the estimator counts them as guessable.
_CONTEXT_WORDS = ["vcf", "vmware", "vsphere", "sddc", "portal", "credential", "admin", "root"]
_ESTIMATE_CHARS = 64  # the estimator's cost grows with length; past this, length alone is strong


def password_problem(password: str, username: str = "") -> str | None:
    """Return why a new password is unacceptable, or None when it is fine."""
    if len(password) < MIN_PASSWORD:
        return f"Use at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"Use at most {MAX_PASSWORD} characters."
    if password.lower() in COMMON_PASSWORDS:
        return "This password is too common; choose another."
    if username and password.lower() == username.lower():
        return "The password must differ from the user name."
    result = zxcvbn(password[:_ESTIMATE_CHARS], user_inputs=[*_CONTEXT_WORDS, username])
    if result["score"] < MIN_STRENGTH:
        feedback = result["feedback"]
        reasons = [feedback.get("warning") or "This password is easy to guess."]
        reasons += feedback.get("suggestions") or ["Add more words or characters."]
        return "Too easy to guess: " + " ".join(r.rstrip(".") + "." for r in reasons if r)
    return None


def hash_password(password: str) -> str:
    """Hash with scrypt (tests configure a cheaper method)."""
    method = current_app.config.get("PASSWORD_HASH_METHOD", HASH_METHOD_DEFAULT)
    return generate_password_hash(password, method=method)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of a password against its hash."""
    return check_password_hash(password_hash, password)


def _is_trusted(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip() -> str:
    """The client's address: X-Forwarded-For is honoured only from a trusted proxy."""
    remote = request.remote_addr or "unknown"
    networks = current_app.config["PORTAL_SETTINGS"].trusted_proxies
    if not networks or not _is_trusted(remote, networks):
        return remote
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([part for part in forwarded if part]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return remote
        if not _is_trusted(hop, networks):
            return hop
    return remote


def is_safe_next(target: str | None) -> TypeGuard[str]:
    """True for a same-site relative path, the only kind of `next` we follow."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def _set_security_headers(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "same-origin"
    headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    headers.pop("Server", None)
    return response


def init_app(app: Flask) -> None:
    """Attach the security headers to every response."""
    app.after_request(_set_security_headers)
