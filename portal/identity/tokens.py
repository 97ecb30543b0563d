"""Personal API tokens: created by a signed-in user, shown once, kept as a SHA-256 hash.

A token acts as its owner, never beyond: the owner's current role applies on every request, a
disabled or deleted owner ends every token, and the token's scope narrows what it may do
(`read` metadata; `reveal` also passwords and exports; `admin` everything the owner may do).
Tokens are accepted on /api/v1 only, need no CSRF token and never create a session.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
from datetime import timedelta

from flask import Flask, g, request
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import audit
from ..models import ApiToken, User
from ..platform import clock
from ..platform.extensions import csrf, db
from ..platform.http import json_error
from ..platform.security import client_ip

SCOPES = ("read", "reveal", "admin")
_RANK = {"read": 0, "reveal": 1, "admin": 2}
PREFIX = "vcfp_"
MAX_NAME = 64
MAX_DAYS = 365
MAX_NETWORKS = 32
_TOUCH_EVERY = timedelta(seconds=60)
API_PREFIX = "/api/v1/"
REFUSED = "The token is not valid: unknown, expired, revoked, or not allowed from this address."


class TokenError(Exception):
    """A token request with a value we refuse; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def allows(scope: str, needed: str) -> bool:
    """True when a token of `scope` may do what needs `needed`."""
    return _RANK.get(scope, -1) >= _RANK[needed]


def parse_networks(values: list[str] | None) -> list[str]:
    """Normalised CIDRs; TokenError naming the first that is not one."""
    result = []
    for value in values or []:
        try:
            result.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise TokenError(
                "allowed_networks", f"{value!r} is not an IP address or network."
            ) from None
    if len(result) > MAX_NETWORKS:
        raise TokenError("allowed_networks", f"At most {MAX_NETWORKS} networks.")
    return list(dict.fromkeys(result))


def create(
    user: User, name: str, scope: str, days: int, networks: list[str] | None
) -> tuple[ApiToken, str]:
    """A new token of `user`; returns it and its value (shown this once). The caller commits.
    Accounts of an OpenID Provider hold none: the portal cannot learn when the provider
    removes or disables them (LDAP accounts are looked up again, tokens included)."""
    if user.source == "oidc":
        raise TokenError(
            "owner",
            "Accounts that sign in with an OpenID Provider cannot hold API tokens: use a "
            "local or directory account for automation.",
        )
    name = " ".join((name or "").split())
    if not name or len(name) > MAX_NAME:
        raise TokenError("name", f"Give the token a name of 1 to {MAX_NAME} characters.")
    if scope not in SCOPES:
        raise TokenError("scope", f"The scope is one of: {', '.join(SCOPES)}.")
    if not 1 <= days <= MAX_DAYS:
        raise TokenError("expires_in_days", f"A token lasts 1 to {MAX_DAYS} days.")
    allowed = parse_networks(networks)
    value = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        scope=scope,
        token_hash=_hash(value),
        allowed_networks=json.dumps(allowed) if allowed else None,
        expires_at=clock.now() + timedelta(days=days),
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        "token.create",
        user.username,
        details={"token": name, "token_id": token.id, "scope": scope, "days": days},
    )
    return token, value


def networks_of(token: ApiToken) -> list[str]:
    return json.loads(token.allowed_networks) if token.allowed_networks else []


def as_dict(token: ApiToken) -> dict:
    """What lists show of a token: never its value or hash."""
    return {
        "id": token.id,
        "name": token.name,
        "owner": token.user.username,
        "scope": token.scope,
        "created_at": clock.iso(token.created_at),
        "expires_at": clock.iso(token.expires_at),
        "last_used_at": clock.iso(token.last_used_at),
        "last_used_ip": token.last_used_ip,
        "allowed_networks": networks_of(token),
        "expired": token.expires_at <= clock.now(),
    }


def listed(user: User | None = None) -> list[ApiToken]:
    """Tokens not revoked, newest first: one user's, or everyone's."""
    query = (
        select(ApiToken)
        .options(joinedload(ApiToken.user))
        .where(ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.id.desc())
    )
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(db.session.scalars(query))


def find(token_id: int, user: User | None = None) -> ApiToken | None:
    """A token not revoked, by id (one user's when `user` is given)."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return None
    if user is not None and token.user_id != user.id:
        return None
    return token


def revoke_all(user: User, reason: str, actor: str | None = None) -> int:
    """Revoke every live token of a user for good (disabled, password reset, gone from the
    directory): enabling the user again brings none back. One audit record names how many
    and why; returns the count. The caller commits."""
    now = clock.now()
    live = list(
        db.session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        )
    )
    for token in live:
        token.revoked_at = now
    if live:
        audit.record(
            "token.revoke",
            user.username,
            details={"tokens": len(live), "reason": reason},
            actor=actor,
        )
    return len(live)


def revoke(token: ApiToken) -> None:
    """Revoke a token at once (the caller commits)."""
    token.revoked_at = clock.now()
    audit.record(
        "token.revoke",
        token.user.username,
        details={"token": token.name, "token_id": token.id},
    )


def _allowed_from(token: ApiToken, address: str) -> bool:
    networks = networks_of(token)
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network) for network in networks)


def authenticate(value: str, address: str) -> ApiToken | None:
    """The token with this value when it may be used now from `address`, else None."""
    if not value.startswith(PREFIX) or len(value) > 128:
        return None
    token = db.session.scalar(
        select(ApiToken)
        .options(joinedload(ApiToken.user))
        .where(ApiToken.token_hash == _hash(value))
    )
    if token is None or token.revoked_at is not None or token.expires_at <= clock.now():
        return None
    if token.user is None or token.user.disabled or not _allowed_from(token, address):
        return None
    return token


def _touch(token: ApiToken, address: str) -> None:
    now = clock.now()
    if (
        token.last_used_at is None
        or now - token.last_used_at > _TOUCH_EVERY
        or token.last_used_ip != address
    ):
        token.last_used_at = now
        token.last_used_ip = address[:64]
        db.session.commit()


def current() -> ApiToken | None:
    """The token this request authenticated with, if any."""
    return g.get("api_token")


def _authenticate_bearer():
    """A Bearer token on /api/v1 signs the request in as its owner (no session)."""
    header = request.headers.get("Authorization", "")
    if not header[:7].lower() == "bearer " or not request.path.startswith(API_PREFIX):
        return None
    address = client_ip()
    token = authenticate(header[7:].strip(), address)
    if token is None:
        return json_error(401, REFUSED)
    g.api_token = token
    g._login_user = token.user  # Flask-Login's current user for this request only
    _touch(token, address)
    return None


def _csrf_unless_token():
    """The CSRF check (token and same-site Referer) for every request a token did not sign.

    An API request from nobody signed in is left to the sign-in check (401): with no session
    there is nothing a forged request could act as."""
    if current() is not None or request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        return
    if request.path.startswith(API_PREFIX) and not current_user.is_authenticated:
        return
    csrf.protect()


def init_app(app: Flask) -> None:
    """Bearer sign-in, then the CSRF check for the others (Flask-WTF's own is turned off)."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request(_authenticate_bearer)
    app.before_request(_csrf_unless_token)
