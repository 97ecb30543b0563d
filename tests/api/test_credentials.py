"""Credentials through the API: pages, password age, reveal, history."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Credential


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


def test_filters_sort_and_their_errors(admin, synced):
    _, env = synced
    url = f"/api/v1/environments/{env['id']}/credentials"
    page = admin.client.get(f"{url}?resource_type=ESXI&sort=-hostname&status=present&q=+").json
    hosts = [item["hostname"] for item in page["items"]]
    assert hosts and hosts == sorted(hosts, reverse=True)
    assert all(item["resource_type"] == "ESXI" for item in page["items"])
    assert admin.client.get(f"{url}?status=+absent+").json["total"] == 0
    for field, value in (("status", "gone"), ("sort", "password_enc"), ("sort", "-")):
        bad = admin.client.get(f"{url}?{field}={value}")
        if value == "-":  # a bare minus: the default column, descending
            assert bad.status_code == 200
            continue
        assert bad.status_code == 400 and field in bad.json["details"], bad.json
