"""Credentials through the API: pages, password age, reveal, history."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select
from support import PASSWORD, Portal, client_for, fetched, make_app

from portal import sync
from portal.environments.service import save_environment
from portal.models import Credential, User
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password


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


def test_search_gives_an_account_held_by_both_sources_once(app, admin):
    _check_search_of_both_sources(app, admin)


def test_search_of_both_sources_on_postgresql(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    with app.app_context():
        db.session.add(User(username="alice", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    admin = Portal(client_for(app))
    assert admin.login("alice").status_code == 302
    _check_search_of_both_sources(app, admin)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _check_search_of_both_sources(app, admin):
    """SDDC Manager and the VCF Installer hold esx-000 and esx-001 with the same password and
    esx-002 with different ones: one item each for the first two, two items for the third."""
    with app.app_context():
        env, _ = save_environment(
            {
                "name": "sfo",
                "manager": {"host": "sddc.example.net", "username": "svc", "password": "x"},
                "installer": {"host": "installer.example.net", "username": "svc", "password": "x"},
            }
        )
        db.session.commit()
        env_id = env.id
        sync.apply_fetch(env_id, "manager", fetched(4))
        installer = [replace(c, source="installer") for c in fetched(3, rotated=3)[2:]]
        installer += [replace(c, source="installer") for c in fetched(2)]
        sync.apply_fetch(env_id, "installer", installer)
        db.session.commit()
    page = admin.client.get("/api/v1/credentials?q=esx-00").json
    seen = [
        (i["hostname"][:7], i["source"], i["sources"], i["differs_from"]) for i in page["items"]
    ]
    assert page["total"] == len(seen) == 5
    assert sorted(seen) == [
        ("esx-000", "manager", ["manager", "installer"], []),
        ("esx-001", "manager", ["manager", "installer"], []),
        ("esx-002", "installer", ["installer"], ["manager"]),
        ("esx-002", "manager", ["manager"], ["installer"]),
        ("esx-003", "manager", ["manager"], []),
    ]
    # The installer's copy alone matches: it is shown, naming both sources.
    only = admin.client.get("/api/v1/credentials?q=esx-001&source=installer").json["items"]
    assert [(i["source"], i["sources"]) for i in only] == [("installer", ["manager", "installer"])]
    # Within one environment, every copy stays a row of its own.
    rows = admin.client.get(f"/api/v1/environments/{env_id}/credentials?q=esx-00").json
    assert rows["total"] == 7 and "sources" not in rows["items"][0]


def test_search_matches_every_word_in_any_field(app, admin):
    with app.app_context():
        manager = {"host": "sddc.example.net", "username": "svc", "password": "x"}
        env, _ = save_environment({"name": "words", "manager": manager})
        db.session.flush()
        for host, user, kind in (
            ("esx05.lab.example", "root", "ESXI"),
            ("esx05.lab.example", "vpxuser", "ESXI"),
            ("esx06.lab.example", "root", "ESXI"),
            ("vc01.lab.example", "root", "VCENTER"),
        ):
            db.session.add(
                Credential(
                    environment_id=env.id,
                    source="manager",
                    hostname=host,
                    username=user,
                    resource_type=kind,
                )
            )
        db.session.commit()

    def found(q: str) -> list[tuple[str, str]]:
        items = admin.client.get("/api/v1/credentials", query_string={"q": q}).json["items"]
        return sorted((i["hostname"], i["username"]) for i in items)

    assert found("esx05 root") == [("esx05.lab.example", "root")]
    assert found("ROOT   esx05") == [("esx05.lab.example", "root")]
    assert found("root esxi") == [("esx05.lab.example", "root"), ("esx06.lab.example", "root")]
    assert found('"esx05 root"') == []  # a quoted phrase stays one piece
    assert found("vcenter root lab") == [("vc01.lab.example", "root")]
    assert len(found("lab")) == 4
