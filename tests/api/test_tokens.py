"""Personal API tokens: creation, Bearer sign-in without CSRF or session, scopes, networks,
expiry, the owner's rights, revocation, exports, rate limits, and the audit of every use."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from support import PASSWORD, Portal, client_for, make_app

from portal.models import ApiToken, AuditEvent, User, UserSession
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password


def _age_sessions(app, minutes: int = 20) -> None:
    with app.app_context():
        for row in db.session.scalars(select(UserSession)):
            row.authenticated_at = clock.now() - timedelta(minutes=minutes)
        db.session.commit()


def _token(portal: Portal, scope: str = "read", **extra) -> dict:
    body = {"name": f"{scope} script", "scope": scope, "expires_in_days": 30, **extra}
    created = portal.api("POST", "/api/v1/me/tokens", json=body)
    assert created.status_code == 201, created.json
    return created.json


def _script(app):
    """A client like a script: no Referer, no cookie jar use, no CSRF token."""
    client = app.test_client(use_cookies=False)
    client.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    return client


def _bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def _audits(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_creation_needs_a_recent_sign_in_or_the_password(app, readonly):
    _age_sessions(app)
    body = {"name": "ansible", "scope": "read", "expires_in_days": 7}
    refused = readonly.api("POST", "/api/v1/me/tokens", json=body)
    assert refused.status_code == 403 and "confirm_password" in refused.json["error"]
    created = readonly.api("POST", "/api/v1/me/tokens", json={**body, "confirm_password": PASSWORD})
    assert created.status_code == 201
    value = created.json["token"]
    assert value.startswith("vcfp_") and len(value) > 40
    assert created.json["expires_at"].endswith("Z")
    listed = readonly.api("GET", "/api/v1/me/tokens").json["items"]
    assert [t["name"] for t in listed] == ["ansible"]
    assert value not in json.dumps(listed)
    with app.app_context():
        stored = db.session.scalar(select(ApiToken))
        assert value not in (stored.token_hash, stored.name)
    assert len(_audits(app, "token.create")) == 2  # one denied, one created


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 366}, "expires_in_days"),
        ({"scope": "root"}, "scope"),
        ({"allowed_networks": ["10.0.0.0/33"]}, "allowed_networks"),
        ({"allowed_networks": ["not a network"]}, "allowed_networks"),
        ({"name": " "}, "name"),
    ],
)
def test_bad_token_requests_name_the_field(readonly, extra, field):
    body = {"name": "x", "scope": "read", "expires_in_days": 7, **extra}
    refused = readonly.api("POST", "/api/v1/me/tokens", json=body)
    assert refused.status_code == 422
    assert any(key.startswith(field) for key in refused.json["details"]), refused.json


def test_a_token_signs_api_requests_without_csrf_referer_or_session(app, admin, synced):
    _, env = synced
    value = _token(admin, "admin")["token"]
    script = _script(app)
    listed = script.get("/api/v1/environments", headers=_bearer(value))
    assert listed.status_code == 200 and listed.json["items"][0]["id"] == env["id"]
    assert "Set-Cookie" not in listed.headers
    paused = script.post(
        f"/api/v1/environments/{env['id']}/pause",
        json={"source": "manager"},
        headers=_bearer(value),
    )
    assert paused.status_code == 200, paused.json
    # Never on pages: the page answers as to anyone not signed in.
    page = script.get("/", headers=_bearer(value))
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    # A wrong value is a 401 in the error body.
    wrong = script.get("/api/v1/environments", headers=_bearer(value[:-2] + "xx"))
    assert wrong.status_code == 401 and "not valid" in wrong.json["error"]


def test_a_script_finds_a_credential_by_host_and_user_and_reveals_it(app, admin, synced):
    _, env = synced
    value = _token(admin, "reveal")["token"]
    script = _script(app)
    page = script.get(
        "/api/v1/credentials",
        query_string={"hostname": "esx", "username": "root", "per_page": 1},
        headers=_bearer(value),
    ).json
    cred = page["items"][0]
    assert "esx" in cred["hostname"] and "root" in cred["username"]
    revealed = script.post(f"/api/v1/credentials/{cred['id']}/reveal", headers=_bearer(value))
    assert revealed.status_code == 200 and revealed.json["password"]
    record = _audits(app, "credential.reveal")[-1]
    details = json.loads(record.details)
    assert record.actor == "alice" and details["via_token"] == "reveal script"
    assert details["token_id"] == str(_token_id(app, "reveal script"))
    assert revealed.json["password"] not in (record.details or "")


def _token_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(ApiToken.id).where(ApiToken.name == name))


def test_read_scope_reads_metadata_and_nothing_more(app, admin, synced):
    _, env = synced
    value = _token(admin, "read")["token"]
    script = _script(app)
    assert (
        script.get(
            f"/api/v1/environments/{env['id']}/credentials", headers=_bearer(value)
        ).status_code
        == 200
    )
    assert (
        script.get(
            f"/api/v1/environments/{env['id']}/sync-runs", headers=_bearer(value)
        ).status_code
        == 200
    )
    assert script.get("/api/v1/scheduler", headers=_bearer(value)).status_code == 200
    cred_id = script.get("/api/v1/credentials", headers=_bearer(value)).json["items"][0]["id"]
    for method, path in [
        ("POST", f"/api/v1/credentials/{cred_id}/reveal"),
        ("POST", f"/api/v1/environments/{env['id']}/export"),
        ("POST", "/api/v1/credentials/export"),
        ("POST", f"/api/v1/environments/{env['id']}/sync"),
        ("PATCH", f"/api/v1/environments/{env['id']}"),
    ]:
        refused = script.open(path, method=method, json={}, headers=_bearer(value))
        assert refused.status_code == 403, (method, path, refused.status_code)
        assert "scope is read" in refused.json["error"]


@pytest.mark.own_database  # the export reads on a connection of its own
def test_reveal_scope_exports_csv_with_formula_safety_and_audit(app, admin, synced):
    _, env = synced
    value = _token(admin, "reveal")["token"]
    script = _script(app)
    exported = script.post(
        f"/api/v1/environments/{env['id']}/export",
        json={"format": "csv", "username": "root"},
        headers=_bearer(value),
    )
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert rows and all("root" in row["User"] for row in rows)
    dangerous = "=+-@\t\r"
    assert not any(cell[:1] in dangerous for row in rows for cell in row.values() if cell)
    everything = script.post("/api/v1/credentials/export", json={}, headers=_bearer(value))
    assert everything.status_code == 200
    assert everything.mimetype == "text/csv"
    records = _audits(app, "credential.export")
    assert len(records) == 2
    assert all(json.loads(r.details)["via_token"] == "reveal script" for r in records)
    bad = script.post("/api/v1/credentials/export", json={"format": "pdf"}, headers=_bearer(value))
    assert bad.status_code == 422


def test_a_token_never_exceeds_its_owners_role(app, readonly, synced):
    _, env = synced
    value = _token(readonly, "admin")["token"]
    script = _script(app)
    refused = script.post(f"/api/v1/environments/{env['id']}/sync", headers=_bearer(value))
    assert refused.status_code == 403 and "manage level" in refused.json["error"]
    assert script.get("/api/v1/tokens", headers=_bearer(value)).status_code == 403


def test_a_token_cannot_make_tokens_or_change_second_factors(app, admin):
    value = _token(admin, "admin")["token"]
    script = _script(app)
    for method, path, body in [
        ("POST", "/api/v1/me/tokens", {"name": "x", "scope": "read", "expires_in_days": 1}),
        ("POST", "/api/v1/me/second-factor/totp", {"password": PASSWORD}),
        ("POST", "/api/v1/me/reauth", {"password": PASSWORD}),
    ]:
        refused = script.open(path, method=method, json=body, headers=_bearer(value))
        assert refused.status_code == 403 and "session" in refused.json["error"], path


def test_allowed_networks_bound_where_a_token_works(app, admin):
    inside = _token(admin, "read", name="inside", allowed_networks=["127.0.0.0/8"])["token"]
    outside = _token(admin, "read", name="outside", allowed_networks=["10.0.0.0/8"])["token"]
    script = _script(app)
    assert script.get("/api/v1/environments", headers=_bearer(inside)).status_code == 200
    assert script.get("/api/v1/environments", headers=_bearer(outside)).status_code == 401


def test_expired_revoked_and_disabled_tokens_stop_at_once(app, admin, readonly):
    script = _script(app)
    expiring = _token(readonly, "read", name="short", expires_in_days=1)["token"]
    clock.offset = timedelta(days=1, seconds=1)
    assert script.get("/api/v1/environments", headers=_bearer(expiring)).status_code == 401
    clock.offset = timedelta(0)

    mine = _token(readonly, "read", name="mine")
    assert script.get("/api/v1/environments", headers=_bearer(mine["token"])).status_code == 200
    assert readonly.api("DELETE", f"/api/v1/me/tokens/{mine['id']}").status_code == 204
    assert script.get("/api/v1/environments", headers=_bearer(mine["token"])).status_code == 401

    other = _token(readonly, "read", name="other")
    everyone = admin.api("GET", "/api/v1/tokens").json["items"]
    assert {t["name"] for t in everyone} >= {"other"} and all("token" not in t for t in everyone)
    assert admin.api("DELETE", f"/api/v1/tokens/{other['id']}").status_code == 204
    assert script.get("/api/v1/environments", headers=_bearer(other["token"])).status_code == 401
    assert len(_audits(app, "token.revoke")) == 2

    kept = _token(readonly, "read", name="kept")["token"]
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "bob")).disabled = True
        db.session.commit()
    assert script.get("/api/v1/environments", headers=_bearer(kept)).status_code == 401


def test_last_use_time_and_address_are_listed(app, readonly):
    made = _token(readonly, "read", name="watched")
    _script(app).get("/api/v1/environments", headers=_bearer(made["token"]))
    listed = readonly.api("GET", "/api/v1/me/tokens").json["items"][0]
    assert listed["last_used_ip"] == "127.0.0.1" and listed["last_used_at"].endswith("Z")


def test_reveals_beyond_the_limit_answer_429_audited_once(tmp_path, sim):
    app = make_app(tmp_path, PORTAL_REVEALS_PER_MINUTE="3")
    with app.app_context():
        db.session.add(User(username="carl", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    portal = Portal(client_for(app))
    portal.login("carl")
    from support import create_env, run_sync

    env = create_env(portal, sim)
    run_sync(app, portal, env["id"])
    value = _token(portal, "reveal")["token"]
    script = _script(app)
    cred_id = script.get("/api/v1/credentials", headers=_bearer(value)).json["items"][0]["id"]
    codes = []
    for _ in range(5):
        answer = script.post(f"/api/v1/credentials/{cred_id}/reveal", headers=_bearer(value))
        codes.append(answer.status_code)
    assert codes == [200, 200, 200, 429, 429]
    assert 1 <= int(answer.headers["Retry-After"]) <= 61
    assert answer.json["error"].startswith("More than 3")
    assert len(_audits(app, "rate_limit")) == 1
    # The session has its own count; the export page is counted too.
    assert portal.api("POST", f"/api/v1/credentials/{cred_id}/reveal").status_code == 200
    clock.offset = timedelta(minutes=1)
    again = script.post(f"/api/v1/credentials/{cred_id}/reveal", headers=_bearer(value))
    assert again.status_code == 200


def test_disabling_or_resetting_a_user_ends_their_tokens_for_good(app, admin, readonly):
    script = _script(app)
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob")).id
    first = _token(readonly, "read", name="before disable")["token"]
    second = _token(readonly, "read", name="before reset")["token"]
    assert script.get("/api/v1/environments", headers=_bearer(first)).status_code == 200

    assert admin.post(f"/users/{bob}/disable", {"disabled": "1"}).status_code == 302
    assert script.get("/api/v1/environments", headers=_bearer(first)).status_code == 401
    assert admin.api("GET", "/api/v1/tokens").json["items"] == []  # not listed as live
    assert admin.post(f"/users/{bob}/disable", {"disabled": "0"}).status_code == 302
    with app.app_context():
        assert db.session.get(User, bob).disabled is False
    for value in (first, second):  # nothing comes back
        assert script.get("/api/v1/environments", headers=_bearer(value)).status_code == 401
    revoked = [a for a in _audits(app, "token.revoke") if a.target == "bob"]
    assert len(revoked) == 1 and '"reason": "user disabled"' in revoked[0].details

    bob_again = Portal(client_for(app))
    assert bob_again.login("bob").status_code == 302
    third = _token(bob_again, "read", name="before reset")["token"]
    reset = admin.post(f"/users/{bob}/reset-password", {"password": "A-temporary-pass-77"})
    assert reset.status_code == 302
    assert script.get("/api/v1/environments", headers=_bearer(third)).status_code == 401
