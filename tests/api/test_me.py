"""The signed-in user's own facts and preferences."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select
from support import PASSWORD, Portal, client_for

from portal.models import AuditEvent, Environment
from portal.platform import clock
from portal.platform.extensions import db


def test_preferences(admin):
    assert admin.client.get("/api/v1/me").json["preferences"]["dashboard_view"] == "cards"
    assert (
        admin.api("PATCH", "/api/v1/me/preferences", json={"dashboard_view": "list"}).status_code
        == 200
    )
    me = admin.client.get("/api/v1/me").json
    assert me["preferences"]["dashboard_view"] == "list" and me["recent_auth"] is True
    assert (
        admin.api("PATCH", "/api/v1/me/preferences", json={"dashboard_view": "x"}).status_code
        == 422
    )


def test_reauth_confirms_the_password_for_the_next_export(app, admin):
    clock.offset = timedelta(minutes=16)
    assert admin.client.get("/api/v1/me").json["recent_auth"] is False
    wrong = admin.api("POST", "/api/v1/me/reauth", json={"password": "nope", "purpose": "export"})
    assert wrong.status_code == 403
    assert wrong.json == {"error": "That password is not correct.", "details": {}}
    assert admin.post("/export", {"format": "csv"}).status_code == 403
    right = admin.api("POST", "/api/v1/me/reauth", json={"password": PASSWORD})
    assert right.status_code == 204
    assert admin.client.get("/api/v1/me").json["recent_auth"] is True
    assert admin.post("/export", {"format": "csv"}).status_code == 200
    with app.app_context():
        denied = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "credential.export", AuditEvent.outcome == "denied"
            )
        ).all()
        failures = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "auth.reauth")
        ).all()
    details = [json.loads(event.details) for event in denied]
    assert {"reason": "wrong password"} in details and len(denied) == 2
    assert [(e.actor, e.outcome) for e in failures] == [("alice", "failure")]


def test_reauth_names_the_environment_of_a_denied_export(app, admin):
    with app.app_context():
        env = Environment(name="sfo")
        db.session.add(env)
        db.session.commit()
        env_id = env.id
    body = {"password": "nope", "purpose": "export", "environment_id": env_id}
    assert admin.api("POST", "/api/v1/me/reauth", json=body).status_code == 403
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "credential.export")
        )
    assert (event.target, event.outcome, event.actor) == ("sfo", "denied", "alice")
    missing = admin.api(
        "POST",
        "/api/v1/me/reauth",
        json={"password": "x", "purpose": "export", "environment_id": 99},
    )
    assert missing.status_code == 404


def test_wrong_reauth_passwords_count_toward_the_lockout(app, admin):
    for _ in range(4):
        assert admin.api("POST", "/api/v1/me/reauth", json={"password": "nope"}).status_code == 403
    last = admin.api("POST", "/api/v1/me/reauth", json={"password": "nope"})
    assert last.status_code == 401
    assert admin.client.get("/").status_code == 302  # signed out
    assert Portal(client_for(app)).login("alice").status_code == 401  # locked
    assert admin.api("POST", "/api/v1/me/reauth", json={}).status_code == 401
