"""Environments through the API: create, validate, change, test a connection, delete."""

from __future__ import annotations

import socket

from sqlalchemy import func, select
from support import create_env, endpoint_body, run_sync

from portal.access import ratelimit
from portal.environments.endpoints import (
    MAX_HOST,
    MAX_INTERVAL,
    MAX_PASSWORD,
    MAX_PORT,
    MAX_USERNAME,
    MIN_INTERVAL,
    MIN_PORT,
)
from portal.environments.service import MAX_DESCRIPTION, MAX_NAME
from portal.models import AuditEvent, Credential, Endpoint, PasswordHistory, SyncRun
from portal.platform.extensions import db


def test_environment_api_password_write_only(app, admin, sim):
    env = create_env(admin, sim)
    assert "password" not in env["manager"]
    body = admin.client.get(f"/api/v1/environments/{env['id']}").get_data(as_text=True)
    assert sim.admin_password not in body
    kept = admin.api(
        "PATCH",
        f"/api/v1/environments/{env['id']}",
        json={"description": "lab", "manager": {"password": ""}},
    )
    assert kept.status_code == 200
    assert run_sync(app, admin, env["id"])["state"] == "success"


def test_environment_validation(admin, sim):
    bad = admin.api(
        "POST",
        "/api/v1/environments",
        json={
            "name": "",
            "manager": {
                "host": "bad host/x",
                "port": 70000,
                "username": "",
                "sync_interval_minutes": 2,
                "pinned_sha256": "zz",
                "ca_pem": "not a pem",
            },
        },
    )
    assert bad.status_code == 422
    details = bad.json["details"]
    for field in (
        "name",
        "manager.host",
        "manager.port",
        "manager.username",
        "manager.password",
        "manager.sync_interval_minutes",
        "manager.pinned_sha256",
        "manager.ca_pem",
    ):
        assert field in details, field
    # A number past what a float holds (1e999 in JSON) is refused, like any other.
    huge = admin.api(
        "POST",
        "/api/v1/environments",
        json={"name": "huge", "manager": endpoint_body(sim, port=float("inf"))},
    )
    assert huge.status_code == 422
    assert huge.json["details"] == {"manager.port": "Expected a whole number."}
    none = admin.api("POST", "/api/v1/environments", json={"name": "x"})
    assert none.status_code == 422
    create_env(admin, sim, name="dup")
    dup = admin.api(
        "POST", "/api/v1/environments", json={"name": "dup", "manager": endpoint_body(sim)}
    )
    assert dup.status_code == 422 and "name" in dup.json["details"]
    not_json = admin.api(
        "POST", "/api/v1/environments", data="x", headers={"Content-Type": "text/plain"}
    )
    assert not_json.status_code == 400 and not_json.is_json


def test_stored_password_never_follows_a_new_destination(app, admin, sim):
    env = create_env(admin, sim)
    for change in (
        {"host": "attacker.example.net"},
        {"port": 8443},
        {"verify_tls": False},
        {"username": "someone-else"},
        {"ca_pem": None},
    ):
        moved = admin.api("PATCH", f"/api/v1/environments/{env['id']}", json={"manager": change})
        assert moved.status_code == 422, change
        assert "manager.password" in moved.json["details"]
        probe = admin.api(
            "POST",
            "/api/v1/environments/test-connection",
            json={
                "source": "manager",
                "environment_id": env["id"],
                **{**endpoint_body(sim, password=""), **change},
            },
        )
        assert probe.status_code == 422, change
    document = admin.client.get("/api/v1/environments/definitions").json
    document["environments"][0]["manager"]["host"] = "attacker.example.net"
    result = admin.api("POST", "/api/v1/environments/definitions/import", json=document).json
    assert result["updated"] == 0 and "sfo" in result["errors"]
    with app.app_context():
        assert db.session.scalar(select(Endpoint.host)) == sim.host


def test_test_connection(app, admin, sim):
    ok = admin.api(
        "POST",
        "/api/v1/environments/test-connection",
        json={"source": "manager", **endpoint_body(sim)},
    )
    assert ok.json["ok"] and ok.json["credential_count"] == 300
    assert ok.json["certificate_sha256"] == sim.certificate_sha256
    wrong = admin.api(
        "POST",
        "/api/v1/environments/test-connection",
        json={"source": "manager", **endpoint_body(sim, password="wrong-pass")},
    )
    assert not wrong.json["ok"] and "credentials" in wrong.json["message"].lower()
    untrusted = admin.api(
        "POST",
        "/api/v1/environments/test-connection",
        json={"source": "manager", **endpoint_body(sim, ca_pem=None)},
    )
    assert not untrusted.json["ok"]
    assert untrusted.json["certificate_sha256"] == sim.certificate_sha256
    env = create_env(admin, sim)
    stored = admin.api(
        "POST",
        "/api/v1/environments/test-connection",
        json={"source": "manager", "environment_id": env["id"], **endpoint_body(sim, password="")},
    )
    assert stored.json["ok"]
    elsewhere = admin.api(
        "POST",
        "/api/v1/environments/test-connection",
        json={
            "source": "manager",
            "environment_id": env["id"],
            **endpoint_body(sim, password="", host="localhost"),
        },
    )
    assert elsewhere.status_code == 422


