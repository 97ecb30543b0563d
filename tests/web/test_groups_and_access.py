"""The Users page's groups and the environment page's Access tab."""

from __future__ import annotations

from sqlalchemy import select
from support import PASSWORD, Portal, client_for, create_env

from portal.models import Group, User
from portal.platform.extensions import db
from portal.platform.security import hash_password


def _add_member_user(app, name="erin"):
    with app.app_context():
        db.session.add(User(username=name, role="member", password_hash=hash_password(PASSWORD)))
        db.session.commit()


def test_groups_on_the_users_page(app, admin):
    _add_member_user(app)
    assert admin.post("/users/groups", {"name": "ops", "role": "auditor"}).status_code == 302
    with app.app_context():
        group_id = db.session.scalar(select(Group.id).where(Group.name == "ops"))
        erin_id = db.session.scalar(select(User.id).where(User.username == "erin"))
    page = admin.client.get("/users/").get_data(as_text=True)
    assert 'id="groups-table"' in page and 'for="new-group-name"' in page
    added = admin.post(f"/users/groups/{group_id}/members", {"username": "erin"})
    assert added.status_code == 302
    erin = Portal(client_for(app))
    assert erin.login("erin").status_code == 302
    assert erin.client.get("/audit/").status_code == 200
    page = admin.client.get("/users/").get_data(as_text=True)
    assert "(through a group: auditor)" in page
    removed = admin.post(f"/users/groups/{group_id}/members/{erin_id}/remove")
    assert removed.status_code == 302
    assert erin.client.get("/audit/").status_code == 403
    assert admin.post(f"/users/groups/{group_id}/role", {"role": "boss"}).status_code == 409
    assert admin.post(f"/users/groups/{group_id}/delete").status_code == 302
    with app.app_context():
        assert db.session.get(Group, group_id) is None


def test_access_tab_edits_grants(app, admin, readonly, sim):
    _add_member_user(app)
    env = create_env(admin, sim)
    page = admin.client.get(f"/environments/{env['id']}").get_data(as_text=True)
    assert 'id="tab-access"' in page and 'for="access-new-subject"' in page
    assert 'id="tab-access"' not in readonly.client.get(f"/environments/{env['id']}").get_data(
        as_text=True
    )
    saved = admin.post(
        f"/environments/{env['id']}/access", {"new_subject": "user:erin", "new_level": "view"}
    )
    assert saved.status_code == 302 and saved.headers["Location"].endswith("#access")
    assert admin.client.get(f"/api/v1/environments/{env['id']}/grants").json == [
        {"subject": "user:erin", "level": "view"}
    ]
    erin = Portal(client_for(app))
    assert erin.login("erin").status_code == 302
    view = erin.client.get(f"/environments/{env['id']}").get_data(as_text=True)
    assert 'data-reveal="false"' in view and 'id="export-open"' not in view
    removed = admin.post(
        f"/environments/{env['id']}/access", {"subject": "user:erin", "level": "none"}
    )
    assert removed.status_code == 302
    assert erin.client.get(f"/environments/{env['id']}").status_code == 404


def test_scheduler_and_search_offer_only_what_the_level_allows(app, admin, synced):
    _sim, env = synced
    _add_member_user(app)
    admin.api(
        "PUT",
        f"/api/v1/environments/{env['id']}/grants",
        [{"subject": "user:erin", "level": "view"}],
    )
    erin = Portal(client_for(app))
    assert erin.login("erin").status_code == 302
    jobs = erin.client.get("/api/v1/scheduler").json["jobs"]
    assert jobs and all(job["can_manage"] is False for job in jobs)
    assert ">Actions</th>" not in erin.client.get("/scheduler").get_data(as_text=True)
    found = erin.client.get("/api/v1/credentials", query_string={"q": "esx"}).json["items"]
    assert found and all(item["can_reveal"] is False for item in found)
    admin.api(
        "PUT",
        f"/api/v1/environments/{env['id']}/grants",
        [{"subject": "user:erin", "level": "manage"}],
    )
    jobs = erin.client.get("/api/v1/scheduler").json["jobs"]
    assert all(job["can_manage"] is True for job in jobs)
    found = erin.client.get("/api/v1/credentials", query_string={"q": "esx"}).json["items"]
    assert all(item["can_reveal"] is True for item in found)
    assert ">Actions</th>" in erin.client.get("/scheduler").get_data(as_text=True)
