"""Exports (CSV, Excel), definitions, preferences, scheduler control, password age."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import openpyxl
import pytest
from conftest import PASSWORD
from sqlalchemy import select
from test_sync import create_env, run_sync

from portal import clock
from portal.crypto import cipher
from portal.exports import neutralise
from portal.extensions import db
from portal.models import AuditEvent, Credential
from portal.simulator import Simulator


@pytest.fixture
def synced(app, admin):
    with Simulator(credentials=120, seed=5, hostile=True) as sim:
        env = create_env(admin, sim)
        run_sync(app, admin, env["id"])
        yield sim, env


@pytest.mark.parametrize("value", ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_neutralise_formulas(value):
    assert neutralise(value) == "'" + value


def test_csv_export_matches_upstream_and_is_audited(app, admin, synced):
    sim, env = synced
    response = admin.post(f"/environments/{env['id']}/export", {"format": "csv", "scope": "all"})
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert "vcf-credentials_sfo_" in disposition and disposition.endswith('.csv"')
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["Environment", "Host", "User", "Password"]
    assert len(body) == 120
    upstream = {
        (c["resource"]["resourceName"], c["username"]): c["password"]
        for c in sim.credentials_snapshot()
    }
    for row in body:
        host, user, password = row[1], row[2], row[3]
        raw_host = host[1:] if host.startswith("'") and host[1:2] in "=+-@\t\r" else host
        raw_user = user[1:] if user.startswith("'") and user[1:2] in "=+-@\t\r" else user
        expected = upstream[(raw_host, raw_user)]
        assert password == neutralise(expected)
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "credential.export")
        )
        assert event.outcome == "success" and "120" in event.details


def test_filtered_xlsx_export(app, admin, synced):
    _, env = synced
    response = admin.post(
        f"/environments/{env['id']}/export",
        {"format": "xlsx", "scope": "view", "resource_type": "ESXI", "sort": "-hostname"},
    )
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][0] == "Environment"
    assert rows[1:] and all(row[6] == "ESXI" for row in rows[1:])
    hosts = [row[1] for row in rows[1:]]
    assert hosts == sorted(hosts, reverse=True)
    for row in rows[1:]:
        for index, cell in enumerate(row):
            if index != 3:  # passwords are exact text cells; names keep the neutralising quote
                assert not (isinstance(cell, str) and cell.startswith("=")), cell


def test_xlsx_keeps_passwords_exact(app, admin, synced):
    _, env = synced
    with app.app_context():
        cred = db.session.scalar(select(Credential).order_by(Credential.id))
        cred.password_enc = cipher(app).encrypt("-Gx9!starts-with-minus", "credential.password")
        db.session.commit()
    response = admin.post(f"/environments/{env['id']}/export", {"format": "xlsx", "scope": "all"})
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    cells = [(c.value, c.data_type) for c in sheet["D"][1:]]
    assert ("-Gx9!starts-with-minus", "s") in cells
    assert all(kind == "s" for _, kind in cells)
    csv_text = admin.post(
        f"/environments/{env['id']}/export", {"format": "csv", "scope": "all"}
    ).get_data(as_text=True)
    assert "'-Gx9!starts-with-minus" in csv_text


def test_export_needs_password_after_15_minutes(app, admin, readonly, synced):
    _, env = synced
    clock.offset = timedelta(minutes=16)
    refused = admin.post(f"/environments/{env['id']}/export", {"format": "csv"})
    assert refused.status_code == 403
    allowed = admin.post(
        f"/environments/{env['id']}/export", {"format": "csv", "confirm_password": PASSWORD}
    )
    assert allowed.status_code == 200
    clock.offset = timedelta(0)
    assert readonly.post("/export", {"format": "xlsx"}).status_code == 200
    assert admin.post("/export", {"format": "pdf"}).status_code == 400


def test_definitions_round_trip(app, admin, synced):
    sim, env = synced
    plain = admin.client.get("/api/v1/environments/definitions")
    document = plain.json
    assert document["environments"][0]["manager"]["host"] == sim.host
    assert sim.admin_password not in plain.get_data(as_text=True)
    refused = admin.api(
        "POST",
        "/api/v1/environments/definitions/export",
        json={"include_passwords": True, "confirm_password": "wrong"},
    )
    assert refused.status_code == 403
    full = admin.api(
        "POST",
        "/api/v1/environments/definitions/export",
        json={"include_passwords": True, "confirm_password": PASSWORD},
    ).json
    assert full["environments"][0]["manager"]["password"] == sim.admin_password
    document["environments"][0]["name"] = "copy"
    document["environments"].append({"name": "", "manager": {"host": "bad host"}})
    result = admin.api("POST", "/api/v1/environments/definitions/import", json=document).json
    assert result["created"] == 1 and result["updated"] == 0
    assert "#2" in result["errors"] and result["without_password"] == ["copy / manager"]
    full["environments"][0]["description"] = "moved"
    result = admin.api("POST", "/api/v1/environments/definitions/import", json=full).json
    assert result["updated"] == 1
    assert run_sync(app, admin, env["id"])["state"] == "success"
    bad = admin.api("POST", "/api/v1/environments/definitions/import", json={"x": 1})
    assert bad.status_code == 400


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


def test_scheduler_state_pause_resume(app, admin, synced):
    _, env = synced
    state = admin.client.get("/api/v1/scheduler").json
    job = state["jobs"][0]
    assert job["environment"] == "sfo" and job["last_run"]["state"] == "success"
    paused = admin.api(
        "POST", f"/api/v1/environments/{env['id']}/pause", json={"source": "manager"}
    )
    assert paused.json["manager"]["sync_paused"] is True
    assert admin.client.get("/api/v1/scheduler").json["jobs"][0]["paused"] is True
    admin.api("POST", f"/api/v1/environments/{env['id']}/resume", json={"source": "manager"})
    assert admin.client.get("/api/v1/scheduler").json["jobs"][0]["paused"] is False
    assert (
        admin.api(
            "POST", f"/api/v1/environments/{env['id']}/pause", json={"source": "installer"}
        ).status_code
        == 404
    )


def test_password_age(app, admin, synced):
    _, env = synced
    with app.app_context():
        first = db.session.scalar(select(Credential).order_by(Credential.id))
        first.last_changed_at = clock.now() - timedelta(days=200)
        first.expiry_status = "EXPIRING"
        db.session.commit()
        first_id = first.id
    body = admin.client.get(f"/api/v1/environments/{env['id']}/password-age?days=90").json
    assert sum(b["count"] for b in body["buckets"]) == 120
    assert [c["id"] for c in body["stale"]] == [first_id]
    assert body["stale"][0]["age_days"] == 200
    assert first_id in [c["id"] for c in body["expiring"]]
    assert all(c["expiry_status"] in ("EXPIRING", "EXPIRED") for c in body["expiring"])
    assert (
        admin.client.get(f"/api/v1/environments/{env['id']}/password-age?days=x").status_code == 400
    )


def test_audit_filters_and_csv(app, admin, synced):
    assert admin.client.get("/audit/?action=sync&since=2000-01-01").status_code == 200
    assert admin.client.get("/audit/?since=yesterday").status_code == 400
    response = admin.client.get("/audit/export.csv?action=environment")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][0] == "time_utc" and rows[1][3] == "environment.create"
