"""OpenID Connect sign-in: authorization code flow with PKCE, state and nonce (Authlib).

`begin` makes the provider's authorization URL and the values to keep in the browser's
session until the callback; `finish` checks the callback against them, redeems the code at
the token endpoint (client_secret_basic) and validates the ID token: signature by the
provider's published keys, issuer, audience, expiry, nonce and the access token hash. No
database here; the caller turns the claims into an account.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import requests
from authlib.integrations.requests_client import OAuth2Session

with warnings.catch_warnings():
    # Authlib 1.9 announces that authlib.jose moves to joserfc; it is kept until Authlib 2.0,
    # and the warning would reach every command-line user.
    warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.jose.errors import JoseError
    from authlib.oidc.core import CodeIDToken

from .options import OidcOptions

log = logging.getLogger(__name__)

DISCOVERY_SECONDS = 300
FLOW_SECONDS = 600
LEEWAY_SECONDS = 60
MAX_GROUPS = 1000
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
_cache: dict[str, tuple[float, dict]] = {}
_cache_lock = threading.Lock()


class OidcError(Exception):
    """The sign-in cannot finish; the message is safe to show (no token, code or secret)."""


@dataclass
class OidcIdentity:
    """What the provider says about the person who signed in."""

    subject: str
    username: str
    email: str
    email_verified: bool
    groups: list[str]
    amr: list[str]


def _verify(options: OidcOptions, trust_dir: Path) -> str | bool:
    """What `requests` checks the provider's certificate with: the CA bundle's file, or the
    system's CAs."""
    if not options.ca_bundle:
        return True
    digest = hashlib.sha256(options.ca_bundle.encode()).hexdigest()[:16]
    path = trust_dir / f"oidc-ca-{digest}.pem"
    if not path.exists():
        trust_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        temporary.write_text(options.ca_bundle)
        temporary.replace(path)
    return str(path)


def _get_json(url: str, options: OidcOptions, verify: str | bool, **kwargs) -> dict:
    try:
        response = requests.get(url, timeout=options.timeout_seconds, verify=verify, **kwargs)
    except requests.RequestException as exc:
        raise OidcError(f"The OpenID Provider cannot be reached ({type(exc).__name__}).") from None
    if response.status_code != 200:
        raise OidcError(f"The OpenID Provider answered {response.status_code} at {url}.")
    try:
        data = response.json()
    except ValueError:
        raise OidcError(f"The OpenID Provider's answer at {url} is not JSON.") from None
    if not isinstance(data, dict):
        raise OidcError(f"The OpenID Provider's answer at {url} is not a JSON object.")
    return data


def metadata(options: OidcOptions, trust_dir: Path, fresh: bool = False) -> dict:
    """The provider's discovery document with its key set under `jwks` (cached 5 minutes)."""
    key = f"{options.issuer}|{hashlib.sha256(options.ca_bundle.encode()).hexdigest()}"
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and not fresh and cached[0] > time.monotonic():
        return cached[1]
    verify = _verify(options, trust_dir)
    document = _get_json(
        f"{options.issuer.rstrip('/')}/.well-known/openid-configuration", options, verify
    )
    if document.get("issuer") != options.issuer:
        raise OidcError("The discovery document names another issuer than the one configured.")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not value.startswith("https://"):
            raise OidcError(f"The discovery document has no https {name}.")
    document = {**document, "jwks": _get_json(document["jwks_uri"], options, verify)}
    with _cache_lock:
        _cache[key] = (time.monotonic() + DISCOVERY_SECONDS, document)
    return document


def _client(options: OidcOptions, secret: str, redirect_uri: str) -> OAuth2Session:
    return OAuth2Session(
        options.client_id,
        secret,
        scope=options.scopes,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
    )


def begin(
    options: OidcOptions, secret: str, redirect_uri: str, trust_dir: Path, reauth: bool = False
) -> tuple[str, dict]:
    """The authorization URL to send the browser to, and the flow's values to keep in the
    session (state, nonce, PKCE verifier, start time). With `reauth`, the provider is asked
    to have the user authenticate again (prompt=login, max_age=0), not to reuse its session."""
    document = metadata(options, trust_dir)
    flow = {
        "state": secrets.token_urlsafe(32),
        "nonce": secrets.token_urlsafe(32),
        "verifier": secrets.token_urlsafe(64),
        "at": int(time.time()),
        "reauth": reauth,
    }
    extra = {"prompt": "login", "max_age": 0} if reauth else {}
    url, _state = _client(options, secret, redirect_uri).create_authorization_url(
        document["authorization_endpoint"],
        state=flow["state"],
        nonce=flow["nonce"],
        code_verifier=flow["verifier"],
        **extra,
    )
    return url, flow


