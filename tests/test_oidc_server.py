"""The OpenID Provider of tests/oidc_server.py works for a real client: Authlib over HTTPS,
the authorization code flow with PKCE, state and nonce, and an ID token that carries groups.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from oidc_server import (
    OidcLoginError,
    OidcProvider,
    OidcProviderError,
    login_with_requests,
    node_missing,
    oidc_provider,
    start_oidc_provider,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        node_missing() is not None,
        reason=f"the test OpenID Provider cannot run: {node_missing()}",
    ),
]

REDIRECT_URI = "https://127.0.0.1:5443/oidc/callback"  # never requested: the tests stop before it
SCOPE = "openid profile email groups"
ALICE_PASSWORD = "alice-" + secrets.token_urlsafe(8)
BOB_PASSWORD = "bob-" + secrets.token_urlsafe(8)
ACCOUNTS = {
    "alice": {
        "password": ALICE_PASSWORD,
        "email": "alice@example.test",
        "name": "Alice Operator",
        "groups": ["ops"],
    },
    "bob": {
        "password": BOB_PASSWORD,
        "email": "bob@example.test",
        "email_verified": False,
        "name": "Bob Viewer",
        "groups": [],
    },
}


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One provider for the module's tests; each test starts from ACCOUNTS."""
    with oidc_provider(tmp_path_factory.mktemp("oidc"), [REDIRECT_URI], ACCOUNTS) as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh_accounts(op: OidcProvider) -> None:
    op.set_accounts(ACCOUNTS)


def browser() -> requests.Session:
    """A new user agent with no cookies, that ignores the environment's CA bundle and proxies."""
    session = requests.Session()
    session.trust_env = False
    return session


def client_for(op: OidcProvider) -> OAuth2Session:
    """The relying party's Authlib session, trusting only the provider's CA."""
    client = OAuth2Session(
        op.client_id,
        op.client_secret,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method=op.token_endpoint_auth_method,
    )
    client.trust_env = False
    client.verify = str(op.ca_path)
    return client


def validate_id_token(op: OidcProvider, token: dict, nonce: str) -> dict:
    """Check the ID token as a relying party must: signature, iss, aud, exp, nonce, at_hash."""
    metadata = op.metadata()
    with browser() as session:
        jwks = session.get(metadata["jwks_uri"], verify=str(op.ca_path), timeout=5).json()
    claims = jwt.decode(
        token["id_token"],
        JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": op.issuer},
            "aud": {"essential": True, "value": op.client_id},
        },
        claims_params={
            "nonce": nonce,
            "client_id": op.client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate(leeway=5)
    assert claims.header["alg"] == "RS256"
    return dict(claims)


def sign_in(
    op: OidcProvider,
    username: str,
    password: str,
    agent: requests.Session | None = None,
) -> tuple[dict, dict]:
    """The whole code flow with PKCE, state and nonce: (ID token claims, token response)."""
    metadata = op.metadata()
    client = client_for(op)
    nonce = secrets.token_urlsafe(16)
    code_verifier = secrets.token_urlsafe(48)
    url, state = client.create_authorization_url(
        metadata["authorization_endpoint"], nonce=nonce, code_verifier=code_verifier
    )
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [create_s256_code_challenge(code_verifier)]

    session = agent or browser()
    try:
        callback = login_with_requests(session, url, username, password, verify=op.ca_path)
    finally:
        if agent is None:
            session.close()
    location = callback.headers["Location"]
    params = parse_qs(urlsplit(location).query)
    assert location.startswith(REDIRECT_URI + "?")
    assert params["state"] == [state]
    assert params["iss"] == [op.issuer]

    with client:
        token = client.fetch_token(
            metadata["token_endpoint"],
            authorization_response=location,
            code_verifier=code_verifier,
        )
    return validate_id_token(op, token, nonce), token


def test_discovery_is_served_over_https_signed_by_the_ca(op: OidcProvider):
    assert op.issuer.startswith("https://127.0.0.1:")
    assert "BEGIN CERTIFICATE" in op.ca_pem
    metadata = op.metadata()
    assert metadata["issuer"] == op.issuer
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["response_types_supported"] == ["code"]
    assert {"openid", "profile", "email", "groups"} <= set(metadata["scopes_supported"])
    assert {"groups", "email", "name", "preferred_username"} <= set(metadata["claims_supported"])
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        metadata["token_endpoint_auth_methods_supported"]
    )
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        assert metadata[endpoint].startswith(op.issuer + "/")

    # Not trusted by the system's CAs: the certificate really is checked against op.ca_path.
    with browser() as session, pytest.raises(requests.exceptions.SSLError):
        session.get(op.server_metadata_url, verify=True, timeout=5)


def test_code_flow_with_pkce_gives_an_id_token_with_groups(op: OidcProvider):
    claims, token = sign_in(op, "alice", ALICE_PASSWORD)

    assert claims["sub"] == "alice"
    assert claims["groups"] == ["ops"]
    assert claims["email"] == "alice@example.test"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice Operator"
    assert claims["preferred_username"] == "alice"
    assert token["token_type"].lower() == "bearer"

    client = client_for(op)
    client.token = token
    userinfo = client.get(op.metadata()["userinfo_endpoint"], timeout=5)
    assert userinfo.status_code == 200
    assert userinfo.json()["groups"] == ["ops"]
    assert userinfo.json()["email"] == "alice@example.test"


