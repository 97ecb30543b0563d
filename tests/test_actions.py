"""Credential actions through SDDC Manager (the bundled simulator over HTTPS): rotate one and
five at once, update with a given or generated password, remediate, the auto-rotate policy;
failures per resource, SDDC Manager busy, retry and cancel; the new passwords and their
history after the automatic sync; no update password kept or written anywhere.
Also expiry checks and the filter of expiring passwords."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from support import PASSWORD, create_env, run_sync

from portal import sync
from portal.lifecycle import action_runs, actions, expiry_checks
from portal.models import AuditEvent, Credential, CredentialAction, Endpoint, PasswordHistory
from portal.platform import clock
from portal.platform.extensions import db
from portal.simulator import Simulator


@pytest.fixture
def lab(app, admin):
    with Simulator(credentials=60, seed=21, task_delay=0.1) as sim:
        env = create_env(admin, sim)
        run_sync(app, admin, env["id"])
        yield sim, env


def _creds(app, env_id, n, **where) -> list[dict]:
    with app.app_context():
        query = select(Credential).where(
            Credential.environment_id == env_id, Credential.source == "manager"
        )
        for name, value in where.items():
            query = query.where(getattr(Credential, name) == value)
        rows = db.session.scalars(query.order_by(Credential.id).limit(n)).all()
        return [
            {"id": c.id, "hostname": c.hostname, "username": c.username, "type": c.credential_type}
            for c in rows
        ]


def _password(admin, cred_id) -> str:
    return admin.api("POST", f"/api/v1/credentials/{cred_id}/reveal").json["password"]


def _finish(app, admin, action_id, timeout=20.0) -> dict:
    """Drive the scheduler's steps (actions, then the sync they queue) until the action ends."""
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


def _queue(admin, **body):
    return admin.api("POST", "/api/v1/credentials/actions", json=body)


def test_rotate_one_then_five_at_once(app, admin, lab):
    sim, env = lab
    one = _creds(app, env["id"], 1)[0]
    before = _password(admin, one["id"])
    queued = _queue(admin, operation="rotate", credential_ids=[one["id"]])
    assert queued.status_code == 202
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "success" and done["upstream_task_id"]
    assert done["items"][0]["state"] == "success"
    run_sync(app, admin, env["id"])
    assert _password(admin, one["id"]) != before
    history = admin.api("GET", f"/api/v1/credentials/{one['id']}/history").json["items"]
    assert len(history) >= 2  # the old value is kept in the history

    five = _creds(app, env["id"], 6)[1:]
    olds = {c["id"]: _password(admin, c["id"]) for c in five}
    queued = _queue(admin, operation="rotate", credential_ids=[c["id"] for c in five])
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "success" and len(done["items"]) == 5
    run_sync(app, admin, env["id"])
    assert all(_password(admin, c["id"]) != olds[c["id"]] for c in five)
    with app.app_context():
        audited = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "credential.rotate", AuditEvent.outcome == "success"
            )
        ).all()
    assert len(audited) == 6


def test_update_with_a_given_password_and_nothing_kept(tmp_path, app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1, resource_type="ESXI")[0]
    canary = "Canary-New-Esx-Pass-7788!"
    queued = _queue(admin, operation="update", credential_ids=[cred["id"]], password=canary)
    assert queued.status_code == 202
    with app.app_context():
        assert db.session.get(CredentialAction, queued.json["id"]).password_enc is not None
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "success"
    with app.app_context():
        assert db.session.get(CredentialAction, queued.json["id"]).password_enc is None
    run_sync(app, admin, env["id"])
    assert _password(admin, cred["id"]) == canary
    assert canary not in json.dumps(done)
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("vcf_credentials.db*"))
    logs = b"".join(p.read_bytes() for p in tmp_path.rglob("*.log"))
    for where in (blobs, logs):
        assert canary.encode() not in where and canary.encode("utf-16-le") not in where
    with app.app_context():
        details = " ".join(d or "" for d in db.session.scalars(select(AuditEvent.details)))
    assert canary not in details


def test_update_with_a_generated_password(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1, resource_type="VCENTER")[0]
    before = _password(admin, cred["id"])
    queued = _queue(admin, operation="update", credential_ids=[cred["id"]], generate_password=True)
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "success"
    run_sync(app, admin, env["id"])
    new = _password(admin, cred["id"])
    assert new != before and len(new) == 20
    assert any(c.isdigit() for c in new) and any(c in "@!#$%^&*" for c in new)


