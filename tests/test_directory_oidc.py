"""Sign-in through a real OpenID Provider (oidc-provider on Node.js, HTTPS on loopback):
authorization code flow with PKCE, state and nonce; accounts made at the first sign-in; roles
and grants from the groups claim; access follows the groups at each sign-in."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from oidc_server import login_with_requests, node_missing, start_oidc_provider
from sqlalchemy import select
from support import Portal, client_for, create_env, oidc_settings_body

from portal.identity.directory import options
from portal.models import AuditEvent, User
from portal.platform.extensions import db

pytestmark = [
    pytest.mark.e2e,  # starts the OpenID Provider under Node.js
    pytest.mark.skipif(node_missing() is not None, reason="Node.js is not installed"),
]
# The in-process test client runs on http://localhost (Werkzeug's base URL wins over the
# environ's scheme); the running portal's https callback is used in tests/e2e.
CALLBACKS = ["http://localhost/login/oidc/callback", "https://localhost/login/oidc/callback"]
PASSWORD = "Provider-Pass-41"  # noqa: S105 - a test account's password at the provider


def _account(name: str, groups: list[str], **extra) -> dict:
    return {
        "password": PASSWORD,
        "email": f"{name}@example.test",
        "name": name.title(),
        "groups": groups,
        **extra,
    }


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    server = start_oidc_provider(tmp_path_factory.mktemp("op"), CALLBACKS, {})
    yield server
    server.stop()


def _configure(admin, provider, **extra) -> None:
    response = admin.api("PUT", "/api/v1/settings/oidc", oidc_settings_body(provider, **extra))
    assert response.status_code == 200, response.json


def _sign_in(app, provider, login: str, password: str = PASSWORD, portal=None):
    """Through the provider's sign-in page; answers (portal, the callback's response)."""
    portal = portal or Portal(client_for(app))
    started = portal.client.get("/login/oidc?next=/scheduler")
    assert started.status_code == 302, started.get_data(as_text=True)
    location = started.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    answer = login_with_requests(requests.Session(), location, login, password, provider.ca_path)
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" in CALLBACKS
    return portal, portal.client.get(f"{back.path}?{back.query}")


def _audits(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


def test_an_oidc_user_gets_their_groups_access_and_loses_it(app, admin, sim, provider):
    provider.set_accounts({"olga": _account("olga", ["vcf-sfo", "unrelated"])})
    _configure(admin, provider)
    assert (
        admin.api("POST", "/api/v1/groups", {"name": "vcf-sfo", "source": "oidc"}).status_code
        == 201
    )
    sfo, nyc = create_env(admin, sim, "sfo"), create_env(admin, sim, "nyc")
    admin.api(
        "PUT",
        f"/api/v1/environments/{sfo['id']}/grants",
        [{"subject": "group:vcf-sfo", "level": "view"}],
    )
    olga, done = _sign_in(app, provider, "olga")
    assert done.status_code == 302 and done.headers["Location"].endswith("/scheduler")
    with app.app_context():
        account = db.session.scalar(select(User).where(User.username == "olga"))
        assert account.source == "oidc" and account.role == "member"
        assert account.external_id == f"{provider.issuer}|olga"
    names = [e["name"] for e in olga.client.get("/api/v1/environments").json["items"]]
    assert names == ["sfo"]
    assert olga.client.get(f"/environments/{nyc['id']}").status_code == 404
    login = [a for a in _audits(app, "auth.login") if a.target == "olga"][-1]
    details = json.loads(login.details)
    assert details["source"] == "oidc" and details["groups"] == "vcf-sfo"
    assert "unrelated" in details["directory_groups"]

    # Out of the group at the provider: the next sign-in has no access any more.
    provider.set_accounts({"olga": _account("olga", ["unrelated"])})
    olga, done = _sign_in(app, provider, "olga")
    assert done.status_code == 302
    assert olga.client.get("/api/v1/environments").json["items"] == []
    assert olga.client.get(f"/environments/{sfo['id']}").status_code == 404


def test_a_role_through_a_provider_group(app, admin, provider):
    provider.set_accounts({"ivan": _account("ivan", ["Auditors"])})
    _configure(admin, provider)
    admin.api("POST", "/api/v1/groups", {"name": "auditors", "role": "auditor", "source": "oidc"})
    ivan, done = _sign_in(app, provider, "ivan")
    assert done.status_code == 302
    assert ivan.client.get("/audit/").status_code == 200


def test_the_callback_refuses_what_it_did_not_start(app, admin, provider):
    provider.set_accounts({"mallory": _account("mallory", [])})
    _configure(admin, provider)
    # A callback in another browser (no flow in its session) is refused.
    victim = Portal(client_for(app))
    attacker = Portal(client_for(app))
    started = attacker.client.get("/login/oidc")
    answer = login_with_requests(
        requests.Session(), started.headers["Location"], "mallory", PASSWORD, provider.ca_path
    )
    back = urlsplit(answer.headers["Location"])
    refused = victim.client.get(f"{back.path}?{back.query}")
    assert refused.status_code == 401
    assert "was not started here" in refused.get_data(as_text=True)
    assert victim.client.get("/api/v1/me").status_code == 401
    # A forged state in the right browser is refused too, and the flow is used up.
    tampered = back.query.replace("state=", "state=x")
    forged = attacker.client.get(f"{back.path}?{tampered}")
    assert forged.status_code == 401
    assert "does not belong to this browser" in forged.get_data(as_text=True)
    assert attacker.client.get(f"{back.path}?{back.query}").status_code == 401
    # The provider's refusal is shown, not a crash.
    refused = attacker.client.get("/login/oidc/callback?error=access_denied&state=x")
    assert refused.status_code == 401
    failures = [a for a in _audits(app, "auth.login") if a.outcome == "failure"]
    assert failures and all("code=" not in (a.details or "") for a in failures)


def test_wrong_password_at_the_provider_signs_nobody_in(app, admin, provider):
    provider.set_accounts({"nina": _account("nina", [])})
    _configure(admin, provider)
    portal = Portal(client_for(app))
    started = portal.client.get("/login/oidc")
    with pytest.raises(Exception):  # noqa: B017 - the helper raises when the form comes back
        login_with_requests(
            requests.Session(), started.headers["Location"], "nina", "wrong", provider.ca_path
        )
    assert portal.client.get("/api/v1/me").status_code == 401


def test_domains_and_name_clashes_are_refused(app, admin, provider):
    provider.set_accounts(
        {
            "bob": _account("bob", []),  # a local account of this name exists
            "eve": _account("eve", [], email="eve@elsewhere.test"),
            "uma": _account("uma", [], email_verified=False),
        }
    )
    _configure(admin, provider)
    _, bob = _sign_in(app, provider, "bob")
    assert bob.status_code == 403 and "belongs to another portal account" in bob.get_data(
        as_text=True
    )
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "bob")).source == "local"
    _configure(admin, provider, allowed_domains=["example.test"])
    _, eve = _sign_in(app, provider, "eve")
    assert eve.status_code == 403 and "domain" in eve.get_data(as_text=True)
    _, uma = _sign_in(app, provider, "uma")  # the right domain, but not verified
    assert uma.status_code == 403
    with app.app_context():
        names = set(db.session.scalars(select(User.username)))
    assert not {"eve", "uma"} & names


def test_second_factor_for_oidc_users_follows_the_provider_setting(app, admin, provider):
    provider.set_accounts({"pia": _account("pia", [])})
    _configure(admin, provider, second_factor="policy")
    with app.app_context():
        from portal.identity import second_factor

        second_factor.set_policy("everyone")
        db.session.commit()
    pia, done = _sign_in(app, provider, "pia")
    assert done.status_code == 302
    assert pia.client.get("/api/v1/environments").status_code == 403  # enrol first
    with app.app_context():  # the admin, too, would have to enrol first
        options.save("oidc", {"second_factor": "provider"}, "alice")
        db.session.commit()
    pia, done = _sign_in(app, provider, "pia")
    assert pia.client.get("/api/v1/environments").status_code == 200


def test_an_unreachable_provider_is_a_clear_error(app, admin, provider):
    _configure(admin, provider, issuer="https://127.0.0.1:1")
    started = Portal(client_for(app)).client.get("/login/oidc")
    assert started.status_code == 503
    assert "cannot be reached" in started.get_data(as_text=True)


def test_oidc_accounts_hold_no_tokens_and_locks_hold(app, admin, provider):
    provider.set_accounts({"quinn": _account("quinn", [])})
    _configure(admin, provider)
    quinn, done = _sign_in(app, provider, "quinn")
    assert done.status_code == 302
    made = quinn.api(
        "POST", "/api/v1/me/tokens", {"name": "ci", "scope": "read", "expires_in_days": 1}
    )
    assert made.status_code == 422 and "OpenID Provider" in json.dumps(made.json)
    with app.app_context():
        from portal.platform import clock

        account = db.session.scalar(select(User).where(User.username == "quinn"))
        account.locked_until = clock.now() + clock.timedelta(minutes=10)
        db.session.commit()
    _, locked = _sign_in(app, provider, "quinn")
    assert locked.status_code == 401


def test_a_required_second_factor_method_must_be_in_the_id_token(app, admin, provider):
    provider.set_accounts({"rex": _account("rex", [])})
    _configure(admin, provider, second_factor="provider", required_amr=["mfa", "hwk"])
    _, refused = _sign_in(app, provider, "rex")
    assert refused.status_code == 403
    assert "did not confirm a second factor" in refused.get_data(as_text=True)


def test_an_unverified_e_mail_never_names_an_account(app, admin, provider):
    provider.set_accounts({"sam": _account("sam", [], email_verified=False)})
    _configure(admin, provider, username_claim="nickname")  # absent: the e-mail would be next
    _, refused = _sign_in(app, provider, "sam")
    assert refused.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(User).where(User.source == "oidc")) is None


def test_an_oidc_user_confirms_by_signing_in_again(app, admin, provider):
    from portal.identity import second_factor
    from portal.platform import clock

    provider.set_accounts({"vera": _account("vera", [])})
    _configure(admin, provider)
    with app.app_context():
        second_factor.set_policy("everyone")
        db.session.commit()
    vera, done = _sign_in(app, provider, "vera")
    page = vera.client.get("/account/security").get_data(as_text=True)
    assert "reauth-oidc" in page and 'name="password"' not in page
    # Within 15 minutes of the provider's sign-in, setting up an app asks nothing more.
    started = vera.post("/account/security/totp")
    assert started.status_code == 200 and "secret-key" in started.get_data(as_text=True)
    clock.offset = clock.timedelta(minutes=20)
    assert vera.post("/account/security/totp").status_code == 403
    # Signing in again asks the provider for the credentials again (prompt=login, max_age=0).
    again = vera.client.get("/login/oidc?reauth=1&next=/account/security")
    query = parse_qs(urlsplit(again.headers["Location"]).query)
    assert query["prompt"] == ["login"] and query["max_age"] == ["0"]
    clock.offset = clock.timedelta(0)
    answer = login_with_requests(
        requests.Session(), again.headers["Location"], "vera", PASSWORD, provider.ca_path
    )
    back = urlsplit(answer.headers["Location"])
    done = vera.client.get(f"{back.path}?{back.query}")
    assert done.status_code == 302 and done.headers["Location"].endswith("/account/security")
    assert "secret-key" in vera.post("/account/security/totp").get_data(as_text=True)