def test_delete_environment_removes_everything(app, admin, sim):
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    assert admin.api("DELETE", f"/api/v1/environments/{env['id']}").status_code == 204
    with app.app_context():
        for model in (Credential, PasswordHistory, SyncRun, Endpoint):
            assert db.session.scalar(select(func.count()).select_from(model)) == 0
        actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"environment.create", "environment.delete", "sync.start", "sync.finish"} <= actions


def test_readonly_reads_but_cannot_change(app, admin, readonly, sim):
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    assert readonly.client.get("/api/v1/environments").status_code == 200
    item = readonly.client.get(f"/api/v1/environments/{env['id']}/credentials").json["items"][0]
    assert readonly.api("POST", f"/api/v1/credentials/{item['id']}/reveal").status_code == 200
    for method, url in (
        ("POST", f"/api/v1/environments/{env['id']}/sync"),
        ("PATCH", f"/api/v1/environments/{env['id']}"),
        ("DELETE", f"/api/v1/environments/{env['id']}"),
        ("POST", "/api/v1/environments"),
    ):
        assert readonly.api(method, url, json={}).status_code == 403


def test_saving_the_form_unchanged_keeps_the_stored_password(app, admin, sim):
    env = create_env(admin, sim, pinned_sha256=sim.certificate_sha256)
    shown = admin.client.get(f"/api/v1/environments/{env['id']}").json["manager"]
    body = {**shown, "password": "", "sync_interval_minutes": 30}
    saved = admin.api("PATCH", f"/api/v1/environments/{env['id']}", json={"manager": body})
    assert saved.status_code == 200, saved.json
    assert saved.json["manager"]["sync_interval_minutes"] == 30
    assert run_sync(app, admin, env["id"])["state"] == "success"


def _bounds(prop: dict) -> dict:
    branch = next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), prop)
    return {k: v for k, v in branch.items() if k in ("maxLength", "minimum", "maximum")}


def test_field_limits_are_written_once(admin, sim):
    schemas = admin.client.get("/api/v1/openapi.json").json["components"]["schemas"]
    environment, endpoint = (
        schemas["EnvironmentIn"]["properties"],
        schemas["EndpointIn"]["properties"],
    )
    assert _bounds(environment["name"]) == {"maxLength": MAX_NAME}
    assert _bounds(environment["description"]) == {"maxLength": MAX_DESCRIPTION}
    assert _bounds(endpoint["host"]) == {"maxLength": MAX_HOST}
    assert _bounds(endpoint["username"]) == {"maxLength": MAX_USERNAME}
    assert _bounds(endpoint["password"]) == {"maxLength": MAX_PASSWORD}
    assert _bounds(endpoint["port"]) == {"minimum": MIN_PORT, "maximum": MAX_PORT}
    interval = _bounds(endpoint["sync_interval_minutes"])
    assert interval == {"minimum": MIN_INTERVAL, "maximum": MAX_INTERVAL}
    # The service refuses one past each limit, and its message names the limit.
    too_long = admin.api(
        "POST",
        "/api/v1/environments",
        json={
            "name": "n" * (MAX_NAME + 1),
            "description": "d" * (MAX_DESCRIPTION + 1),
            "manager": endpoint_body(
                sim,
                host="h" * (MAX_HOST + 1),
                port=MAX_PORT + 1,
                username="u" * (MAX_USERNAME + 1),
                password="p" * (MAX_PASSWORD + 1),
                sync_interval_minutes=MAX_INTERVAL + 1,
            ),
        },
    )
    assert too_long.status_code == 422
    details = too_long.json["details"]
    assert str(MAX_NAME) in details["name"] and str(MAX_DESCRIPTION) in details["description"]
    assert str(MAX_USERNAME) in details["manager.username"]
    assert str(MAX_PASSWORD) in details["manager.password"]
    for field in ("host", "port", "sync_interval_minutes"):
        assert f"manager.{field}" in details, details
    at_the_limits = create_env(
        admin,
        sim,
        name="n" * MAX_NAME,
        sync_interval_minutes=MAX_INTERVAL,
    )
    form = admin.client.get(f"/environments/{at_the_limits['id']}/edit").get_data(as_text=True)
    assert f'maxlength="{MAX_NAME}"' in form and f'max="{MAX_PORT}"' in form
    assert f'min="{MIN_INTERVAL}" max="{MAX_INTERVAL}"' in form


def test_connection_tests_are_limited_and_audited_with_their_target(app, admin, sim):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    body = {"source": "manager", **endpoint_body(sim), "port": port}
    answers = [
        admin.api("POST", "/api/v1/environments/test-connection", json=body)
        for _ in range(ratelimit.TESTS_PER_MINUTE + 2)
    ]
    assert [a.status_code for a in answers] == [200] * ratelimit.TESTS_PER_MINUTE + [429, 429]
    assert answers[0].json["ok"] is False and answers[0].json["message"]  # still explained
    assert answers[-1].headers["Retry-After"]
    with app.app_context():
        tests = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "environment.test_connection")
        ).all()
        limited = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "rate_limit")
        ).all()
    assert len(tests) == ratelimit.TESTS_PER_MINUTE
    assert {t.target for t in tests} == {f"manager {sim.host}:{port}"}
    assert all(t.outcome == "failure" and "reason" in t.details for t in tests)
    assert len(limited) == 1
