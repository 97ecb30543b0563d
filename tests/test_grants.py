"""Roles through groups, grants per environment, and every place filtered by them."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from support import PASSWORD, Portal, client_for, create_env

from portal.access import grants
from portal.models import AuditEvent, Credential, Environment, Group, User
from portal.platform.extensions import db
from portal.platform.security import hash_password


@pytest.fixture
def two(app, admin, sim):
    """Environments "sfo" and "lax", one credential each; members erin and frank."""
    ids = {}
    for name in ("sfo", "lax"):
        ids[name] = create_env(admin, sim, name=name)["id"]
    with app.app_context():
        for name in ("erin", "frank"):
            db.session.add(
                User(username=name, role="member", password_hash=hash_password(PASSWORD))
            )
        for name, env_id in ids.items():
            db.session.add(
                Credential(
                    environment_id=env_id,
                    source="manager",
                    hostname=f"esx-{name}",
                    username="root",
                    expiry_date="2000-01-01T00:00:00Z",
                )
            )
        db.session.commit()
    return ids


def _signed_in(app, username):
    portal = Portal(client_for(app))
    assert portal.login(username).status_code == 302
    return portal


def _put_grants(admin, env_id, entries):
    response = admin.api("PUT", f"/api/v1/environments/{env_id}/grants", json=entries)
    assert response.status_code == 200, response.json
    return response.json


def _env_names(portal):
    return sorted(e["name"] for e in portal.client.get("/api/v1/environments").json["items"])


def test_a_member_without_grants_sees_nothing_and_gets_404(app, admin, two):
    erin = _signed_in(app, "erin")
    assert _env_names(erin) == []
    sfo = two["sfo"]
    for path in (
        f"/api/v1/environments/{sfo}",
        f"/api/v1/environments/{sfo}/credentials",
        f"/api/v1/environments/{sfo}/password-age",
        f"/api/v1/environments/{sfo}/sync-runs",
        f"/environments/{sfo}",
    ):
        assert erin.client.get(path).status_code == 404, path
    # The same answer as for an environment that does not exist.
    assert (
        erin.client.get("/api/v1/environments/999999").json
        == erin.client.get(f"/api/v1/environments/{sfo}").json
    )
    assert erin.client.get("/api/v1/credentials").json["total"] == 0
    assert erin.client.get("/api/v1/scheduler").json["jobs"] == []
    assert erin.post("/export", data={"format": "csv", "scope": "all"}).status_code == 403


def test_grants_filter_every_list(app, admin, two):
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "view"}])
    erin = _signed_in(app, "erin")
    assert _env_names(erin) == ["sfo"]
    found = erin.client.get("/api/v1/credentials").json
    assert [c["hostname"] for c in found["items"]] == ["esx-sfo"]
    jobs = erin.client.get("/api/v1/scheduler").json["jobs"]
    assert {j["environment_id"] for j in jobs} == {two["sfo"]}
    runs = admin.client.get(f"/api/v1/environments/{two['lax']}/sync-runs").json["items"]
    assert runs and erin.client.get(f"/api/v1/sync-runs/{runs[0]['id']}").status_code == 404
    home = erin.client.get("/").get_data(as_text=True)
    assert "lax" not in home
    assert erin.client.get(f"/api/v1/environments/{two['lax']}/credentials").status_code == 404


def test_view_level_never_reveals_or_exports(app, admin, two):
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "view"}])
    erin = _signed_in(app, "erin")
    cred = erin.client.get(f"/api/v1/environments/{two['sfo']}/credentials").json["items"][0]
    assert erin.client.get(f"/api/v1/credentials/{cred['id']}/history").status_code == 200
    assert erin.api("POST", f"/api/v1/credentials/{cred['id']}/reveal").status_code == 403
    assert erin.api("POST", f"/api/v1/credentials/{cred['id']}/history/1/reveal").status_code == 403
    export = erin.api("POST", f"/api/v1/environments/{two['sfo']}/export", json={})
    assert export.status_code == 403
    assert erin.api("POST", "/api/v1/credentials/export", json={}).status_code == 403
    assert erin.api("POST", f"/api/v1/environments/{two['sfo']}/sync").status_code == 403


@pytest.mark.own_database  # an export reads on a connection of its own
def test_export_across_environments_holds_only_revealable_ones(app, admin, two):
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "reveal"}])
    _put_grants(admin, two["lax"], [{"subject": "user:erin", "level": "view"}])
    erin = _signed_in(app, "erin")
    for response in (
        erin.api("POST", "/api/v1/credentials/export", json={"format": "csv"}),
        erin.post("/export", data={"format": "csv", "scope": "all"}),
    ):
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
        assert [r[1] for r in rows[1:]] == ["esx-sfo"]


def test_manage_level_syncs_and_edits_but_does_not_delete(app, admin, two):
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "manage"}])
    erin = _signed_in(app, "erin")
    sfo = two["sfo"]
    assert (
        erin.api(
            "POST", f"/api/v1/environments/{sfo}/pause", json={"source": "manager"}
        ).status_code
        == 200
    )
    assert (
        erin.api("PATCH", f"/api/v1/environments/{sfo}", json={"description": "x"}).status_code
        == 200
    )
    assert erin.client.get(f"/environments/{sfo}/edit").status_code == 200
    assert erin.api("DELETE", f"/api/v1/environments/{sfo}").status_code == 403
    assert erin.client.get(f"/api/v1/environments/{sfo}/grants").status_code == 403
    assert erin.api("PATCH", f"/api/v1/environments/{two['lax']}", json={}).status_code == 404


def test_auditor_sees_metadata_and_the_audit_log_never_a_password(app, admin, two):
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "frank")).role = "auditor"
        db.session.commit()
    frank = _signed_in(app, "frank")
    assert _env_names(frank) == ["lax", "sfo"]
    assert frank.client.get("/audit/").status_code == 200
    cred = frank.client.get("/api/v1/credentials").json["items"][0]
    assert frank.api("POST", f"/api/v1/credentials/{cred['id']}/reveal").status_code == 403
    assert frank.api("POST", "/api/v1/credentials/export", json={}).status_code == 403
    assert frank.post("/export", data={"format": "csv", "scope": "all"}).status_code == 403
    assert frank.client.get("/api/v1/me").json["role"] == "auditor"


def test_group_grants_and_role_mappings_follow_membership_at_once(app, admin, two):
    created = admin.api("POST", "/api/v1/groups", json={"name": "team-sfo", "members": ["erin"]})
    assert created.status_code == 201 and created.json["members"] == ["erin"]
    group_id = created.json["id"]
    _put_grants(admin, two["sfo"], [{"subject": "group:team-sfo", "level": "reveal"}])
    erin = _signed_in(app, "erin")
    assert _env_names(erin) == ["sfo"]
    cred = erin.client.get("/api/v1/credentials").json["items"][0]
    assert erin.api("POST", f"/api/v1/credentials/{cred['id']}/reveal").status_code == 200

    mapped = admin.api("PATCH", f"/api/v1/groups/{group_id}", json={"role": "admin"})
    assert mapped.status_code == 200
    assert erin.client.get("/users/").status_code == 200
    assert erin.client.get("/api/v1/me").json["role"] == "admin"
    roles = {u["username"]: u for u in admin.client.get("/api/v1/users").json["items"]}
    assert roles["erin"]["role"] == "member" and roles["erin"]["effective_role"] == "admin"

    removed = admin.api("PATCH", f"/api/v1/groups/{group_id}", json={"members": []})
    assert removed.status_code == 200
    # The very next request of the same session has lost both the role and the grant.
    assert erin.client.get("/users/").status_code == 403
    assert _env_names(erin) == []
    assert erin.api("POST", f"/api/v1/credentials/{cred['id']}/reveal").status_code == 404


def test_an_api_token_has_exactly_its_owners_grants(app, admin, two):
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "reveal"}])
    erin = _signed_in(app, "erin")
    made = erin.api(
        "POST", "/api/v1/me/tokens", json={"name": "s", "scope": "admin", "expires_in_days": 1}
    )
    assert made.status_code == 201
    script = app.test_client(use_cookies=False)
    script.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    bearer = {"Authorization": f"Bearer {made.json['token']}"}
    listed = script.get("/api/v1/environments", headers=bearer).json["items"]
    assert [e["name"] for e in listed] == ["sfo"]
    cred = script.get("/api/v1/credentials", headers=bearer).json["items"][0]
    assert (
        script.post(f"/api/v1/credentials/{cred['id']}/reveal", headers=bearer).status_code == 200
    )
    assert script.get(f"/api/v1/environments/{two['lax']}", headers=bearer).status_code == 404
    sync = script.post(f"/api/v1/environments/{two['sfo']}/sync", headers=bearer)
    assert sync.status_code == 403
    # Taking the grant away ends the token's access with it.
    _put_grants(admin, two["sfo"], [])
    assert script.get(f"/api/v1/environments/{two['sfo']}", headers=bearer).status_code == 404


def test_grant_and_group_changes_are_audited_with_before_and_after(app, admin, two):
    admin.api("POST", "/api/v1/groups", json={"name": "ops"})
    _put_grants(admin, two["sfo"], [{"subject": "group:ops", "level": "view"}])
    after = _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "manage"}])
    assert after == [{"subject": "user:erin", "level": "manage"}]
    assert admin.client.get(f"/api/v1/environments/{two['sfo']}/grants").json == after
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "environment.grants")
        ).all()
        details = json.loads(events[-1].details)
    assert details["before"] == "group:ops=view"
    assert details["after"] == "user:erin=manage"


@pytest.mark.parametrize(
    "body",
    [
        [{"subject": "user:nobody", "level": "view"}],
        [{"subject": "role:admin", "level": "view"}],
        [{"subject": "user:erin", "level": "own"}],
        [{"subject": "user:erin", "level": "view"}, {"subject": "user:erin", "level": "manage"}],
        {"subject": "user:erin", "level": "view"},
    ],
)
def test_bad_grants_are_refused(app, admin, two, body):
    response = admin.api("PUT", f"/api/v1/environments/{two['sfo']}/grants", json=body)
    assert response.status_code in (400, 422)
    assert admin.client.get(f"/api/v1/environments/{two['sfo']}/grants").json == []


def test_effective_role_is_the_highest_of_own_and_groups(app, two):
    with app.app_context():
        erin = db.session.scalar(select(User).where(User.username == "erin"))
        assert grants.effective_role(erin) == "member"
        auditors = Group(name="auditors", role="auditor")
        readers = Group(name="readers", role="readonly")
        erin.groups = [auditors, readers]
        db.session.commit()
        assert grants.effective_role(erin) == "readonly"
        assert grants.visible_environment_ids(erin, "reveal") is None
        erin.groups = [auditors]
        assert grants.effective_role(erin) == "auditor"
        assert grants.visible_environment_ids(erin, "view") is None
        assert grants.visible_environment_ids(erin, "reveal") == set()
        assert grants.level(erin, 999999) is None


def test_a_manager_cannot_learn_hidden_names_by_renaming(app, admin, two):
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "manage"}])
    erin = _signed_in(app, "erin")
    url = f"/api/v1/environments/{two['sfo']}"
    answers = [
        erin.api("PATCH", url, json={"name": name})
        for name in ("lax", "LAX", "never-used-name")  # hidden, hidden in other case, unused
    ]
    assert {a.status_code for a in answers} == {403}
    assert len({(a.json["error"], str(a.json["details"])) for a in answers}) == 1
    # The same name in another case, and the other fields, stay theirs to change.
    same = erin.api("PATCH", url, json={"name": "SFO", "description": "west"})
    assert same.status_code == 200 and same.json["name"] == "SFO"
    assert "readonly" in erin.client.get(f"/environments/{two['sfo']}/edit").get_data(as_text=True)


def test_environment_names_are_unique_in_any_case(app, admin, two):
    clash = admin.api("PATCH", f"/api/v1/environments/{two['sfo']}", json={"name": "Lax"})
    assert clash.status_code == 422
    assert clash.json["details"] == {"name": "Another environment has this name."}
    made = admin.api(
        "POST", "/api/v1/environments", json={"name": " SFO ", "manager": None, "installer": None}
    )
    assert made.status_code == 422 and "name" in made.json["details"]
    with app.app_context():  # the database holds the rule too, whoever writes
        db.session.add(Environment(name="LAX"))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_the_level_is_checked_before_the_body(app, admin, two):
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "view"}])
    erin = _signed_in(app, "erin")
    bad = {"source": "nonsense", "unknown": 1}
    for path in ("pause", "resume", "sync", "export"):
        hidden = erin.api("POST", f"/api/v1/environments/{two['lax']}/{path}", json=bad)
        assert hidden.status_code == 404, (path, hidden.json)
        low = erin.api("POST", f"/api/v1/environments/{two['sfo']}/{path}", json=bad)
        assert low.status_code == 403, (path, low.json)


def test_the_export_button_is_offered_only_with_reveal_somewhere(app, admin, two):
    erin = _signed_in(app, "erin")
    assert 'id="export-open"' not in erin.client.get("/").get_data(as_text=True)
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "view"}])
    assert 'id="export-open"' not in erin.client.get("/").get_data(as_text=True)
    _put_grants(admin, two["sfo"], [{"subject": "user:erin", "level": "reveal"}])
    assert 'id="export-open"' in erin.client.get("/").get_data(as_text=True)
    assert 'id="export-open"' in admin.client.get("/").get_data(as_text=True)
