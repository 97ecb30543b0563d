"""Who saw what (portal.audit.seen): a person's reveals, copies, former values and exports of a
period, one item per credential; who saw a credential's password since it last changed; older
records read by name, older exports estimated; the CSV file."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from support import create_env, run_sync

from portal import audit
from portal.audit import seen, shown
from portal.models import AuditEvent, Credential, CredentialSighting, PasswordHistory, PortalMeta
from portal.platform import clock
from portal.platform.extensions import db
from portal.simulator import Simulator


@pytest.fixture
def lab(app, admin):
    """Two environments of one simulator (40 credentials each), synced."""
    with Simulator(credentials=40, seed=3) as sim:
        sfo = create_env(admin, sim, name="sfo")
        lon = create_env(admin, sim, name="lon")
        run_sync(app, admin, sfo["id"])
        run_sync(app, admin, lon["id"])
        yield sim, sfo["id"], lon["id"]


def _ids(app, env_id, n=None, **where):
    with app.app_context():
        query = select(Credential.id).where(Credential.environment_id == env_id)
        for name, value in where.items():
            query = query.where(getattr(Credential, name) == value)
        return list(db.session.scalars(query.order_by(Credential.id).limit(n)))


def _report(app, person="bob", since=None, until=None, scope=None):
    with app.app_context():
        return seen.report(person, since, until, scope)


def _by_id(report):
    return {item["credential_id"]: item for item in report["items"]}


def _current_entry(client, cred_id):
    items = client.api("GET", f"/api/v1/credentials/{cred_id}/history").json["items"]
    return next(entry["id"] for entry in items if entry["current"])


def _reveal(client, cred_id, purpose=None):
    body = {"purpose": purpose} if purpose else {}
    assert client.api("POST", f"/api/v1/credentials/{cred_id}/reveal", json=body).status_code == 200


@pytest.mark.own_database  # exports read on a connection of their own
def test_the_report_lists_exactly_what_the_person_saw(app, admin, readonly, lab):
    _, sfo, lon = lab
    a, b, c, d = _ids(app, sfo, 4)
    clock.offset = timedelta(days=-3)
    _reveal(readonly, a)
    clock.offset = timedelta(0)
    _reveal(readonly, a)
    _reveal(readonly, b, "copy")
    readonly.api("POST", f"/api/v1/credentials/{c}/history/{_current_entry(readonly, c)}/reveal")
    exported = readonly.api("POST", f"/api/v1/environments/{lon}/export", json={"username": "root"})
    assert exported.status_code == 200
    _reveal(admin, d)  # someone else

    report = _report(app)
    roots = set(_ids(app, lon, username="root"))
    items = _by_id(report)
    assert set(items) == {a, b, c} | roots and roots
    assert report["records"] == {"reveal": 2, "copy": 1, "former": 1, "export": 1}
    with app.app_context():
        cred = db.session.get(Credential, a)
        assert items[a]["hostname"] == cred.hostname and items[a]["username"] == cred.username
        assert items[a]["credential_type"] == cred.credential_type
    assert items[a]["environment"] == "sfo" and items[a]["environment_id"] == sfo
    assert items[a]["ways"] == ["reveal"] and items[a]["times"] == 2
    assert items[a]["first_shown_at"] < items[a]["last_shown_at"]
    assert items[b]["ways"] == ["copy"] and items[c]["ways"] == ["former"]
    assert all(items[n]["ways"] == ["export"] for n in roots)
    assert all(i["basis"] == "recorded" and i["still_current"] for i in report["items"])
    assert [i["environment"] for i in report["items"]] == sorted(
        i["environment"] for i in report["items"]
    )

    today = clock.now().date()
    assert set(_by_id(_report(app, since=today))) == {a, b, c} | roots
    assert _by_id(_report(app, since=today))[a]["times"] == 1
    assert set(_by_id(_report(app, until=today - timedelta(days=1)))) == {a}
    assert _report(app, since=today + timedelta(days=1))["items"] == []
    assert set(_by_id(_report(app, "alice"))) == {d}


def test_managers_see_their_environments_only(app, readonly, lab):
    _, sfo, lon = lab
    (a,) = _ids(app, sfo, 1)
    (z,) = _ids(app, lon, 1)
    _reveal(readonly, a)
    _reveal(readonly, z)
    assert set(_by_id(_report(app, scope={lon}))) == {z}
    assert _report(app, scope=set())["items"] == []
    assert _report(app, scope={lon})["records"]["reveal"] == 1


def _legacy(app, *records):
    """Records as the portal wrote them before they named credentials by id."""
    with app.app_context():
        for action, target, details in records:
            audit.record(action, target, details=details, actor="bob")
        db.session.flush()
        newest = db.session.scalar(select(func.max(AuditEvent.id)))
        db.session.merge(PortalMeta(key=shown.LEGACY_META, value=str(newest)))
        db.session.commit()


def _target(app, cred_id, environment="sfo"):
    with app.app_context():
        cred = db.session.get(Credential, cred_id)
        return f"{environment} / {cred.hostname} / {cred.username} ({cred.credential_type})"


def test_older_records_are_read_by_name_and_older_exports_estimated(app, admin, lab):
    _, sfo, lon = lab
    a, b = _ids(app, sfo, 2)
    with app.app_context():
        entry = db.session.scalar(
            select(PasswordHistory.id).where(PasswordHistory.credential_id == b)
        )
    _legacy(
        app,
        ("credential.reveal", _target(app, a), None),
        ("credential.history_reveal", _target(app, b), {"entry": entry}),
        ("credential.reveal", "gone / esx-9 / root (SSH)", None),
        ("credential.export", "lon", {"format": "csv", "scope": "view", "rows": 3}),
        ("credential.copy", _target(app, a), None),
    )
    report = _report(app)
    items = _by_id(report)
    assert items[a]["basis"] == "by_name" and items[a]["ways"] == ["reveal", "copy"]
    assert items[b]["basis"] == "recorded" and items[b]["ways"] == ["former"]
    lon_ids = set(_ids(app, lon))
    assert lon_ids <= set(items) and all(items[n]["basis"] == "estimated" for n in lon_ids)
    (unmatched,) = [i for i in report["items"] if i["status"] == "unmatched"]
    assert unmatched["target"] == "gone / esx-9 / root (SSH)" and unmatched["credential_id"] is None
    assert unmatched["still_current"] is None
    assert all(i["status"] != "unmatched" for i in _report(app, scope={sfo, lon})["items"])

    with app.app_context():
        by = seen.seen_by(db.session.get(Credential, a))["items"]
        assert [(i["person"], i["basis"], i["ways"]) for i in by] == [
            ("bob", "by_name", ["reveal", "copy"])
        ]
        by_lon = seen.seen_by(db.session.get(Credential, sorted(lon_ids)[0]))["items"]
        assert [(i["person"], i["basis"]) for i in by_lon] == [("bob", "estimated")]


@pytest.mark.own_database  # exports read on a connection of their own
def test_an_export_list_changed_in_the_database_counts_as_estimated(app, readonly, lab):
    _, sfo, _ = lab
    readonly.api("POST", f"/api/v1/environments/{sfo}/export", json={"username": "root"})
    roots = set(_ids(app, sfo, username="root"))
    everything = set(_ids(app, sfo))
    assert set(_by_id(_report(app))) == roots
    with app.app_context():
        sighting = db.session.scalar(select(CredentialSighting))
        sighting.credential_ids = str(min(roots))  # a shorter list than the sealed digest says
        db.session.commit()
    items = _by_id(_report(app))
    assert set(items) == everything and {i["basis"] for i in items.values()} == {"estimated"}


def test_who_saw_a_password_resets_when_it_changes(app, admin, readonly, lab):
    sim, sfo, _ = lab
    a, b = _ids(app, sfo, 2)
    _reveal(readonly, a)
    _reveal(admin, a, "copy")
    _reveal(readonly, b)
    with app.app_context():
        by = seen.seen_by(db.session.get(Credential, a))
    assert {i["person"]: i["ways"] for i in by["items"]} == {"bob": ["reveal"], "alice": ["copy"]}

    clock.offset = timedelta(seconds=2)
    sim.rotate(1.0)
    run_sync(app, admin, sfo)
    with app.app_context():
        changed = db.session.get(Credential, a)
        assert seen.seen_by(changed)["items"] == []
        assert seen.seen_by(changed)["since"] == clock.iso(changed.last_changed_at)
    former = admin.api("GET", f"/api/v1/credentials/{a}/history").json["items"][-1]["id"]
    readonly.api("POST", f"/api/v1/credentials/{a}/history/{former}/reveal")  # the old value
    _reveal(readonly, b, "copy")
    with app.app_context():
        assert seen.seen_by(db.session.get(Credential, a))["items"] == []
        by_b = seen.seen_by(db.session.get(Credential, b))["items"]
    assert [(i["person"], i["ways"]) for i in by_b] == [("bob", ["copy"])]
    items = _by_id(_report(app))
    assert items[a]["still_current"] is False and items[a]["ways"] == ["reveal", "former"]
    assert items[b]["still_current"] is True


def test_the_csv_has_every_item_with_formulas_neutralised(app, readonly, lab):
    _, sfo, _ = lab
    a, b = _ids(app, sfo, 2)
    with app.app_context():
        db.session.get(Credential, a).hostname = "=HYPERLINK(1)"
        db.session.commit()
    _reveal(readonly, a)
    _reveal(readonly, b, "copy")
    report = _report(app)
    text = b"".join(seen.csv_chunks(report["items"])).decode()
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == list(seen.CSV_COLUMNS) and len(rows) == 3
    hosts = {row[1] for row in rows[1:]}
    assert "'=HYPERLINK(1)" in hosts
    copy = next(row for row in rows[1:] if row[6] == "copy")
    item = _by_id(report)[b]
    assert copy[:4] == ["sfo", item["hostname"], item["username"], item["credential_type"]]
    assert copy[9] == item["last_shown_at"][:19].replace("T", " ")
    assert copy[10:12] == ["yes", "recorded"]


def test_service_account_passwords_exported_are_listed(app, admin):
    from support import PASSWORD

    body = {"include_passwords": True, "confirm_password": PASSWORD}
    assert (
        admin.api("POST", "/api/v1/environments/definitions/export", json=body).status_code == 200
    )
    admin.client.get("/api/v1/environments/definitions")  # without passwords: not listed
    with app.app_context():
        found = seen.report("alice", date(2000, 1, 1), None, None)["definitions_exports"]
        assert seen.report("alice", None, None, {1})["definitions_exports"] == []
    assert len(found) == 1 and found[0].endswith("Z")


def test_who_saw_what_on_postgresql(tmp_path, pg_url):
    """The report, "seen by", the CSV and the rotation plan in PostgreSQL's SQL."""
    from support import PASSWORD, Portal, client_for, make_app

    from portal.lifecycle import seen_rotation
    from portal.models import User
    from portal.platform.security import hash_password

    app = make_app(tmp_path, DATABASE_URL=pg_url)
    with app.app_context():
        for name, role in (("alice", "admin"), ("bob", "readonly")):
            db.session.add(User(username=name, role=role, password_hash=hash_password(PASSWORD)))
        db.session.commit()
    admin, bob = Portal(client_for(app)), Portal(client_for(app))
    assert admin.login("alice").status_code == 302 and bob.login("bob").status_code == 302
    try:
        with Simulator(credentials=30, seed=3) as sim:
            env = create_env(admin, sim)["id"]
            run_sync(app, admin, env)
            a, b = _ids(app, env, 2)
            _reveal(bob, a)
            _reveal(bob, b, "copy")
            assert bob.api("POST", f"/api/v1/environments/{env}/export", json={}).status_code == 200
            _legacy(app, ("credential.reveal", _target(app, a), None))
            with app.app_context():
                report = seen.report("bob", None, None, None)
                assert {i["credential_id"] for i in report["items"]} == set(_ids(app, env))
                assert report["records"] == {"reveal": 2, "copy": 1, "former": 0, "export": 1}
                by = seen.seen_by(db.session.get(Credential, a))["items"]
                assert [(i["person"], i["ways"], i["basis"]) for i in by] == [
                    ("bob", ["reveal", "export"], "recorded")
                ]
                plan = seen_rotation.plan("bob", None, None, None, None)
                assert plan.counts()["planned"] == 30 and len(plan.batches) == 1
            rows = b"".join(seen.csv_chunks(report["items"])).decode().splitlines()
            assert len(rows) == 31
    finally:
        with app.app_context():
            db.engine.dispose()
