"""Rotating every password a person saw (portal.lifecycle.seen_rotation, POST
/api/v1/audit/seen/rotate) through the simulator's SDDC Manager: the dry run lists the
credentials, the real run queues the rotate actions, one per environment; what changed since,
what another action is changing, what the requester does not manage is skipped."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from support import PASSWORD, Portal, client_for, create_env, run_sync

from portal import sync
from portal.audit import seen
from portal.lifecycle import action_runs, actions, seen_rotation
from portal.models import (
    AuditEvent,
    Credential,
    CredentialAction,
    EnvironmentGrant,
    User,
    UserSession,
)
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password
from portal.simulator import Simulator

ROTATE = "/api/v1/audit/seen/rotate"


@pytest.fixture
def lab(app, admin):
    """Two environments of one simulator ("lon" sorts first), synced."""
    with Simulator(credentials=30, seed=21, task_delay=0.1) as sim:
        sfo = create_env(admin, sim, name="sfo")
        lon = create_env(admin, sim, name="lon")
        run_sync(app, admin, sfo["id"])
        run_sync(app, admin, lon["id"])
        yield sfo["id"], lon["id"]


def _ids(app, env_id, n):
    with app.app_context():
        query = select(Credential.id).where(Credential.environment_id == env_id)
        return list(db.session.scalars(query.order_by(Credential.id).limit(n)))


def _reveal(client, cred_id, purpose=None):
    body = {"purpose": purpose} if purpose else {}
    assert client.api("POST", f"/api/v1/credentials/{cred_id}/reveal", json=body).status_code == 200


def _password(client, cred_id):
    return client.api("POST", f"/api/v1/credentials/{cred_id}/reveal").json["password"]


def _states(answer):
    return {i["credential_id"]: (i["state"], i["reason"]) for i in answer["items"]}


def _finish(app, admin, action_ids, timeout=20.0):
    """Drive the scheduler's steps (actions, then the syncs they queue) until all end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            action_runs.advance()
            sync.process_queue()
            db.session.remove()
        states = [
            admin.api("GET", f"/api/v1/credential-actions/{n}").json["state"] for n in action_ids
        ]
        if all(state in actions.FINAL_STATES for state in states):
            with app.app_context():
                sync.process_queue()
            return states
        time.sleep(0.05)
    raise AssertionError(f"actions {action_ids} did not end")


def test_dry_run_then_rotate_everything_the_person_saw(app, admin, readonly, lab):
    sfo, lon = lab
    a, b, c = _ids(app, sfo, 3)
    z = _ids(app, lon, 10)[-1]  # both environments are one simulator: another account
    _reveal(readonly, a)
    _reveal(readonly, b, "copy")
    _reveal(readonly, c)
    _reveal(readonly, z)
    with app.app_context():  # c's password changed since bob saw it (as a sync records it)
        db.session.get(Credential, c).last_changed_at = clock.now() + timedelta(seconds=5)
        db.session.commit()
    before = {n: _password(admin, n) for n in (a, b, z)}

    plan = admin.api("POST", ROTATE, json={"person": "bob", "dry_run": True})
    assert plan.status_code == 200 and plan.json["dry_run"] is True
    assert _states(plan.json) == {
        a: ("planned", None),
        b: ("planned", None),
        c: ("skipped", "Changed since they saw it."),
        z: ("planned", None),
    }
    assert [(x["environment"], x["credentials"], x["id"]) for x in plan.json["actions"]] == [
        ("lon", 1, None),
        ("sfo", 2, None),
    ]
    assert (plan.json["planned"], plan.json["later"], plan.json["skipped"]) == (3, 0, 1)
    with app.app_context():
        assert db.session.scalar(select(func.count(CredentialAction.id))) == 0

    done = admin.api("POST", ROTATE, json={"person": "bob"})
    assert done.status_code == 202, done.json
    queued = done.json["actions"]
    assert [(x["environment_id"], x["credentials"]) for x in queued] == [(lon, 1), (sfo, 2)]
    with app.app_context():
        rows = db.session.scalars(select(CredentialAction).order_by(CredentialAction.id)).all()
        assert [(r.operation, r.requested_by, r.state) for r in rows] == [
            ("rotate", "alice", "queued"),
            ("rotate", "alice", "queued"),
        ]
        assert sorted(i.credential_id for r in rows for i in r.items) == sorted([a, b, z])
        (umbrella,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "credential.rotate_seen")
        ).all()
        assert umbrella.target == "bob" and umbrella.actor == "alice"

    again = admin.api("POST", ROTATE, json={"person": "bob", "dry_run": True}).json
    assert {s for s, _ in _states(again).values()} == {"skipped"}
    assert _states(again)[a][1].startswith("Already being changed by action")

    assert _finish(app, admin, [x["id"] for x in queued]) == ["success", "success"]
    assert all(_password(admin, n) != before[n] for n in (a, b, z))
    with app.app_context():
        assert seen.seen_by(db.session.get(Credential, a))["items"][0]["person"] == "alice"
        report = seen.report("bob", None, None, None)["items"]
        assert not any(item["still_current"] for item in report)
    nothing = admin.api("POST", ROTATE, json={"person": "bob"})
    assert nothing.status_code == 409


