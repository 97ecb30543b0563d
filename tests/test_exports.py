"""Exports (CSV, Excel), definitions, preferences, scheduler control, password age."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import openpyxl
import pytest
from markupsafe import escape
from sqlalchemy import select
from support import PASSWORD

from portal.models import AuditEvent, Credential
from portal.platform import clock
from portal.platform.crypto import cipher
from portal.platform.extensions import db
from portal.platform.text import visible
from portal.vault.exports import neutralise


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
    # Names are exported with hidden characters made visible; passwords exactly.
    upstream = {
        (visible(c["resource"]["resourceName"]), visible(c["username"])): c["password"]
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
    hosts = {row[1] for row in body}
    assert "\\u202eexe.cod.rainpole.io" in hosts
    assert not any("\u202e" in cell for row in body for cell in row[:3] + row[4:])
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


def test_view_export_checks_its_filters_as_the_api_does(admin, synced):
    _, env = synced
    for field, value in (("status", "gone"), ("sort", "password_enc")):
        api = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?{field}={value}")
        export = admin.post(
            f"/environments/{env['id']}/export",
            {"format": "csv", "scope": "view", field: value, "page": "2"},
        )
        assert api.status_code == export.status_code == 400
        assert str(escape(api.json["error"])) in export.get_data(as_text=True)
    everything = admin.post(
        f"/environments/{env['id']}/export", {"format": "csv", "scope": "all", "status": "gone"}
    )
    assert everything.status_code == 200
