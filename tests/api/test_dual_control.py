"""Dual control through the API, against a sync from the simulator over HTTPS: policies mark
credentials sensitive, every path that shows a password asks the gate, four eyes open a
window for the requester alone, and break-glass alerts every approver and owes a rotation."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from support import PASSWORD, Portal, client_for

from portal.control import jobs
from portal.models import (
    AccessRequest,
    AuditEvent,
    Credential,
    CredentialAction,
    CredentialActionItem,
    NotificationOutbox,
    PasswordHistory,
    User,
)
from portal.platform import clock
from portal.platform.crypto import CREDENTIAL_PASSWORD, HISTORY_PASSWORD, cipher
from portal.platform.extensions import db
from portal.platform.security import hash_password
from portal.vault import exports

# Syncs and exports read on connections of their own.
pytestmark = pytest.mark.own_database

ROOT_ON_ESXI = {"resource_type": "ESXI", "username": "root", "requires": ["approval"]}


def _policy(admin, env_id, *rules):
    answer = admin.api("PUT", f"/api/v1/environments/{env_id}/policies", json={"rules": rules})
    assert answer.status_code == 200, answer.json
    return answer.json


def _esxi_root(app, env_id) -> Credential:
    with app.app_context():
        cred = db.session.scalar(
            select(Credential)
            .where(
                Credential.environment_id == env_id,
                Credential.resource_type == "ESXI",
                Credential.username == "root",
            )
            .order_by(Credential.id)
        )
        assert cred is not None
        db.session.expunge(cred)
        return cred


def _audits(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def carl(app):
    """A second admin: an approver besides alice."""
    with app.app_context():
        db.session.add(User(username="carl", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    portal = Portal(client_for(app))
    assert portal.login("carl").status_code == 302
    return portal


def _ask(portal, cred_id, **extra):
    body = {"reason": "patch ESXi", "minutes": 30, **extra}
    return portal.api("POST", f"/api/v1/credentials/{cred_id}/access-requests", json=body)


def test_a_policy_marks_esxi_root_sensitive_in_lists_search_and_history(app, admin, synced):
    _, env = synced
    answer = _policy(admin, env["id"], ROOT_ON_ESXI)
    assert answer["rules"][0]["requires"] == ["approval"] and answer["defaults"] == []
    assert answer["rules"][0]["break_glass"] is True
    root = _esxi_root(app, env["id"])
    items = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?per_page=500").json[
        "items"
    ]
    sensitive = [i for i in items if i["requires"]]
    assert sensitive and all(
        i["resource_type"] == "ESXI" and i["username"] == "root" for i in sensitive
    )
    assert all(i["needs"] == ["approval"] for i in sensitive)
    # The request dialog offers break-glass only where the rules allow it.
    assert all(i["break_glass"] is True for i in sensitive)
    assert all(i["break_glass"] is None for i in items if not i["requires"])
    assert [i for i in items if not i["requires"] and i["needs"]] == []
    found = admin.client.get("/api/v1/credentials?q=root").json["items"]
    assert any(i["id"] == root.id and i["requires"] == ["approval"] for i in found)
    history = admin.client.get(f"/api/v1/credentials/{root.id}/history").json
    assert history["requires"] == ["approval"] and history["needs"] == ["approval"]
    # The password-age report marks them too.
    with app.app_context():
        db.session.execute(
            update(Credential)
            .where(Credential.environment_id == env["id"])
            .values(last_changed_at=clock.now() - timedelta(days=200))
        )
        db.session.commit()
    aged = admin.client.get(f"/api/v1/environments/{env['id']}/password-age?days=90").json
    assert {tuple(i["requires"]) for i in aged["stale"]} == {("approval",), ()}
    assert all(
        (i["requires"] == ["approval"])
        == (i["resource_type"] == "ESXI" and i["username"] == "root")
        for i in aged["stale"]
    )
    # Rules are checked field by field; unknown fields and empty needs are refused.
    for bad in (
        {"rules": [{"requires": []}]},
        {"rules": [{"requires": ["approval"], "host": "x"}]},
        {"rules": [{"requires": ["sometimes"]}]},
        {"rules": [{"requires": ["approval"], "username": "*a" * 9}]},
    ):
        refused = admin.api("PUT", f"/api/v1/environments/{env['id']}/policies", json=bad)
        assert refused.status_code == 422, refused.json
    assert admin.client.get(f"/api/v1/environments/{env['id']}/policies").json["rules"]
    changes = _audits(app, "policy.change")
    assert len(changes) == 1 and "ESXI" in json.loads(changes[0].details)["after"]


def test_the_global_default_applies_where_an_environment_has_no_rules(app, admin, synced):
    _, env = synced
    rule = {"account_type": "USER", "username": "ROOT", "requires": ["approval"]}
    assert admin.api("PUT", "/api/v1/policies", json={"rules": [rule]}).status_code == 200
    described = admin.client.get(f"/api/v1/environments/{env['id']}/policies").json
    assert described["defaults"][0]["username"] == "ROOT" and described["rules"] == []
    items = admin.client.get(
        f"/api/v1/environments/{env['id']}/credentials?per_page=500&username=root"
    ).json["items"]
    users = [i for i in items if i["account_type"] == "USER" and i["username"] == "root"]
    assert users and all(i["requires"] == ["approval"] for i in users)
    # The environment's own rules add to the defaults: its managers cannot switch them off.
    _policy(admin, env["id"], {"username": "nobody*", "requires": ["checkout"]})
    items = admin.client.get(
        f"/api/v1/environments/{env['id']}/credentials?per_page=500&username=root"
    ).json["items"]
    user_ids = {u["id"] for u in users}
    assert [i["requires"] for i in items if i["id"] in user_ids] == [["approval"]] * len(users)
    assert all(i["requires"] == [] for i in items if i["id"] not in user_ids)
    # A rule of the environment that matches too adds what it asks; break-glass turned off
    # by the defaults stays off whatever the environment's rule says.
    no_glass = {**rule, "break_glass": False}
    assert admin.api("PUT", "/api/v1/policies", json={"rules": [no_glass]}).status_code == 200
    _policy(admin, env["id"], {"username": "root", "requires": ["checkout"], "break_glass": True})
    root = next(
        i
        for i in admin.client.get(
            f"/api/v1/environments/{env['id']}/credentials?per_page=500&username=root"
        ).json["items"]
        if i["id"] == users[0]["id"]
    )
    assert root["requires"] == ["approval", "checkout"]
    refused = _ask(admin, root["id"], break_glass=True)
    assert refused.status_code == 403 and "Break-glass" in refused.json["error"]
    changed = _audits(app, "policy.change")
    assert [json.loads(c.details)["scope"] for c in changed] == [
        "global default",
        "environment",
        "global default",
        "environment",
    ]
    with app.app_context():
        alerts = db.session.scalars(
            select(NotificationOutbox.kind).where(NotificationOutbox.kind == "policy.changed")
        ).all()
    assert len(alerts) == 4


def test_every_path_that_shows_a_password_refuses_without_approval(app, admin, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    with app.app_context():
        current = cipher().decrypt(
            db.session.get(Credential, root.id).password_enc, CREDENTIAL_PASSWORD
        )
        entry = db.session.scalar(
            select(PasswordHistory).where(PasswordHistory.credential_id == root.id)
        )
        former = cipher().decrypt(entry.password_enc, HISTORY_PASSWORD)
        entry_id = entry.id
    reveal = admin.api("POST", f"/api/v1/credentials/{root.id}/reveal", json={})
    assert reveal.status_code == 403 and reveal.json["details"]["needs"] == ["approval"]
    assert reveal.json["details"]["break_glass"] is True and "password" not in reveal.json
    copy = admin.api("POST", f"/api/v1/credentials/{root.id}/reveal", json={"purpose": "copy"})
    assert copy.status_code == 403 and copy.json["details"]["needs"] == ["approval"]
    history = admin.api("POST", f"/api/v1/credentials/{root.id}/history/{entry_id}/reveal")
    assert history.status_code == 403 and history.json["details"]["needs"] == ["approval"]
    # An API token of the reveal scope is refused alike.
    token = admin.api(
        "POST",
        "/api/v1/me/tokens",
        json={"name": "runbook", "scope": "reveal", "expires_in_days": 1},
    ).json["token"]
    script = app.test_client(use_cookies=False)
    script.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    by_token = script.post(
        f"/api/v1/credentials/{root.id}/reveal", headers={"Authorization": f"Bearer {token}"}
    )
    assert by_token.status_code == 403 and by_token.json["details"]["needs"] == ["approval"]
    # An export leaves the password out and says so, in the file and in a header.
    export = admin.api("POST", f"/api/v1/environments/{env['id']}/export", json={"format": "csv"})
    assert export.status_code == 200
    withheld = int(export.headers["X-Passwords-Withheld"])
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][-2:] == ["Requires", "Password withheld"]
    marked = [r for r in rows[1:] if r[-1]]
    assert len(marked) == withheld >= 1
    assert all(r[3] == "" and r[-1] == "needs approval" and r[2] == "root" for r in marked)
    assert [r for r in rows[1:] if r[-2]] == marked and marked[0][-2] == "approval"
    assert all(r[3] for r in rows[1:] if not r[-1] and r[10] == "present")
    everywhere = admin.api("POST", "/api/v1/credentials/export", json={"format": "csv"})
    assert everywhere.headers["X-Passwords-Withheld"] == str(withheld)
    for action, count in (
        ("credential.reveal.refused", 2),  # the session and the token
        ("credential.copy.refused", 1),
        ("credential.history_reveal.refused", 1),
        ("credential.export.withheld", 2),
    ):
        records = _audits(app, action)
        assert len(records) == count, action
        assert all(r.outcome == "denied" for r in records)
        text = " ".join(f"{r.target} {r.details}" for r in records)
        assert current not in text and former not in text
    assert json.loads(_audits(app, "credential.reveal.refused")[1].details)["via_token"]
    assert _audits(app, "credential.reveal") == [] and _audits(app, "credential.copy") == []


def test_setting_a_chosen_password_needs_what_seeing_it_needs(app, admin, carl, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    chosen = "Chosen-Pass-2026!"

    def act(operation, **extra):
        body = {"operation": operation, "credential_ids": [root.id], **extra}
        return admin.api("POST", "/api/v1/credentials/actions", json=body)

    # A password the caller chose (and so knows) is refused, dry run or not, update or remediate.
    for answer in (
        act("update", password=chosen),
        act("update", password=chosen, dry_run=True),
        act("remediate", password=chosen),
    ):
        assert answer.status_code == 403, answer.json
        assert answer.json["details"]["needs"] == ["approval"]
        assert answer.json["details"]["credential_id"] == root.id
    with app.app_context():
        assert db.session.scalars(select(CredentialAction.id)).all() == []  # nothing queued
    refused = _audits(app, "credential.update.refused") + _audits(
        app, "credential.remediate.refused"
    )
    assert len(refused) == 3 and all(r.outcome == "denied" for r in refused)
    assert all(chosen not in f"{r.target} {r.details}" for r in refused)
    # Retrying a failed update with a password is setting one too.
    with app.app_context():
        failed = CredentialAction(
            environment_id=env["id"], operation="update", state="failed", requested_by="alice"
        )
        failed.items.append(
            CredentialActionItem(
                credential_id=root.id, resource_name="esx", username="root", state="failed"
            )
        )
        db.session.add(failed)
        db.session.commit()
        failed_id = failed.id
    retried = admin.api(
        "POST", f"/api/v1/credential-actions/{failed_id}/retry", json={"password": chosen}
    )
    assert retried.status_code == 403 and retried.json["details"]["needs"] == ["approval"]
    assert len(_audits(app, "credential.update.refused")) == 3
    with app.app_context():
        assert db.session.get(CredentialAction, failed_id).state == "failed"
    # SDDC Manager's own rotate, and a password the portal generates, stay allowed.
    assert act("rotate", dry_run=True).status_code == 200
    assert act("update", generate_password=True, dry_run=True).status_code == 200
    # With an open window the caller may set it.
    req = _ask(admin, root.id).json
    assert (
        carl.api("POST", f"/api/v1/access-requests/{req['id']}/approve", json={}).status_code == 200
    )
    assert act("update", password=chosen, dry_run=True).status_code == 200


def test_an_approval_opens_a_window_for_the_requester_alone(app, admin, readonly, carl, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    asked = _ask(readonly, root.id, ticket="CHG-42")
    assert asked.status_code == 201, asked.json
    req = asked.json
    assert req["state"] == "pending" and req["requester"] == "bob" and req["ticket"] == "CHG-42"
    assert _ask(readonly, root.id).status_code == 409  # one at a time
    listed = readonly.client.get(
        f"/api/v1/environments/{env['id']}/credentials?resource_type=ESXI&username=root&per_page=500"
    ).json["items"]
    mine = next(i for i in listed if i["id"] == root.id)
    assert mine["access"]["state"] == "pending" and mine["access"]["request_id"] == req["id"]
    assert all(i["access"] is None for i in listed if i["id"] != root.id)
    # Approvers are alerted, and see it in their inbox.
    with app.app_context():
        alert = db.session.scalar(
            select(NotificationOutbox).where(NotificationOutbox.kind == "access.requested")
        )
        assert set(json.loads(alert.details)["approvers"]) >= {"alice", "carl"}
        assert "bob" not in json.loads(alert.details)["approvers"]
    inbox = admin.client.get("/api/v1/access-requests?state=pending").json
    assert [i["id"] for i in inbox["items"]] == [req["id"]] and inbox["pending_for_me"] == 1
    assert readonly.client.get("/api/v1/access-requests?state=pending").json["pending_for_me"] == 0
    # The requester cannot approve their own; bob has no approve level anyway, but an admin's
    # own request is refused too.
    own = _ask(admin, root.id)
    assert own.status_code == 201
    refused = admin.api("POST", f"/api/v1/access-requests/{own.json['id']}/approve", json={})
    assert refused.status_code == 403 and "own" in refused.json["error"]
    assert (
        readonly.api("POST", f"/api/v1/access-requests/{req['id']}/approve", json={}).status_code
        == 403
    )
    approved = admin.api("POST", f"/api/v1/access-requests/{req['id']}/approve", json={})
    assert (
        approved.status_code == 200
        and approved.json["open"]
        and approved.json["decider"] == "alice"
    )
    url = f"/api/v1/credentials/{root.id}/reveal"
    assert readonly.api("POST", url, json={}).status_code == 200
    found = readonly.client.get("/api/v1/credentials?q=root").json["items"]
    opened = next(i for i in found if i["id"] == root.id)
    assert opened["access"]["state"] == "open" and opened["needs"] == []
    assert readonly.api("POST", url, json={"purpose": "copy"}).status_code == 200
    assert carl.api("POST", url, json={}).status_code == 403  # the window is bob's alone
    # Bob's export during his window holds the password, still marked as sensitive.
    export = readonly.api("POST", f"/api/v1/environments/{env['id']}/export", json={})
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][-2:] == ["Requires", "Password withheld"]  # the other hosts' root
    with app.app_context():
        shown = cipher().decrypt(
            db.session.get(Credential, root.id).password_enc, CREDENTIAL_PASSWORD
        )
    assert any(r[-2:] == ["approval", ""] and r[3] == shown for r in rows[1:])
    # What was shown within the window names the request and its approver in the audit.
    for action in ("credential.reveal", "credential.copy"):
        record = json.loads(_audits(app, action)[0].details)
        assert record["request_id"] == str(req["id"]) and record["approver"] == "alice", action
    exported = json.loads(_audits(app, "credential.export")[-1].details)
    assert exported["windows"] == f"{root.id}:{req['id']}:alice"
    record = json.loads(_audits(app, "access.approve")[0].details)
    assert record["requester"] == "bob" and record["decider"] == "alice"
    assert _audits(app, "access.approve")[0].actor == "alice"
    # Revoked: closed at once.
    revoked = carl.api("POST", f"/api/v1/access-requests/{req['id']}/revoke", json={})
    assert revoked.status_code == 200 and revoked.json["state"] == "revoked"
    assert readonly.api("POST", url, json={}).json["details"]["needs"] == ["approval"]
    # A second window ends when its time runs out; the job closes it.
    second = _ask(readonly, root.id).json
    carl.api("POST", f"/api/v1/access-requests/{second['id']}/approve", json={})
    assert readonly.api("POST", url, json={}).status_code == 200
    with app.app_context():
        db.session.get(AccessRequest, second["id"]).closes_at = clock.now() - timedelta(seconds=1)
        db.session.commit()
    assert readonly.api("POST", url, json={}).status_code == 403
    with app.app_context():
        assert jobs.close_expired()["closed"] == 1
        assert db.session.get(AccessRequest, second["id"]).closed_reason == "window ended"
    # A third ends when the credential changes (a sync brought a new password).
    third = _ask(readonly, root.id).json
    carl.api("POST", f"/api/v1/access-requests/{third['id']}/approve", json={})
    assert readonly.api("POST", url, json={}).status_code == 200
    with app.app_context():
        db.session.get(Credential, root.id).last_changed_at = clock.now()
        db.session.commit()
    assert readonly.api("POST", url, json={}).status_code == 403
    with app.app_context():
        jobs.close_expired()
        closed = db.session.get(AccessRequest, third["id"])
        assert (closed.state, closed.closed_reason) == ("closed", "credential changed")
        assert db.session.get(Credential, root.id).rotation_due_since is None
    assert {r.actor for r in _audits(app, "access.close")} == {"system"}


def test_a_denial_and_an_expired_request(app, admin, readonly, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    req = _ask(readonly, root.id).json
    no_reason = admin.api("POST", f"/api/v1/access-requests/{req['id']}/deny", json={})
    assert no_reason.status_code == 422 and "reason" in no_reason.json["details"]
    denied = admin.api(
        "POST", f"/api/v1/access-requests/{req['id']}/deny", json={"reason": "use the runbook"}
    )
    assert denied.status_code == 200 and denied.json["state"] == "denied"
    assert denied.json["decision_reason"] == "use the runbook"
    late = admin.api("POST", f"/api/v1/access-requests/{req['id']}/approve", json={})
    assert late.status_code == 409
    refused = readonly.api("POST", f"/api/v1/credentials/{root.id}/reveal", json={})
    assert refused.status_code == 403
    record = _audits(app, "access.deny")[0]
    assert record.actor == "alice" and json.loads(record.details)["requester"] == "bob"
    # A request nobody decides expires by itself.
    waiting = _ask(readonly, root.id).json
    with app.app_context():
        db.session.get(AccessRequest, waiting["id"]).closes_at = clock.now() - timedelta(seconds=1)
        db.session.commit()
        assert jobs.close_expired() == {"expired": 1, "closed": 0}
    gone = admin.api("POST", f"/api/v1/access-requests/{waiting['id']}/approve", json={})
    assert gone.status_code == 409
    mine = readonly.client.get("/api/v1/access-requests?mine=true").json["items"]
    assert [i["state"] for i in mine] == ["expired", "denied"]
    # Not sensitive: nothing to ask for.
    with app.app_context():
        other = db.session.scalar(
            select(Credential.id).where(
                Credential.environment_id == env["id"], Credential.username != "root"
            )
        )
    assert _ask(readonly, other).status_code == 409


def test_break_glass_alerts_every_approver_and_owes_a_rotation(app, admin, readonly, carl, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    opened = _ask(readonly, root.id, break_glass=True, reason="site down, vCenter unreachable")
    assert opened.status_code == 201, opened.json
    assert (opened.json["kind"], opened.json["state"], opened.json["open"]) == (
        "break_glass",
        "approved",
        True,
    )
    assert readonly.api("POST", f"/api/v1/credentials/{root.id}/reveal", json={}).status_code == 200
    with app.app_context():
        alert = db.session.scalar(
            select(NotificationOutbox).where(NotificationOutbox.kind == "access.break_glass")
        )
        assert {"alice", "carl"} <= set(json.loads(alert.details)["approvers"])
        assert "site down" in alert.body
        db.session.get(AccessRequest, opened.json["id"]).closes_at = clock.now()
        db.session.commit()
        jobs.close_expired()
        cred = db.session.get(Credential, root.id)
        assert cred.rotation_due_since is not None and cred.rotation_due_reason == "break_glass"
    flagged = _audits(app, "access.break_glass")
    assert len(flagged) == 1 and flagged[0].actor == "bob"
    # Turned off by the policy: refused.
    _policy(admin, env["id"], {**ROOT_ON_ESXI, "break_glass": False})
    found = readonly.client.get("/api/v1/credentials?q=root").json["items"]
    assert next(i for i in found if i["id"] == root.id)["break_glass"] is False
    refused = _ask(readonly, root.id, break_glass=True)
    assert refused.status_code == 403 and refused.json["details"]["field"] == "break_glass"
    answer = readonly.api("POST", f"/api/v1/credentials/{root.id}/reveal", json={})
    assert answer.json["details"]["break_glass"] is False


def test_approving_needs_a_session_not_a_token(app, admin, readonly, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    req = _ask(readonly, root.id).json
    token = admin.api(
        "POST", "/api/v1/me/tokens", json={"name": "t", "scope": "admin", "expires_in_days": 1}
    ).json["token"]
    script = app.test_client(use_cookies=False)
    script.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    answer = script.post(
        f"/api/v1/access-requests/{req['id']}/approve",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 403 and "session" in answer.json["error"]


def test_break_glass_needs_a_recent_browser_session(app, admin, readonly, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    token = readonly.api(
        "POST", "/api/v1/me/tokens", json={"name": "t", "scope": "reveal", "expires_in_days": 1}
    ).json["token"]
    script = app.test_client(use_cookies=False)
    script.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    body = {"reason": "site down", "minutes": 15, "break_glass": True}
    by_token = script.post(
        f"/api/v1/credentials/{root.id}/access-requests",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert by_token.status_code == 403 and "browser session" in by_token.json["error"]
    assert by_token.json["details"]["needs"] == "session"
    # A token may still ask for an approval: a second person decides.
    asked = script.post(
        f"/api/v1/credentials/{root.id}/access-requests",
        json={**body, "break_glass": False},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert asked.status_code == 201, asked.json
    readonly.api("POST", f"/api/v1/access-requests/{asked.json['id']}/revoke", json={})
    # A session signed in over 15 minutes ago types the password again.
    clock.offset += timedelta(minutes=16)
    try:
        stale = _ask(readonly, root.id, break_glass=True)
        assert stale.status_code == 403 and stale.json["details"]["needs"] == "recent_sign_in"
        opened = _ask(readonly, root.id, break_glass=True, confirm_password=PASSWORD)
        assert opened.status_code == 201 and opened.json["kind"] == "break_glass"
    finally:
        clock.offset -= timedelta(minutes=16)
    denied = [a for a in _audits(app, "access.break_glass") if a.outcome == "denied"]
    assert [json.loads(a.details)["reason"] for a in denied] == [
        "api token",
        "no sign-in within 15 minutes",
    ]
    with app.app_context():
        kinds = db.session.scalars(select(AccessRequest.kind).order_by(AccessRequest.id)).all()
    assert kinds == ["approval", "break_glass"]


def test_an_export_judges_each_row_as_it_streams(app, admin, readonly, synced, monkeypatch):
    _, env = synced
    # The test client reads the first piece of an answer at once: the file begins with an
    # empty one here, so that its rows are read only when the body is (as a slow client's).
    whole = exports._csv

    def slow(reader):
        yield b""
        yield from whole(reader)

    monkeypatch.setattr(exports, "_csv", slow)
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    req = _ask(readonly, root.id).json
    assert admin.api("POST", f"/api/v1/access-requests/{req['id']}/approve").status_code == 200
    # The answer is made (the check is done, the audit committed); the rows are read as it is
    # sent. Meanwhile a sync adds a sensitive credential and changes bob's permitted one.
    export = readonly.api("POST", f"/api/v1/environments/{env['id']}/export", json={})
    assert export.status_code == 200
    late, changed = "Late-Secret-2026!", "Changed-Secret-2026!"
    with app.app_context():
        model = db.session.get(Credential, root.id)
        db.session.add(
            Credential(
                environment_id=env["id"],
                source=model.source,
                hostname="esx-late.example.test",
                username="root",
                credential_type=model.credential_type,
                account_type=model.account_type,
                resource_type="ESXI",
                domain=model.domain,
                password_enc=cipher().encrypt(late, CREDENTIAL_PASSWORD),
            )
        )
        model.password_enc = cipher().encrypt(changed, CREDENTIAL_PASSWORD)
        model.last_changed_at = clock.now() + timedelta(seconds=1)
        db.session.commit()
    text = export.get_data(as_text=True)
    assert late not in text and changed not in text
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][-2:] == ["Requires", "Password withheld"]
    new_row = next(r for r in rows[1:] if r[1] == "esx-late.example.test")
    assert new_row[3] == "" and new_row[-1] == "needs approval"
    with app.app_context():
        host = db.session.get(Credential, root.id).hostname
    old_row = next(r for r in rows[1:] if r[1] == host and r[2] == "root")
    assert old_row[3] == "" and old_row[-1] == "needs approval"
    # Credentials that need nothing are exported as before.
    assert any(r[3] and r[-2] == "" for r in rows[1:])


def test_refused_reveals_count_to_the_rate_limit(app, admin, synced):
    _, env = synced
    _policy(admin, env["id"], ROOT_ON_ESXI)
    root = _esxi_root(app, env["id"])
    settings = app.config["PORTAL_SETTINGS"]
    app.config["PORTAL_SETTINGS"] = dataclasses.replace(settings, reveals_per_minute=3)
    try:
        answers = [
            admin.api("POST", f"/api/v1/credentials/{root.id}/reveal", json={}).status_code
            for _ in range(5)
        ]
    finally:
        app.config["PORTAL_SETTINGS"] = settings
    assert answers == [403, 403, 403, 429, 429]
    assert len(_audits(app, "credential.reveal.refused")) == 3