def _id_token(options: OidcOptions, document: dict, token: dict, nonce: str, trust_dir: Path):
    raw = token.get("id_token")
    if not isinstance(raw, str):
        raise OidcError("The OpenID Provider returned no ID token.")
    claims_options = {
        "iss": {"essential": True, "value": options.issuer},
        "aud": {"essential": True, "value": options.client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "nonce": {"essential": True},
    }
    params = {"nonce": nonce, "client_id": options.client_id}
    if isinstance(token.get("access_token"), str):
        params["access_token"] = token["access_token"]
    jwt = JsonWebToken(_ALGORITHMS)
    for attempt in ("cached", "fresh"):  # the provider may have rolled its keys
        if attempt == "fresh":
            document = metadata(options, trust_dir, fresh=True)
        try:
            claims = jwt.decode(
                raw,
                JsonWebKey.import_key_set(document["jwks"]),
                claims_cls=CodeIDToken,
                claims_options=claims_options,
                claims_params=params,
            )
            claims.validate(leeway=LEEWAY_SECONDS)
            return claims
        except JoseError as exc:
            if attempt == "fresh" or "key" not in str(exc).lower():
                raise OidcError(f"The ID token is not valid ({exc.error}).") from None
        except ValueError:
            if attempt == "fresh":
                raise OidcError("The ID token is not valid (no matching key).") from None
    raise OidcError("The ID token is not valid.")  # pragma: no cover - the loop returns


def _groups(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    names = {
        item.strip()
        for item in value[:MAX_GROUPS]
        if isinstance(item, str) and 0 < len(item) <= 256 and item.isprintable()
    }
    return sorted(names, key=str.lower)


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) and value.isprintable() else ""


def finish(
    options: OidcOptions, secret: str, redirect_uri: str, args: dict, flow: dict, trust_dir: Path
) -> OidcIdentity:
    """Check the callback's arguments against the kept flow, redeem the code and validate the
    ID token; the identity it proves. Raises OidcError."""
    if not flow or time.time() - flow.get("at", 0) > FLOW_SECONDS:
        raise OidcError("The sign-in took too long or was not started here. Start again.")
    state = args.get("state") or ""
    if not hmac.compare_digest(str(state).encode(), str(flow.get("state", "")).encode()):
        raise OidcError("The sign-in answer does not belong to this browser. Start again.")
    if args.get("error"):
        reason = _text(args.get("error_description")) or _text(args.get("error"))
        raise OidcError(f"The OpenID Provider refused the sign-in: {reason[:200]}")
    code = args.get("code")
    if not isinstance(code, str) or not code:
        raise OidcError("The OpenID Provider sent no authorization code.")
    document = metadata(options, trust_dir)
    verify = _verify(options, trust_dir)
    try:
        token = _client(options, secret, redirect_uri).fetch_token(
            document["token_endpoint"],
            code=code,
            code_verifier=flow["verifier"],
            verify=verify,
            timeout=options.timeout_seconds,
        )
    except requests.RequestException as exc:
        raise OidcError(f"The OpenID Provider cannot be reached ({type(exc).__name__}).") from None
    except Exception as exc:  # noqa: BLE001 - Authlib's OAuth errors: the code was refused
        error = getattr(exc, "error", None) or type(exc).__name__
        raise OidcError(f"The OpenID Provider refused the authorization code ({error}).") from None
    claims = _id_token(options, document, token, flow["nonce"], trust_dir)
    if flow.get("reauth"):
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, (int, float)) or auth_time < flow["at"] - LEEWAY_SECONDS:
            raise OidcError("The provider did not ask for your credentials again. Start again.")
    data = dict(claims)
    if options.groups_claim not in data or options.username_claim not in data:
        endpoint = document.get("userinfo_endpoint")
        if isinstance(endpoint, str) and endpoint.startswith("https://"):
            info = _get_json(
                endpoint,
                options,
                verify,
                headers={"Authorization": f"Bearer {token.get('access_token', '')}"},
            )
            if info.get("sub") == data.get("sub"):
                data = {**info, **data}
    email = _text(data.get("email"))
    verified = data.get("email_verified") is True
    # An unverified e-mail is any text the user typed at the provider: never a name here.
    username = _text(data.get(options.username_claim)) or (email if verified else "")
    amr = data.get("amr")
    return OidcIdentity(
        subject=str(data["sub"]),
        username=username,
        email=email,
        email_verified=verified,
        groups=_groups(data.get(options.groups_claim)),
        amr=[m for m in amr if isinstance(m, str)] if isinstance(amr, list) else [],
    )


def second_factor_shown(options: OidcOptions, identity: OidcIdentity) -> bool:
    """False when the settings trust the provider's second factor and name the methods that
    prove it, and the ID token names none of them."""
    if options.second_factor != "provider" or not options.required_amr:
        return True
    return bool(set(options.required_amr) & set(identity.amr))


def domain_allowed(options: OidcOptions, identity: OidcIdentity) -> bool:
    """True when no domain list is set, or the verified e-mail is in one of its domains."""
    if not options.allowed_domains:
        return True
    if not identity.email_verified or "@" not in identity.email:
        return False
    return identity.email.rsplit("@", 1)[1].lower() in options.allowed_domains
