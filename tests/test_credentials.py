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


@pytest.mark.own_database  # read on a connection of its own, as an export's rows are
def test_dual_control_reads_the_view_in_batches_by_id(app, synced):
    """The rows an export's dual-control check reads come in batches, each id once, the
    view's filters applied."""
    _, env = synced
    filters = CredentialFilters(resource_type="ESXI", sort="-hostname")
    with app.app_context():
        wanted = [
            row.id for row in db.session.execute(credentials.export_query(env["id"], filters))
        ]
        batches = list(credentials.gate_rows(env["id"], filters, batch=3))
    ids = [row.id for batch in batches for row in batch]
    assert len(wanted) > 6 and len(batches) == -(-len(wanted) // 3)
    assert all(len(batch) <= 3 for batch in batches)
    assert sorted(ids) == sorted(wanted) and len(set(ids)) == len(ids)