def test_remediate_one_account(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    two = _creds(app, env["id"], 2)
    refused = _queue(
        admin, operation="remediate", credential_ids=[c["id"] for c in two], password="Xx-1234567"
    )
    assert (
        refused.status_code == 422 and "one credential" in refused.json["details"]["credential_ids"]
    )
    queued = _queue(
        admin, operation="remediate", credential_ids=[cred["id"]], password="Changed-On-Host-42!"
    )
    assert _finish(app, admin, queued.json["id"])["state"] == "success"
    run_sync(app, admin, env["id"])
    assert _password(admin, cred["id"]) == "Changed-On-Host-42!"


def test_auto_rotate_policy_is_set_and_shown(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    queued = _queue(
        admin,
        operation="auto_rotate",
        credential_ids=[cred["id"]],
        auto_rotate={"enabled": True, "frequency_days": 30},
    )
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "success"
    assert done["auto_rotate"] == {"enabled": True, "frequency_days": 30}
    run_sync(app, admin, env["id"])
    with app.app_context():
        assert db.session.get(Credential, cred["id"]).auto_rotate_days == 30
    bad = _queue(
        admin,
        operation="auto_rotate",
        credential_ids=[cred["id"]],
        auto_rotate={"enabled": True, "frequency_days": 91},
    )
    assert bad.status_code == 422


def test_a_failure_per_resource_is_shown_and_retried(app, admin, lab):
    sim, env = lab
    by_hostname = {}
    for cred in _creds(app, env["id"], 60):
        by_hostname.setdefault(cred["hostname"], cred)
    creds = list(by_hostname.values())[:3]  # three hosts, one credential each
    broken = creds[1]["hostname"]
    sim.inject_credential_fault(
        broken, "fail", "ROTATE", message="Unable to reach host over SSH", count=1
    )
    queued = _queue(admin, operation="rotate", credential_ids=[c["id"] for c in creds])
    done = _finish(app, admin, queued.json["id"])
    by_host = {i["hostname"]: i for i in done["items"]}
    assert done["state"] == "partial"
    assert [i["state"] for i in done["items"]].count("success") == 2
    assert by_host[broken]["state"] == "failed"
    assert "Unable to reach host over SSH" in by_host[broken]["error"]
    assert done["retryable"] and done["cancellable"]
    retried = admin.api("POST", f"/api/v1/credential-actions/{done['id']}/retry", json={})
    assert retried.status_code == 200 and retried.json["state"] == "running"
    again = _finish(app, admin, done["id"])
    assert all(i["state"] == "success" for i in again["items"]), again


def test_sddc_manager_busy_keeps_the_action_queued(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    sim.inject_credential_fault(cred["hostname"], "busy", count=1)
    queued = _queue(admin, operation="rotate", credential_ids=[cred["id"]])
    with app.app_context():
        action_runs.advance()
        action = db.session.get(CredentialAction, queued.json["id"])
        assert action.state == "queued" and action.not_before > clock.now()
        assert "busy" in action.error
    clock.offset = timedelta(minutes=5)
    assert _finish(app, admin, queued.json["id"])["state"] == "success"


def test_a_refused_operation_fails_with_sddc_managers_reason(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    sim.inject_credential_fault(cred["hostname"], "inactive", count=1)
    queued = _queue(admin, operation="rotate", credential_ids=[cred["id"]])
    done = _finish(app, admin, queued.json["id"])
    assert done["state"] == "failed" and "ACTIVE" in done["error"]
    assert done["items"][0]["state"] == "failed"


def test_a_queued_action_can_be_cancelled(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    queued = _queue(admin, operation="rotate", credential_ids=[cred["id"]])
    cancelled = admin.api("POST", f"/api/v1/credential-actions/{queued.json['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    with app.app_context():
        assert action_runs.advance() == 0


def test_dry_run_lists_exactly_what_would_be_done(app, admin, lab):
    sim, env = lab
    creds = _creds(app, env["id"], 4)
    plan = _queue(admin, operation="rotate", credential_ids=[c["id"] for c in creds], dry_run=True)
    assert plan.status_code == 200
    assert [i["credential_id"] for i in plan.json["items"]] == [c["id"] for c in creds]
    with app.app_context():
        assert db.session.scalar(select(func.count(CredentialAction.id))) == 0


def test_requests_are_checked(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    assert _queue(readonly, operation="rotate", credential_ids=[cred["id"]]).status_code == 403
    for body, field in [
        ({"operation": "update", "credential_ids": [cred["id"]]}, "password"),
        ({"operation": "rotate", "credential_ids": [cred["id"]], "password": "x"}, "password"),
        ({"operation": "rotate", "credential_ids": [999999]}, "credential_ids"),
        ({"operation": "auto_rotate", "credential_ids": [cred["id"]]}, "auto_rotate"),
    ]:
        refused = _queue(admin, **body)
        assert refused.status_code == 422 and field in refused.json["details"], refused.json


def test_an_old_session_must_confirm_the_password(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    from portal.models import UserSession

    with app.app_context():
        for row in db.session.scalars(select(UserSession)):
            row.authenticated_at = clock.now() - timedelta(minutes=20)
        db.session.commit()
    refused = _queue(admin, operation="rotate", credential_ids=[cred["id"]])
    assert refused.status_code == 403
    accepted = _queue(
        admin, operation="rotate", credential_ids=[cred["id"]], confirm_password=PASSWORD
    )
    assert accepted.status_code == 202


def test_expiry_check_stores_dates_and_the_filter_finds_them(app, admin, lab):
    sim, env = lab
    with app.app_context():
        endpoint = db.session.scalar(select(Endpoint).where(Endpoint.source == "manager"))
        assert endpoint.expiry_requested_at is not None  # asked for by the successful sync
        written = expiry_checks.check(endpoint, sleep=lambda _: time.sleep(0.05))
        assert written > 0 and endpoint.expiry_error is None
        with_dates = db.session.scalar(
            select(func.count(Credential.id)).where(Credential.expiry_date.is_not(None))
        )
        assert with_dates >= written
        assert expiry_checks.pending() == []
    page = admin.api(
        "GET", f"/api/v1/environments/{env['id']}/credentials?expiring_within=14&per_page=200"
    ).json
    horizon = clock.iso(clock.now() + timedelta(days=14))
    assert page["items"] and all(i["expiry_date"] <= horizon for i in page["items"])
    asked = admin.api("POST", f"/api/v1/environments/{env['id']}/expiry-check")
    assert asked.status_code == 202
    with app.app_context():
        assert len(expiry_checks.pending()) == 1


def test_an_expiry_check_that_fails_keeps_what_is_stored(app, admin, lab):
    sim, env = lab
    with app.app_context():
        endpoint = db.session.scalar(select(Endpoint).where(Endpoint.source == "manager"))
        expiry_checks.check(endpoint, sleep=lambda _: time.sleep(0.05))
        before = dict(db.session.execute(select(Credential.id, Credential.expiry_date)).all())
    sim.inject_failure("500", count=50, path_prefix="/v1/credentials/expirations")
    with app.app_context():
        endpoint = db.session.scalar(select(Endpoint).where(Endpoint.source == "manager"))
        assert expiry_checks.check(endpoint, sleep=lambda _: None) == 0
        assert endpoint.expiry_error
        after = dict(db.session.execute(select(Credential.id, Credential.expiry_date)).all())
    assert after == before


def test_history_is_kept_when_an_action_changes_a_password(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    with app.app_context():
        before = db.session.scalar(
            select(func.count(PasswordHistory.id)).where(
                PasswordHistory.credential_id == cred["id"]
            )
        )
    queued = _queue(admin, operation="rotate", credential_ids=[cred["id"]])
    _finish(app, admin, queued.json["id"])
    with app.app_context():
        sync.process_queue()  # the sync the action queued
        after = db.session.scalar(
            select(func.count(PasswordHistory.id)).where(
                PasswordHistory.credential_id == cred["id"]
            )
        )
    assert after == before + 1


def test_actions_raise_alerts_without_the_password(app, admin, lab):
    from portal.models import NotificationOutbox

    sim, env = lab
    creds = _creds(app, env["id"], 2)
    queued = _queue(
        admin, operation="update", credential_ids=[creds[0]["id"]], password="Alert-Pass-55!"
    )
    _finish(app, admin, queued.json["id"])
    sim.inject_credential_fault(creds[1]["hostname"], "fail", "ROTATE", message="boom", count=1)
    queued = _queue(admin, operation="rotate", credential_ids=[creds[1]["id"]])
    _finish(app, admin, queued.json["id"])
    with app.app_context():
        events = db.session.scalars(
            select(NotificationOutbox).order_by(NotificationOutbox.id)
        ).all()
        kinds = [e.kind for e in events if e.kind.startswith("action.")]
        assert kinds == ["action.succeeded", "action.failed"]
        assert all("Alert-Pass-55!" not in (e.subject + e.body + (e.details or "")) for e in events)


def test_an_expiry_check_cut_short_by_a_stop_stays_asked_for(app, admin, lab):
    sim, env = lab
    sim.task_delay = 30.0  # SDDC Manager takes its time
    with app.app_context():
        endpoint = db.session.scalar(select(Endpoint).where(Endpoint.source == "manager"))
        started = time.monotonic()
        expiry_checks.check(endpoint, sleep=lambda _: None, may_continue=lambda: False)
        assert time.monotonic() - started < 10
        assert expiry_checks.pending() == [endpoint]  # asked again at the next start
