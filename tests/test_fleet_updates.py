"""What only reading both surfaces can do, against the simulator over HTTPS: the installer's
stale copy of an account fleet management changed is flagged (search, needs attention, the
alert); fleet management's EXPIRED and UNKNOWN accounts are on the list; an update through
fleet password management (VCF 9.1) changes the password in fleet management and stores the
new value only once the workflow has succeeded, and a failed workflow changes nothing."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select
from support import endpoint_body, run_sync

from portal import sync
from portal.lifecycle import action_runs, actions
from portal.models import (
    AuditEvent,
    Credential,
    CredentialAction,
    NotificationOutbox,
    PasswordHistory,
)
from portal.platform.crypto import CREDENTIAL_PASSWORD, cipher
from portal.platform.extensions import db
from portal.simulator import Simulator
from portal.simulator.fleet import now_ms

NEW_PASSWORD = "Fleet-New-Value-2026!"


def _fleet_body(sim):
    return {
        "host": sim.host,
        "port": sim.port,
        "username": sim.installer_username,
        "password": sim.installer_password,
        "ca_pem": sim.ca_pem,
        "locker_password": sim.fleet_root_password,
    }


def _installer_body(sim):
    return {
        **endpoint_body(sim),
        "username": sim.installer_username,
        "password": sim.installer_password,
    }


@pytest.fixture
def estate(app, admin):
    """A VCF 9.1 estate read from the installer and fleet management, synced."""
    with Simulator(credentials=30, seed=11, task_delay=0.05) as sim:
        answer = admin.api(
            "POST",
            "/api/v1/environments",
            json={"name": "sfo", "installer": _installer_body(sim), "fleet": _fleet_body(sim)},
        )
        assert answer.status_code == 201, answer.json
        env = answer.json
        for source in ("installer", "fleet"):
            assert run_sync(app, admin, env["id"], source)["state"] in ("success", "partial")
        yield sim, env


def _fleet_credential(app, env_id, fqdn, username) -> Credential:
    with app.app_context():
        cred = db.session.scalar(
            select(Credential).where(
                Credential.environment_id == env_id,
                Credential.source == "fleet",
                Credential.hostname == fqdn,
                Credential.username == username,
            )
        )
        db.session.expunge(cred)
        return cred


def _stored_password(app, cred_id) -> str:
    with app.app_context():
        cred = db.session.get(Credential, cred_id)
        return cipher().decrypt(cred.password_enc, CREDENTIAL_PASSWORD)


def _finish(app, admin, action_id, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            action_runs.advance()
            sync.process_queue()
            db.session.remove()
        state = admin.api("GET", f"/api/v1/credential-actions/{action_id}").json
        if state["state"] in actions.FINAL_STATES:
            return state
        time.sleep(0.05)
    raise AssertionError(f"action {action_id} did not end: {state}")


def test_the_installers_stale_value_is_flagged_in_the_search_and_needs_attention(
    app, admin, estate
):
    sim, env = estate
    [rotated] = sim.fleet_rotate(1)  # a rotation in fleet management, after bring-up
    account = next(a for a in sim.fleet_accounts() if a.alias == rotated)
    assert run_sync(app, admin, env["id"], "fleet")["state"] in ("success", "partial")

    found = admin.api(
        "GET", "/api/v1/credentials", query_string={"q": account.fqdn, "per_page": 100}
    ).json["items"]
    mine = [i for i in found if i["username"] == account.username]
    by_source = {i["source"]: i for i in mine}
    assert set(by_source) == {"fleet", "installer"}
    assert by_source["installer"]["stale"] is True
    assert by_source["installer"]["differs_from"] == ["fleet"]
    assert by_source["fleet"]["stale"] is False
    # Accounts fleet management did not change: one item, both sources, nothing stale.
    assert all(not i["stale"] for i in found if i["username"] != account.username)

    listed = admin.api("GET", "/api/v1/attention?kind=stale_spec").json["items"]
    assert [(i["hostname"], i["username"], i["source"]) for i in listed] == [
        (account.fqdn, account.username, "installer")
    ]
    with app.app_context():
        details = [
            json.loads(row.details)
            for row in db.session.scalars(
                select(NotificationOutbox).where(
                    NotificationOutbox.kind == "credential.needs_attention"
                )
            )
        ]
    stale = [f for d in details for f in d["findings"] if f["kind"] == "stale_spec"]
    assert stale == [
        {
            "hostname": account.fqdn,
            "username": account.username,
            "credential_type": by_source["installer"]["credential_type"],
            "source": "installer",
            "kind": "stale_spec",
        }
    ]
    assert account.password not in json.dumps(details)


def test_fleet_expired_and_unknown_accounts_need_attention(app, admin, estate):
    sim, env = estate
    truth = {(a.fqdn, a.username): a for a in sim.fleet_accounts()}
    listed = admin.api("GET", "/api/v1/attention?per_page=500").json["items"]
    fleet = {(i["hostname"], i["username"]): i for i in listed if i["source"] == "fleet"}
    now = now_ms()
    expected = {
        key: ("expired" if a.status(now) == "EXPIRED" else "expiry_unknown")
        for key, a in truth.items()
        if a.status(now) in ("EXPIRED", "UNKNOWN")
    }
    assert expected and {k: v["kind"] for k, v in fleet.items()} == expected
    assert "expired" in expected.values() and "expiry_unknown" in expected.values()
    # Updated through fleet management, not SDDC Manager.
    assert all(i["actions"] == ["update"] for i in fleet.values())
    assert all("fleet management" in i["what_to_do"] for i in fleet.values())


def test_an_update_through_fleet_management_stores_the_new_value_once_it_succeeded(
    app, admin, estate
):
    sim, env = estate
    account = next(a for a in sim.fleet_accounts() if a.username == "admin")
    cred = _fleet_credential(app, env["id"], account.fqdn, account.username)
    before = _stored_password(app, cred.id)
    assert before == account.password

    plan = admin.api(
        "POST",
        "/api/v1/credentials/actions",
        json={"operation": "update", "credential_ids": [cred.id], "dry_run": True},
    )
    assert plan.status_code == 200 and plan.json["operation"] == "fleet_update"
    sim.task_delay = 0.5
    queued = admin.api(
        "POST",
        "/api/v1/credentials/actions",
        json={"operation": "update", "credential_ids": [cred.id], "password": NEW_PASSWORD},
    )
    assert queued.status_code == 202, queued.json
    # Submitted, the workflow still running: fleet management and the portal keep the old value.
    with app.app_context():
        action_runs.advance()
        db.session.remove()
    running = admin.api("GET", f"/api/v1/credential-actions/{queued.json['id']}").json
    assert running["state"] == "running" and running["upstream_task_id"]
    assert _stored_password(app, cred.id) == before
    assert next(a for a in sim.fleet_accounts() if a.key == account.key).password == before

    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "success" and done["operation"] == "fleet_update", done
    assert next(a for a in sim.fleet_accounts() if a.key == account.key).password == NEW_PASSWORD
    assert _stored_password(app, cred.id) == NEW_PASSWORD
    with app.app_context():
        history = db.session.scalars(
            select(PasswordHistory)
            .where(PasswordHistory.credential_id == cred.id)
            .order_by(PasswordHistory.id)
        ).all()
        assert [h.changed_by for h in history] == ["SYNC", "FLEET_UPDATE"]
        assert history[0].changed_at is not None and history[1].changed_at is None
        records = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "credential.fleet_update")
        ).all()
        assert [r.outcome for r in records] == ["requested", "success"]
        assert all(NEW_PASSWORD not in (r.details or "") + r.target for r in records)
        assert all(before not in (r.details or "") for r in records)
        # Nothing of the new value is kept on the action.
        assert db.session.get(CredentialAction, queued.json["id"]).password_enc is None
    # The sync the action asked for reads the same value: nothing changes again.
    assert run_sync(app, admin, env["id"], "fleet")["counts"]["changed"] == 0


def test_a_failed_workflow_changes_nothing_stored(app, admin, estate):
    sim, env = estate
    account = next(a for a in sim.fleet_accounts() if a.username == "root")
    cred = _fleet_credential(app, env["id"], account.fqdn, account.username)
    before = _stored_password(app, cred.id)
    with app.app_context():
        history_before = db.session.execute(
            select(PasswordHistory.id, PasswordHistory.changed_at).where(
                PasswordHistory.credential_id == cred.id
            )
        ).all()
    sim.fleet_fail_workflows(1, "The appliance refused the new password")
    queued = admin.api(
        "POST",
        "/api/v1/credentials/actions",
        json={"operation": "update", "credential_ids": [cred.id], "password": NEW_PASSWORD},
    )
    assert queued.status_code == 202
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "failed"
    assert done["items"][0]["error"] == "The appliance refused the new password"
    assert done["retryable"] is False and done["cancellable"] is False
    assert _stored_password(app, cred.id) == before
    assert next(a for a in sim.fleet_accounts() if a.key == account.key).password == before
    with app.app_context():
        history_after = db.session.execute(
            select(PasswordHistory.id, PasswordHistory.changed_at).where(
                PasswordHistory.credential_id == cred.id
            )
        ).all()
    assert history_after == history_before


def test_what_fleet_management_cannot_do_is_refused_clearly(app, admin, estate):
    sim, env = estate
    account = next(a for a in sim.fleet_accounts() if a.username == "admin")
    cred = _fleet_credential(app, env["id"], account.fqdn, account.username)
    for body, field in (
        ({"operation": "rotate", "credential_ids": [cred.id]}, "operation"),
        ({"operation": "remediate", "credential_ids": [cred.id], "password": "x"}, "operation"),
        ({"operation": "update", "credential_ids": [cred.id]}, "password"),
    ):
        refused = admin.api("POST", "/api/v1/credentials/actions", json=body)
        assert refused.status_code == 422 and field in refused.json["details"], refused.json
    with app.app_context():
        others = db.session.scalars(
            select(Credential.id).where(
                Credential.environment_id == env["id"], Credential.source == "fleet"
            )
        ).all()[:2]
    two = admin.api(
        "POST",
        "/api/v1/credentials/actions",
        json={"operation": "update", "credential_ids": list(others), "password": NEW_PASSWORD},
    )
    assert two.status_code == 422 and "one fleet management account" in str(two.json)
    # A wrong current password (fleet management changed it behind the portal): refused by
    # fleet management, nothing stored changes.
    sim.fleet_rotate(len(sim.fleet_accounts()))
    queued = admin.api(
        "POST",
        "/api/v1/credentials/actions",
        json={"operation": "update", "credential_ids": [cred.id], "password": NEW_PASSWORD},
    )
    before = _stored_password(app, cred.id)
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "failed" and "current password" in done["error"]
    assert _stored_password(app, cred.id) == before


def test_the_90_locker_cannot_update(app, admin):
    with Simulator(credentials=20, seed=5, installer_version="9.0") as sim:
        answer = admin.api(
            "POST", "/api/v1/environments", json={"name": "old", "fleet": _fleet_body(sim)}
        )
        env = answer.json
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        account = sim.fleet_accounts()[0]
        cred = _fleet_credential(app, env["id"], account.fqdn, account.username)
        refused = admin.api(
            "POST",
            "/api/v1/credentials/actions",
            json={"operation": "update", "credential_ids": [cred.id], "password": NEW_PASSWORD},
        )
        assert refused.status_code == 422 and "9.0 locker" in str(refused.json)
