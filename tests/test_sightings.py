"""The audit of a password shown names its credential: reveals, copies and former values by
id, exports by the list of the file (id ranges whose digest the sealed record holds)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from portal.audit import sightings
from portal.models import AuditEvent, Credential, CredentialSighting
from portal.platform.extensions import db


@pytest.mark.parametrize(
    ("ids", "text"),
    [
        ([], ""),
        ([5], "5"),
        ([3, 1, 2, 2], "1-3"),
        ([1, 2, 3, 7, 9, 10, 11, 12], "1-3,7,9-12"),
        ([10, 8], "8,10"),
    ],
)
def test_ids_are_kept_as_ranges(ids, text):
    assert sightings.encode(ids) == text
    ranges = sightings.decode(text)
    assert list(sightings.expand(ranges)) == sorted(set(ids))
    for n in range(0, 14):
        assert sightings.contains(ranges, n) == (n in ids)


@pytest.mark.parametrize("text", ["x", "3-1", "5,2", "1-2-3", "-4"])
def test_a_list_that_is_not_ranges_is_refused(text):
    with pytest.raises(ValueError):
        sightings.decode(text)


def _events(app, action):
    with app.app_context():
        rows = db.session.execute(
            select(AuditEvent, CredentialSighting)
            .outerjoin(CredentialSighting, CredentialSighting.event_id == AuditEvent.id)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        ).all()
        return [
            (json.loads(e.details or "{}"), e.target, s.credential_id if s else None, s)
            for e, s in rows
        ]


def _first_credentials(app, env_id, n):
    with app.app_context():
        return list(
            db.session.scalars(
                select(Credential.id)
                .where(Credential.environment_id == env_id)
                .order_by(Credential.id)
                .limit(n)
            )
        )


def test_reveals_copies_and_former_values_name_the_credential(app, admin, synced):
    _, env = synced
    one, two = _first_credentials(app, env["id"], 2)
    admin.api("POST", f"/api/v1/credentials/{one}/reveal")
    admin.api("POST", f"/api/v1/credentials/{two}/reveal", json={"purpose": "copy"})
    entry = admin.api("GET", f"/api/v1/credentials/{two}/history").json["items"][0]["id"]
    admin.api("POST", f"/api/v1/credentials/{two}/history/{entry}/reveal")

    ((details, target, indexed, _),) = _events(app, "credential.reveal")
    assert details == {"credential_id": str(one), "environment_id": str(env["id"])}
    assert indexed == one and target.startswith("sfo / ")
    ((details, _, indexed, _),) = _events(app, "credential.copy")
    assert details["credential_id"] == str(two) and indexed == two
    ((details, _, indexed, _),) = _events(app, "credential.history_reveal")
    assert details["entry"] == str(entry) and indexed == two


def test_a_reveal_of_no_password_is_audited_but_shows_nothing(app, admin, synced):
    _, env = synced
    (one,) = _first_credentials(app, env["id"], 1)
    with app.app_context():
        db.session.get(Credential, one).password_enc = None
        db.session.commit()
    admin.api("POST", f"/api/v1/credentials/{one}/reveal")
    ((details, _, indexed, sighting),) = _events(app, "credential.reveal")
    assert details["credential_id"] == str(one) and sighting is None


@pytest.mark.own_database  # an export reads on a connection of its own
def test_an_export_keeps_the_list_of_its_credentials(app, admin, synced):
    _, env = synced
    response = admin.api(
        "POST", f"/api/v1/environments/{env['id']}/export", json={"username": "root"}
    )
    assert response.status_code == 200
    rows = response.get_data(as_text=True).strip().count("\n")
    admin.api("POST", "/api/v1/credentials/export", json={"format": "xlsx"})
    (view, _, _, listed), (everything, target, _, full) = _events(app, "credential.export")
    with app.app_context():
        roots = set(
            db.session.scalars(
                select(Credential.id).where(
                    Credential.environment_id == env["id"], Credential.username.contains("root")
                )
            )
        )
        total = db.session.query(Credential).count()
    assert set(sightings.expand(sightings.decode(listed.credential_ids))) == roots
    assert view["rows"] == view["credentials"] == str(len(roots)) == str(rows)
    assert view["list_sha256"] == sightings.digest(listed.credential_ids)
    assert listed.count == len(roots) and listed.credential_id is None
    assert target == "all environments" and full.count == total == int(everything["rows"])
    assert full.credential_ids == f"1-{total}"  # one environment synced at once: one range
