"""Who saw what through the API: a person's report as JSON and CSV, a credential's "seen by",
and who may read them (auditors, admins, managers of the environment; never read-only users
or members)."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select
from support import PASSWORD, Portal, client_for, create_env, run_sync

from portal.audit import seen
from portal.models import AuditEvent, Credential, EnvironmentGrant, User
from portal.platform.extensions import db
from portal.platform.security import hash_password
from portal.simulator import Simulator


@pytest.fixture
def lab(app, admin):
    """Two environments of one simulator, synced; carol (auditor), dave and erin (members)."""
    with Simulator(credentials=30, seed=11) as sim:
        sfo = create_env(admin, sim, name="sfo")
        lon = create_env(admin, sim, name="lon")
        run_sync(app, admin, sfo["id"])
        run_sync(app, admin, lon["id"])
        with app.app_context():
            for name, role in (("carol", "auditor"), ("dave", "member"), ("erin", "member")):
                db.session.add(
                    User(username=name, role=role, password_hash=hash_password(PASSWORD))
                )
            db.session.commit()
        yield sfo["id"], lon["id"]


def _signed_in(app, username):
    portal = Portal(client_for(app))
    assert portal.login(username).status_code == 302
    return portal


def _ids(app, env_id, n=None, **where):
    with app.app_context():
        query = select(Credential.id).where(Credential.environment_id == env_id)
        for name, value in where.items():
            query = query.where(getattr(Credential, name) == value)
        return list(db.session.scalars(query.order_by(Credential.id).limit(n)))


def _csv(response):
    text = response.get_data(as_text=True)
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


@pytest.mark.own_database  # the export reads on a connection of its own
def test_the_report_as_json_and_csv(app, admin, readonly, lab):
    sfo, lon = lab
    a, b = _ids(app, sfo, 2)
    readonly.api("POST", f"/api/v1/credentials/{a}/reveal")
    readonly.api("POST", f"/api/v1/credentials/{b}/reveal", json={"purpose": "copy"})
    assert (
        readonly.api(
            "POST", f"/api/v1/environments/{lon}/export", json={"username": "root"}
        ).status_code
        == 200
    )
    admin.api("POST", f"/api/v1/credentials/{b}/reveal")
    expected = {a, b} | set(_ids(app, lon, username="root"))

    answer = admin.client.get("/api/v1/audit/seen?person=bob&per_page=1000")
    assert answer.status_code == 200
    body = answer.json
    assert {i["credential_id"] for i in body["items"]} == expected
    assert body["total"] == len(expected) and body["person"] == "bob"
    assert body["records"] == {"reveal": 1, "copy": 1, "former": 0, "export": 1}
    with app.app_context():
        assert body["items"] == seen.report("bob", None, None, None)["items"]
    first = admin.client.get("/api/v1/audit/seen?person=bob&per_page=2&page=1").json
    second = admin.client.get("/api/v1/audit/seen?person=bob&per_page=2&page=2").json
    paged = first["items"] + second["items"]
    assert paged == body["items"][: len(paged)] and len(paged) == min(4, len(expected))
    assert first["total"] == len(expected)

    download = admin.client.get("/api/v1/audit/seen.csv?person=bob")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert "no-store" in download.headers["Cache-Control"]
    assert 'filename="vcf-portal-seen_bob_' in download.headers["Content-Disposition"]
    rows = _csv(download)
    assert rows[0] == list(seen.CSV_COLUMNS) and len(rows) == len(expected) + 1
    for row, item in zip(rows[1:], body["items"], strict=True):
        assert row[:4] == [
            item["environment"],
            item["hostname"],
            item["username"],
            item["credential_type"],
        ]
        assert row[6] == " ".join(item["ways"]) and row[7] == str(item["times"])
    with app.app_context():
        (exported,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "audit.export")
        ).all()
        assert exported.actor == "alice" and exported.target == "who saw what: bob"


def test_who_saw_a_credential(app, admin, readonly, lab):
    sfo, _ = lab
    (a,) = _ids(app, sfo, 1)
    readonly.api("POST", f"/api/v1/credentials/{a}/reveal")
    readonly.api("POST", f"/api/v1/credentials/{a}/reveal", json={"purpose": "copy"})
    body = admin.client.get(f"/api/v1/credentials/{a}/seen-by").json
    assert [(i["person"], i["ways"], i["times"], i["basis"]) for i in body["items"]] == [
        ("bob", ["reveal", "copy"], 2, "recorded")
    ]
    assert body["since"].endswith("Z")
    assert admin.client.get("/api/v1/credentials/999999/seen-by").status_code == 404


def test_who_may_read_it(app, admin, readonly, lab):
    sfo, lon = lab
    (a,) = _ids(app, sfo, 1)
    (z,) = _ids(app, lon, 1)
    readonly.api("POST", f"/api/v1/credentials/{a}/reveal")
    readonly.api("POST", f"/api/v1/credentials/{z}/reveal")
    for refused in (readonly, _signed_in(app, "dave")):
        assert refused.client.get("/api/v1/audit/seen?person=bob").status_code == 403
        assert refused.client.get("/api/v1/audit/seen.csv?person=bob").status_code == 403
    assert readonly.client.get(f"/api/v1/credentials/{a}/seen-by").status_code == 403
    assert _signed_in(app, "dave").client.get(f"/api/v1/credentials/{a}/seen-by").status_code == 404

    carol = _signed_in(app, "carol")  # the auditor: everything
    assert len(carol.client.get("/api/v1/audit/seen?person=bob").json["items"]) == 2
    assert carol.client.get(f"/api/v1/credentials/{a}/seen-by").status_code == 200

    with app.app_context():
        erin = db.session.scalar(select(User.id).where(User.username == "erin"))
        db.session.add(EnvironmentGrant(environment_id=lon, user_id=erin, level="manage"))
        db.session.add(EnvironmentGrant(environment_id=sfo, user_id=erin, level="reveal"))
        db.session.commit()
    manager = _signed_in(app, "erin")  # manages lon, reveals in sfo
    items = manager.client.get("/api/v1/audit/seen?person=bob").json["items"]
    assert [i["credential_id"] for i in items] == [z]
    rows = _csv(manager.client.get("/api/v1/audit/seen.csv?person=bob"))
    assert len(rows) == 2
    assert manager.client.get(f"/api/v1/credentials/{z}/seen-by").status_code == 200
    assert manager.client.get(f"/api/v1/credentials/{a}/seen-by").status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "",
        "person=",
        "person=" + "x" * 129,
        "person=b%00ob",
        "person=b%0Aob",
        "person=bob&since=yesterday",
        "person=bob&since=2026-02-30",
        "person=bob&since=2026-03-02&until=2026-03-01",
        "person=bob&until=9999-12-31",
        "person=bob&page=0",
        "person=bob&per_page=1001",
    ],
)
def test_a_bad_query_answers_400(admin, query):
    paths = ["/api/v1/audit/seen"] + ([] if "page" in query else ["/api/v1/audit/seen.csv"])
    for path in paths:
        response = admin.client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        assert response.json["error"]


def test_one_day_is_a_whole_utc_day(admin):
    answer = admin.client.get("/api/v1/audit/seen?person=bob&since=2026-03-01&until=2026-03-01")
    assert answer.status_code == 200
    assert answer.json["since"] == answer.json["until"] == "2026-03-01"
    assert answer.json["items"] == [] and answer.json["total"] == 0
