"""The credential list service: one filters model for the API pages and the exports."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from portal.platform.extensions import db
from portal.vault import credentials
from portal.vault.credentials import CredentialFilters


def test_filters_are_stripped_and_checked_once():
    filters = CredentialFilters.model_validate(
        {"hostname": " esx ", "status": "absent", "sort": "-username", "csrf_token": "x"}
    )
    assert (filters.hostname, filters.status, filters.sort) == ("esx", "absent", "-username")
    assert CredentialFilters().sort == "hostname"
    for bad in ({"status": "gone"}, {"sort": "password_enc"}, {"sort": "-bogus"}):
        with pytest.raises(ValidationError):
            CredentialFilters.model_validate(bad)


def test_pages_and_exports_read_the_same_filters(app, synced):
    _, env = synced
    filters = CredentialFilters(resource_type="ESXI", sort="-hostname")
    with app.app_context():
        page = credentials.credentials_page(env["id"], filters, 1, 500)
        rows = db.session.execute(credentials.export_query(env["id"], filters)).all()
        absent = credentials.credentials_page(None, CredentialFilters(status="absent"), 1, 50)
    hosts = [item["hostname"] for item in page["items"]]
    assert hosts and hosts == sorted(hosts, reverse=True)
    assert all(item["resource_type"] == "ESXI" for item in page["items"])
    assert page["total"] == len(rows) == len(hosts)
    assert [row[1] for row in rows] == hosts
    assert absent["total"] == 0