def test_a_second_user_and_unverified_email(op: OidcProvider):
    claims, _ = sign_in(op, "bob", BOB_PASSWORD)
    assert (claims["sub"], claims["groups"], claims["email_verified"]) == ("bob", [], False)


def test_pkce_is_required_and_checked(op: OidcProvider):
    metadata = op.metadata()
    client = client_for(op)
    client.code_challenge_method = None
    url, _ = client.create_authorization_url(
        metadata["authorization_endpoint"], nonce=secrets.token_urlsafe(16)
    )
    assert "code_challenge" not in url
    with browser() as session:
        refused = session.get(url, allow_redirects=False, verify=str(op.ca_path), timeout=5)
    error = parse_qs(urlsplit(refused.headers["Location"]).query)
    assert error["error"] == ["invalid_request"]
    assert "PKCE" in error["error_description"][0]

    client = client_for(op)
    url, _ = client.create_authorization_url(
        metadata["authorization_endpoint"],
        nonce=secrets.token_urlsafe(16),
        code_verifier=secrets.token_urlsafe(48),
    )
    with browser() as session:
        callback = login_with_requests(session, url, "alice", ALICE_PASSWORD, op.ca_path)
    with pytest.raises(Exception, match="invalid_grant"):
        client.fetch_token(
            metadata["token_endpoint"],
            authorization_response=callback.headers["Location"],
            code_verifier=secrets.token_urlsafe(48),  # not the one sent as the challenge
        )


def test_wrong_password_and_unknown_user_are_refused(op: OidcProvider):
    url, _ = client_for(op).create_authorization_url(
        op.metadata()["authorization_endpoint"],
        nonce="n",
        code_verifier=secrets.token_urlsafe(48),
    )
    for username, password in (("alice", "wrong"), ("mallory", ALICE_PASSWORD), ("alice", "")):
        with browser() as session, pytest.raises(OidcLoginError, match="sign-in refused") as err:
            login_with_requests(session, url, username, password, op.ca_path)
        page = err.value.response
        assert page.status_code == 401
        assert 'name="login"' in page.text and 'name="password"' in page.text
        assert "Invalid username or password." in page.text


def test_a_removed_account_cannot_sign_in_again(op: OidcProvider):
    with browser() as agent:
        sign_in(op, "alice", ALICE_PASSWORD, agent=agent)
        # While the account exists, the browser's provider session is enough: no form is shown.
        sign_in(op, "alice", "never asked for", agent=agent)

        op.set_accounts({"bob": ACCOUNTS["bob"]})
        # Neither with that provider session nor with a new sign-in.
        with pytest.raises(OidcLoginError, match="sign-in refused"):
            sign_in(op, "alice", ALICE_PASSWORD, agent=agent)
        with pytest.raises(OidcLoginError, match="sign-in refused"):
            sign_in(op, "alice", ALICE_PASSWORD)
        # The same browser can sign in as someone else.
        assert sign_in(op, "bob", BOB_PASSWORD, agent=agent)[0]["sub"] == "bob"


def test_changed_groups_show_at_the_next_sign_in(op: OidcProvider):
    alice = ACCOUNTS["alice"]
    with browser() as agent:
        assert sign_in(op, "alice", ALICE_PASSWORD, agent=agent)[0]["groups"] == ["ops"]

        op.set_accounts({**ACCOUNTS, "alice": {**alice, "groups": ["ops", "vcf-admins"]}})
        # With the browser's provider session (no form) and with a new sign-in alike.
        assert sign_in(op, "alice", ALICE_PASSWORD, agent=agent)[0]["groups"] == [
            "ops",
            "vcf-admins",
        ]
        assert sign_in(op, "alice", ALICE_PASSWORD)[0]["groups"] == ["ops", "vcf-admins"]

        op.set_accounts({**ACCOUNTS, "alice": {**alice, "groups": []}})
        assert sign_in(op, "alice", ALICE_PASSWORD, agent=agent)[0]["groups"] == []


def test_client_secret_post_and_a_wrong_client_secret(tmp_path: Path):
    with oidc_provider(
        tmp_path, [REDIRECT_URI], ACCOUNTS, token_endpoint_auth_method="client_secret_post"
    ) as op:
        claims, _ = sign_in(op, "alice", ALICE_PASSWORD)
        assert claims["groups"] == ["ops"]

        op.client_secret = "not-the-secret"
        with pytest.raises(Exception, match="invalid_client"):
            sign_in(op, "alice", ALICE_PASSWORD)


def test_a_provider_that_cannot_start_says_why(tmp_path: Path):
    with pytest.raises(OidcProviderError, match="redirect_uris must only contain valid uris"):
        start_oidc_provider(tmp_path / "bad-client", ["not a url"], ACCOUNTS, timeout=10)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OidcProviderError, match="EADDRINUSE"):
            start_oidc_provider(tmp_path / "port", [REDIRECT_URI], ACCOUNTS, port=port)
