"""Dual control on the pages: the rule forms (defaults and an environment's own), the inbox
and the top bar's link to it while it holds something."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select
from support import PASSWORD, Portal, client_for, create_env

from portal.models import (
    AccessPolicy,
    AccessRequest,
    Credential,
    EnvironmentGrant,
    NotificationChannel,
    User,
)
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password


def _rules(app, env_id):
    with app.app_context():
        rows = db.session.scalars(
            select(AccessPolicy)
            .where(
                AccessPolicy.environment_id.is_(env_id)
                if env_id is None
                else AccessPolicy.environment_id == env_id
            )
            .order_by(AccessPolicy.position)
        ).all()
        return [(r.resource_type, r.username, r.requires, r.break_glass) for r in rows]


def test_the_default_rules_form(app, admin):
    page = admin.client.get("/settings/policies")
    assert page.status_code == 200 and "Default rules for sensitive credentials" in page.get_data(
        as_text=True
    )
    saved = admin.post(
        "/settings/policies",
        {
            "row_0": "1",
            "resource_type_0": "ESXI",
            "username_0": "root",
            "approval_0": "1",
            "break_glass_0": "1",
            "row_1": "1",  # a blank row: left out
        },
    )
    assert saved.status_code == 302
    assert _rules(app, None) == [("ESXI", "root", "approval", True)]
    # Unticking both requirements removes the rule; a bad value is refused, nothing changes.
    refused = admin.post(
        "/settings/policies",
        {"row_0": "1", "resource_type_0": "X" * 65, "approval_0": "1"},
        follow_redirects=True,
    )
    assert "Rules not saved" in refused.get_data(as_text=True)
    assert _rules(app, None) == [("ESXI", "root", "approval", True)]
    admin.post("/settings/policies", {"row_0": "1", "resource_type_0": "ESXI"})
    assert _rules(app, None) == []


def test_a_manager_sets_the_rules_of_their_environment(app, admin, sim):
    env = create_env(admin, sim)
    with app.app_context():
        erin = User(username="erin", role="member", password_hash=hash_password(PASSWORD))
        db.session.add(erin)
        db.session.flush()
        db.session.add(EnvironmentGrant(environment_id=env["id"], user_id=erin.id, level="manage"))
        db.session.commit()
    manager = Portal(client_for(app))
    assert manager.login("erin").status_code == 302
    page = manager.client.get(f"/environments/{env['id']}/policies").get_data(as_text=True)
    assert "There are no default rules" in page
    # The defaults apply on every environment's page too, listed apart from its own rules.
    default = {"row_0": "1", "username_0": "admin*", "approval_0": "1", "break_glass_0": "1"}
    assert admin.post("/settings/policies", default).status_code == 302
    page = manager.client.get(f"/environments/{env['id']}/policies").get_data(as_text=True)
    assert "Default rules (they apply here too)" in page and "admin*" in page
    assert 'value="admin*"' not in page  # not among the environment's own rules
    saved = manager.post(
        f"/environments/{env['id']}/policies",
        {"row_0": "1", "account_type_0": "SERVICE", "approval_0": "1", "checkout_0": "1"},
    )
    assert saved.status_code == 302
    assert _rules(app, env["id"]) == [(None, None, "approval,checkout", False)]
    assert manager.client.get("/settings/policies").status_code == 403


def test_the_inbox_link_shows_while_requests_wait(app, admin, readonly, sim):
    env = create_env(admin, sim)
    assert 'id="inbox-link"' not in admin.client.get("/").get_data(as_text=True)
    with app.app_context():
        cred = Credential(
            environment_id=env["id"], source="manager", hostname="esx-1", username="root"
        )
        db.session.add(cred)
        db.session.flush()
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        db.session.add(
            AccessRequest(
                credential_id=cred.id,
                environment_id=env["id"],
                requester_id=bob.id,
                requester_name="bob",
                reason="patching",
                minutes=30,
                state="pending",
                closes_at=clock.now() + timedelta(hours=1),
            )
        )
        db.session.commit()
        cred_id, bob_id = cred.id, bob.id
    page = admin.client.get("/").get_data(as_text=True)
    assert 'id="inbox-link"' in page and '1<span class="sr-only"> waiting for you' in page
    # The requester has nothing to decide: no link for them.
    assert 'id="inbox-link"' not in readonly.client.get("/").get_data(as_text=True)
    inbox = admin.client.get("/access-requests").get_data(as_text=True)
    assert "Waiting for your decision" in inbox and 'aria-current="page"' in inbox
    assert 'id="glass"' in inbox and "Break-glass windows open now" in inbox
    # Another person's break-glass window open now counts as well, until it closes.
    with app.app_context():
        now = clock.now()
        db.session.add(
            AccessRequest(
                credential_id=cred_id,
                environment_id=env["id"],
                requester_id=bob_id,
                requester_name="bob",
                kind="break_glass",
                reason="site down",
                minutes=30,
                state="approved",
                opens_at=now,
                closes_at=now + timedelta(minutes=30),
            )
        )
        db.session.commit()
    page = admin.client.get("/").get_data(as_text=True)
    assert '2<span class="sr-only"> waiting for you' in page
    listed = admin.client.get("/api/v1/access-requests?state=open").json
    assert listed["pending_for_me"] == 1 and listed["break_glass_open"] == 1
    assert [i["kind"] for i in listed["items"]] == ["break_glass"]
    assert readonly.client.get("/api/v1/access-requests").json["break_glass_open"] == 0


def test_the_policies_page_says_when_break_glass_alerts_reach_nobody(app, admin):
    page = admin.client.get("/settings/policies").get_data(as_text=True)
    assert 'id="break-glass-unheard"' in page
    with app.app_context():
        for events, enabled in ((["access.break_glass"], False), (["access.requested"], True)):
            db.session.add(
                NotificationChannel(
                    kind="webhook",
                    name=f"hook-{enabled}",
                    enabled=enabled,
                    events=json.dumps(events),
                )
            )
        db.session.commit()
    assert 'id="break-glass-unheard"' in admin.client.get("/settings/policies").get_data(
        as_text=True
    )
    with app.app_context():
        channel = db.session.scalar(select(NotificationChannel).where(NotificationChannel.enabled))
        channel.events = json.dumps(["access.requested", "access.break_glass"])
        db.session.commit()
    page = admin.client.get("/settings/policies").get_data(as_text=True)
    assert 'id="break-glass-unheard"' not in page