def test_environments_the_requester_does_not_manage_are_skipped(app, admin, readonly, lab):
    sfo, lon = lab
    (a,) = _ids(app, sfo, 1)
    (z,) = _ids(app, lon, 1)
    _reveal(readonly, a)
    _reveal(readonly, z)
    with app.app_context():
        carol = User(username="carol", role="auditor", password_hash=hash_password(PASSWORD))
        db.session.add(carol)
        db.session.flush()
        db.session.add(EnvironmentGrant(environment_id=lon, user_id=carol.id, level="manage"))
        db.session.commit()
    auditor = Portal(client_for(app))
    assert auditor.login("carol").status_code == 302
    plan = auditor.api("POST", ROTATE, json={"person": "bob", "dry_run": True}).json
    assert _states(plan) == {
        a: ("skipped", "You do not manage this environment."),
        z: ("planned", None),
    }
    assert [x["environment"] for x in plan["actions"]] == ["lon"]
    assert readonly.api("POST", ROTATE, json={"person": "bob"}).status_code == 403


def test_over_the_limit_of_one_request_the_rest_waits(app, admin, readonly, lab, monkeypatch):
    sfo, lon = lab
    (a,) = _ids(app, sfo, 1)
    (z,) = _ids(app, lon, 1)
    _reveal(readonly, a)
    _reveal(readonly, z)
    monkeypatch.setattr(seen_rotation, "MAX_ACTIONS", 1)
    plan = admin.api("POST", ROTATE, json={"person": "bob", "dry_run": True}).json
    assert _states(plan)[z] == ("planned", None)
    assert _states(plan)[a][0] == "later" and (plan["planned"], plan["later"]) == (1, 1)
    first = admin.api("POST", ROTATE, json={"person": "bob"}).json
    assert [x["environment"] for x in first["actions"]] == ["lon"]
    second = admin.api("POST", ROTATE, json={"person": "bob"}).json
    assert [x["environment"] for x in second["actions"]] == ["sfo"]  # lon's is being changed


def test_the_installer_copy_is_rotated_as_sddc_managers(app, admin, readonly, lab):
    sfo, _ = lab
    (a,) = _ids(app, sfo, 1)
    with app.app_context():
        cred = db.session.get(Credential, a)
        copy = Credential(
            environment_id=sfo,
            source="installer",
            hostname=cred.hostname,
            username=cred.username,
            credential_type=cred.credential_type,
            password_enc=cred.password_enc,
            password_mac=cred.password_mac,
        )
        db.session.add(copy)
        db.session.commit()
        copy_id = copy.id
    _reveal(readonly, copy_id)
    plan = admin.api("POST", ROTATE, json={"person": "bob", "dry_run": True}).json
    assert _states(plan) == {a: ("planned", None)}
    with app.app_context():
        db.session.get(Credential, copy_id).password_mac = b"another password"
        db.session.commit()
    plan = admin.api("POST", ROTATE, json={"person": "bob", "dry_run": True}).json
    assert _states(plan)[copy_id][0] == "skipped"


def test_an_old_session_must_confirm_the_password(app, admin, readonly, lab):
    sfo, _ = lab
    (a,) = _ids(app, sfo, 1)
    _reveal(readonly, a)
    with app.app_context():
        for row in db.session.scalars(select(UserSession)):
            row.authenticated_at = clock.now() - timedelta(minutes=20)
        db.session.commit()
    assert admin.api("POST", ROTATE, json={"person": "bob", "dry_run": True}).status_code == 200
    refused = admin.api("POST", ROTATE, json={"person": "bob"})
    assert refused.status_code == 403 and "confirm_password" in refused.json["error"]
    body = {"person": "bob", "confirm_password": PASSWORD}
    assert admin.api("POST", ROTATE, json=body).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"person": ""},
        {"person": "bob", "dry_run": "yes"},
        {"person": "bob", "since": "2026-02-30"},
        {"person": "bob", "since": "2026-03-02", "until": "2026-03-01"},
        {"person": "bob", "colour": "red"},
    ],
)
def test_a_bad_request_answers_422(admin, body):
    answer = admin.api("POST", ROTATE, json=body)
    assert answer.status_code == 422 and answer.json["details"], answer.json
