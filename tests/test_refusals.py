"""Refusals of signed-in people and tokens are audited once each, with actor, target and
reason (ASVS V7.2.2), and a probe cannot flood the trail."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from support import PASSWORD, Portal, client_for, create_env

from portal.access import refusals
from portal.models import AuditEvent, Credential, User
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password


@pytest.fixture
def estate(app, admin, sim):
    env = create_env(admin, sim)
    with app.app_context():
        db.session.add(User(username="erin", role="member", password_hash=hash_password(PASSWORD)))
        cred = Credential(environment_id=env["id"], source="manager", hostname="esx", username="r")
        db.session.add(cred)
        db.session.commit()
        return {"env": env["id"], "cred": cred.id}


@pytest.fixture(autouse=True)
def _fresh_counts():
    refusals.reset()
    yield
    refusals.reset()


def _refusals(app) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "access.denied")
                .order_by(AuditEvent.id)
            )
        )


def _erin(app) -> Portal:
    portal = Portal(client_for(app))
    assert portal.login("erin").status_code == 302
    return portal


def test_denied_reveals_exports_grants_and_audit_reads_are_recorded(app, estate):
    erin = _erin(app)
    calls = [
        ("POST", f"/api/v1/credentials/{estate['cred']}/reveal", 404),
        ("POST", f"/api/v1/environments/{estate['env']}/export", 404),
        ("PUT", f"/api/v1/environments/{estate['env']}/grants", 403),
        ("GET", "/audit/", 403),
    ]
    for method, url, status in calls:
        if method == "GET":
            answer = erin.client.get(url)
        else:
            answer = erin.api(method, url, json=[] if method == "PUT" else {})
        assert answer.status_code == status, (url, answer.status_code)
    recorded = _refusals(app)
    assert [(r.actor, r.target, r.outcome) for r in recorded] == [
        ("erin", url, "denied") for _, url, _ in calls
    ]
    details = [json.loads(r.details) for r in recorded]
    assert details[0] == {"method": "POST", "status": "404", "reason": "No such credential."}
    assert all(d["reason"] for d in details)
    assert details[3]["method"] == "GET" and details[3]["status"] == "403"


def test_a_token_scope_refusal_is_recorded_with_the_token(app, admin, estate):
    body = {"name": "reader", "scope": "read", "expires_in_days": 1}
    value = admin.api("POST", "/api/v1/me/tokens", json=body).json["token"]
    script = app.test_client(use_cookies=False)
    script.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    refused = script.post(
        f"/api/v1/credentials/{estate['cred']}/reveal",
        json={},
        headers={"Authorization": f"Bearer {value}"},
    )
    assert refused.status_code == 403
    (record,) = _refusals(app)
    details = json.loads(record.details)
    assert record.actor == "alice" and details["via_token"] == "reader"
    assert "scope is read" in details["reason"]


def test_a_refusal_the_route_audits_itself_is_recorded_once(app, admin, estate):
    clock.offset = timedelta(minutes=20)
    assert admin.api("POST", "/api/v1/credentials/export", json={}).status_code == 403
    with app.app_context():
        denied = db.session.scalars(select(AuditEvent).where(AuditEvent.outcome == "denied")).all()
    assert [e.action for e in denied] == ["credential.export"]


def test_a_probe_cannot_flood_the_trail(app, estate, monkeypatch):
    monkeypatch.setattr(refusals, "_minute", lambda: 10)  # every request in one minute
    erin = _erin(app)
    for cred in range(1000, 1000 + refusals.LIMIT_PER_MINUTE * 3):
        assert erin.api("POST", f"/api/v1/credentials/{cred}/reveal", json={}).status_code == 404
    recorded = _refusals(app)
    assert len(recorded) == refusals.LIMIT_PER_MINUTE + 1
    assert [r.outcome for r in recorded[-2:]] == ["denied", "rate-limited"]


def test_an_address_with_no_page_is_not_a_refusal(app, estate):
    erin = _erin(app)
    assert erin.client.get("/no-such-page").status_code == 404
    assert _refusals(app) == []


def test_anonymous_requests_and_successes_are_not_refusals(app, anon, admin, estate):
    assert anon.client.get(f"/api/v1/environments/{estate['env']}").status_code == 401
    assert admin.api("POST", f"/api/v1/credentials/{estate['cred']}/reveal", json={}).status_code
    assert _refusals(app) == []
