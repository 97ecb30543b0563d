"""Check-out and check-in through the API against the bundled simulator over HTTPS: exclusive
use, check-in and expiry and take-back rotate through SDDC Manager (the rotate action) and
the new password arrives with the sync, the history names who held which password, a failed
rotation is visible, alerted and retried with back-off until it succeeds, and the rotation
queue waits for SDDC Manager and for the holder."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from support import create_env, run_sync

from portal import sync
from portal.control import checkouts, jobs, rotation_due
from portal.lifecycle import action_runs
from portal.models import (
    AccessRequest,
    AuditEvent,
    Credential,
    CredentialAction,
    CredentialCheckout,
    NotificationOutbox,
)
from portal.platform import clock
from portal.platform.extensions import db
from portal.simulator import Simulator


@pytest.fixture
def lab(app, admin):
    with Simulator(credentials=40, seed=23, task_delay=0.05) as sim:
        env = create_env(admin, sim)
        run_sync(app, admin, env["id"])
        yield sim, env


def _creds(app, env_id, n, source="manager") -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(
            select(Credential)
            .where(Credential.environment_id == env_id, Credential.source == source)
            .order_by(Credential.id)
        ).all()
        by_host: dict[str, Credential] = {}
        for c in rows:  # one credential per host: rotations of different resources
            by_host.setdefault(c.hostname, c)
        return [
            {"id": c.id, "hostname": c.hostname, "username": c.username}
            for c in list(by_host.values())[:n]
        ]


def _password(portal, cred_id) -> str:
    response = portal.api("POST", f"/api/v1/credentials/{cred_id}/reveal")
    assert response.status_code == 200, response.json
    return response.json["password"]


def _checkout(portal, cred_id, minutes=30, reason="CHG-1 patch the host"):
    return portal.api(
        "POST",
        f"/api/v1/credentials/{cred_id}/checkout",
        json={"minutes": minutes, "reason": reason},
    )


def _drive(app, until, timeout=20.0):
    """The scheduler's steps (the dual control tick, actions, syncs) until `until()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            jobs.checkouts_and_rotations(app)
            action_runs.advance()
            sync.process_queue()
            db.session.remove()
            if until():
                return
        time.sleep(0.05)
    raise AssertionError("the rotation queue did not get there")


def _cred(app, cred_id) -> Credential:
    with app.app_context():
        cred = db.session.get(Credential, cred_id)
        db.session.expunge(cred)
        return cred


def _due(app, cred_id) -> bool:
    return _cred(app, cred_id).rotation_due_since is not None


def test_checkout_blocks_others_and_checkin_rotates_with_the_holder_in_history(
    app, admin, readonly, lab
):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    seen = _password(readonly, cred["id"])

    out = _checkout(readonly, cred["id"])
    assert out.status_code == 201, out.json
    assert out.json["holder"] == "bob" and out.json["state"] == "active"
    assert out.json["due_at"] > out.json["created_at"]

    # Someone else: 409 naming the holder and the time; the list says who holds it.
    taken = _checkout(admin, cred["id"])
    assert taken.status_code == 409
    assert taken.json["details"] == {"held_by": "bob", "until": out.json["due_at"]}
    listed = admin.api("GET", f"/api/v1/environments/{env['id']}/credentials?per_page=500").json
    row = next(i for i in listed["items"] if i["id"] == cred["id"])
    assert row["checkout"] == {
        "id": out.json["id"],
        "holder": "bob",
        "until": out.json["due_at"],
        "mine": False,
    }
    mine = readonly.api("GET", f"/api/v1/credentials?q={cred['hostname']}").json["items"]
    assert next(i for i in mine if i["id"] == cred["id"])["checkout"]["mine"] is True
    # Only the holder checks in.
    assert admin.api("POST", f"/api/v1/checkouts/{out.json['id']}/checkin").status_code == 403
    # While it is held, the queue does not rotate it.
    with app.app_context():
        assert rotation_due.run()["due"] == 0

    back = readonly.api("POST", f"/api/v1/checkouts/{out.json['id']}/checkin")
    assert back.status_code == 200, back.json
    assert back.json["state"] == "ended" and back.json["end_reason"] == "checkin"
    assert back.json["rotation"] == "queued" and back.json["action_id"]
    assert back.json["needs_rotation"] is True
    needs = admin.api("GET", "/api/v1/needs-rotation").json["items"]
    assert [(i["credential_id"], i["reason"]) for i in needs] == [(cred["id"], "checkin")]
    again = readonly.api("POST", f"/api/v1/checkouts/{out.json['id']}/checkin")
    assert again.status_code == 409
    # While SDDC Manager changes it, nobody checks it out (the password would change under them).
    busy = _checkout(admin, cred["id"])
    assert busy.status_code == 409 and busy.json["details"] == {"action_id": back.json["action_id"]}

    # SDDC Manager rotates it; the next sync brings the new password and clears the mark.
    _drive(app, lambda: not _due(app, cred["id"]) and _password(admin, cred["id"]) != seen)
    action = admin.api("GET", f"/api/v1/credential-actions/{back.json['action_id']}").json
    assert action["operation"] == "rotate" and action["state"] == "success"
    assert action["requested_by"] == "bob"
    assert admin.api("GET", "/api/v1/needs-rotation").json["items"] == []

    history = admin.api("GET", f"/api/v1/credentials/{cred['id']}/history").json["items"]
    current, former = history[0], history[1]
    assert current["current"] and current["held_by"] == []
    assert [h["holder"] for h in former["held_by"]] == ["bob"]
    assert former["held_by"][0]["end_reason"] == "checkin"
    ended = admin.api("GET", f"/api/v1/checkouts?state=ended&credential_id={cred['id']}").json
    assert [c["action_id"] for c in ended["items"]] == [back.json["action_id"]]
    assert admin.api("GET", "/api/v1/checkouts").json["items"] == []

    with app.app_context():
        names = [
            (e.action, e.actor, e.outcome)
            for e in db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action.like("credential.%"))
                .order_by(AuditEvent.id)
            )
            if e.action.startswith(("credential.check", "credential.rotation_due"))
        ]
    assert ("credential.checkout", "bob", "success") in names
    assert ("credential.checkout", "alice", "refused") in names
    assert ("credential.checkin", "bob", "success") in names
    assert ("credential.rotation_due", "system", "done") in names


def test_expiry_ends_a_checkout_and_rotates(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    seen = _password(readonly, cred["id"])
    out = _checkout(readonly, cred["id"], minutes=5)
    assert out.status_code == 201
    with app.app_context():
        assert jobs.checkouts_and_rotations(app)["expired"] == 0
    clock.offset = timedelta(minutes=6)
    _drive(app, lambda: not _due(app, cred["id"]) and _password(admin, cred["id"]) != seen)
    with app.app_context():
        checkout = db.session.get(CredentialCheckout, out.json["id"])
        assert checkout.end_reason == "expired" and checkout.ended_by_name == "system"
        assert checkout.action_id is not None
        expired = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "credential.checkout_expired")
        )
        assert json.loads(expired.details)["holder"] == "bob"


def test_a_checkout_past_its_time_gives_way_to_the_next(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    assert _checkout(readonly, cred["id"], minutes=5).status_code == 201
    clock.offset = timedelta(minutes=6)
    # Before the tick has ended it: the next check-out ends it as expired and wins.
    second = _checkout(admin, cred["id"])
    assert second.status_code == 201 and second.json["holder"] == "alice"
    with app.app_context():
        rows = db.session.scalars(select(CredentialCheckout).order_by(CredentialCheckout.id))
        assert [(c.holder_name, c.end_reason) for c in rows] == [
            ("bob", "expired"),
            ("alice", None),
        ]
        # Owed, but not rotated under the new holder's feet.
        assert rotation_due.run() == {"due": 1, "done": 0, "queued": 0, "waiting": 1}


def test_an_admin_takes_a_checkout_back(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    out = _checkout(readonly, cred["id"])
    # The reveal level is not enough to take one back.
    refused = readonly.api("POST", f"/api/v1/checkouts/{out.json['id']}/take-back")
    assert refused.status_code == 403
    back = admin.api(
        "POST", f"/api/v1/checkouts/{out.json['id']}/take-back", json={"reason": "incident over"}
    )
    assert back.status_code == 200, back.json
    assert back.json["end_reason"] == "taken_back" and back.json["ended_by"] == "alice"
    assert readonly.api("POST", f"/api/v1/checkouts/{out.json['id']}/checkin").status_code == 409
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "credential.checkout_take_back")
        )
        assert event.actor == "alice"
        assert json.loads(event.details) == {
            "checkout": str(out.json["id"]),
            "holder": "bob",
            "reason": "incident over",
        }
        assert db.session.get(Credential, cred["id"]).rotation_due_reason == "taken_back"
    _drive(app, lambda: not _due(app, cred["id"]))


def test_a_failed_rotation_is_visible_alerted_and_retried_until_it_succeeds(
    app, admin, readonly, lab
):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    seen = _password(readonly, cred["id"])
    sim.inject_credential_fault(
        cred["hostname"], "fail", "ROTATE", message="Unable to reach host over SSH", count=1
    )
    out = _checkout(readonly, cred["id"])
    back = readonly.api("POST", f"/api/v1/checkouts/{out.json['id']}/checkin").json
    first = back["action_id"]

    def failed_once():
        c = _cred(app, cred["id"])
        return c.rotation_attempts == 1

    _drive(app, failed_once)
    stored = _cred(app, cred["id"])
    assert stored.rotation_due_since is not None
    assert "Unable to reach host over SSH" in stored.rotation_error
    needs = admin.api("GET", f"/api/v1/needs-rotation?environment_id={env['id']}").json["items"]
    assert needs[0]["attempts"] == 1 and "SSH" in needs[0]["error"]
    assert needs[0]["action_id"] == first and needs[0]["action_state"] == "failed"
    row = next(
        i
        for i in admin.api(
            "GET", f"/api/v1/environments/{env['id']}/credentials?per_page=500"
        ).json["items"]
        if i["id"] == cred["id"]
    )
    assert row["needs_rotation"]["attempts"] == 1
    with app.app_context():
        alerts = db.session.scalars(
            select(NotificationOutbox).where(NotificationOutbox.kind == "checkout.rotation_failed")
        ).all()
        assert len(alerts) == 1 and "Unable to reach host over SSH" in alerts[0].body
        assert seen not in alerts[0].body + alerts[0].subject + alerts[0].details
        # Back-off: no new attempt within the first minute, and no second alert.
        assert rotation_due.run()["queued"] == 0
        db.session.commit()
    clock.offset = rotation_due.retry_wait(1) + timedelta(seconds=1)
    _drive(app, lambda: not _due(app, cred["id"]) and _password(admin, cred["id"]) != seen)
    with app.app_context():
        rotations = db.session.scalars(
            select(CredentialAction).where(CredentialAction.operation == "rotate")
        ).all()
        # SDDC Manager keeps a failed task's resources: the first is cancelled there, then a
        # new rotation runs.
        assert [a.state for a in rotations] == ["cancelled", "success"]
        assert [i.state for i in rotations[0].items] == ["cancelled"]
        assert (
            len(
                db.session.scalars(
                    select(NotificationOutbox).where(
                        NotificationOutbox.kind == "checkout.rotation_failed"
                    )
                ).all()
            )
            == 1
        )
        stored = db.session.get(Credential, cred["id"])
        assert stored.rotation_attempts == 0 and stored.rotation_error is None


def test_the_queue_waits_while_sddc_manager_runs_another_action(app, admin, lab):
    sim, env = lab
    one, two = _creds(app, env["id"], 2)
    queued = admin.api(
        "POST",
        "/api/v1/credentials/actions",
        json={"operation": "rotate", "credential_ids": [two["id"]]},
    )
    assert queued.status_code == 202
    with app.app_context():
        rotation_due.mark_due(db.session.get(Credential, one["id"]), "break_glass")
        db.session.commit()
        # Another action of the environment is queued: ours waits for SDDC Manager.
        assert rotation_due.run()["queued"] == 0
        db.session.commit()
    _drive(app, lambda: not _due(app, one["id"]))
    with app.app_context():
        ops = [
            (a.requested_by, [i.credential_id for i in a.items])
            for a in db.session.scalars(select(CredentialAction).order_by(CredentialAction.id))
        ]
    assert ops == [("alice", [two["id"]]), ("system", [one["id"]])]


def test_backoff_doubles_up_to_an_hour():
    assert rotation_due.retry_wait(0) == timedelta(0)
    assert [rotation_due.retry_wait(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert rotation_due.retry_wait(7) == timedelta(hours=1)
    assert rotation_due.retry_wait(100) == timedelta(hours=1)


def test_requests_are_checked(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    for body, field in (
        ({"minutes": 1, "reason": "x"}, "minutes"),
        ({"minutes": checkouts.MAX_MINUTES + 1, "reason": "x"}, "minutes"),
        ({"minutes": 30, "reason": "   "}, "reason"),
        ({"minutes": 30}, "reason"),
        ({"minutes": "30", "reason": "x"}, "minutes"),
        ({"minutes": 30, "reason": "x", "extra": 1}, "extra"),
    ):
        bad = readonly.api("POST", f"/api/v1/credentials/{cred['id']}/checkout", json=body)
        assert bad.status_code == 422, body
        assert field in bad.json["details"], bad.json
    assert readonly.api("GET", "/api/v1/checkouts?state=nope").status_code == 400
    assert readonly.api("POST", "/api/v1/checkouts/999999/checkin").status_code == 404
    with app.app_context():
        assert db.session.scalars(select(CredentialCheckout)).all() == []
        absent = db.session.get(Credential, cred["id"])
        absent.present = False
        db.session.commit()
    refused = _checkout(readonly, cred["id"])
    assert refused.status_code == 409 and "absent" in refused.json["error"]


def test_an_installer_copy_is_not_checked_out(app, admin, readonly):
    with Simulator(credentials=10, seed=3) as sim:
        response = admin.api(
            "POST",
            "/api/v1/environments",
            json={"name": "inst", "installer": {**_installer(sim)}},
        )
        assert response.status_code == 201, response.json
        env_id = response.json["id"]
        run_sync(app, admin, env_id, "installer")
        cred = _creds(app, env_id, 1, source="installer")[0]
        refused = _checkout(readonly, cred["id"])
        assert refused.status_code == 409
        assert "VCF Installer" in refused.json["error"]


def _installer(sim):
    from support import endpoint_body

    return endpoint_body(sim)


def test_marks_keep_their_first_reason():
    cred = Credential(hostname="h", username="u")
    rotation_due.mark_due(cred, "checkin")
    since = cred.rotation_due_since
    rotation_due.mark_due(cred, "break_glass")
    assert cred.rotation_due_reason == "checkin" and cred.rotation_due_since == since
    with pytest.raises(ValueError, match="unknown"):
        rotation_due.mark_due(cred, "whim")


def test_a_rule_that_asks_for_a_check_out_lets_only_the_holder_reveal(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    rule = {"hostname": None, "username": cred["username"], "requires": ["checkout"]}
    rule = {k: v for k, v in rule.items() if v is not None}
    answer = admin.api("PUT", f"/api/v1/environments/{env['id']}/policies", json={"rules": [rule]})
    assert answer.status_code == 200, answer.json
    refused = readonly.api("POST", f"/api/v1/credentials/{cred['id']}/reveal", json={})
    assert refused.status_code == 403 and refused.json["details"]["needs"] == ["checkout"]
    out = _checkout(readonly, cred["id"]).json
    assert _password(readonly, cred["id"])
    other = admin.api("POST", f"/api/v1/credentials/{cred['id']}/reveal", json={})
    assert other.status_code == 403
    assert other.json["details"]["held_by"] == "bob"
    assert other.json["details"]["until"] == out["due_at"]
    assert readonly.api("POST", f"/api/v1/checkouts/{out['id']}/checkin").status_code == 200
    again = readonly.api("POST", f"/api/v1/credentials/{cred['id']}/reveal", json={})
    assert again.status_code == 403 and again.json["details"]["needs"] == ["checkout"]


def test_a_check_out_past_its_time_no_longer_opens_the_password(app, admin, readonly, lab):
    """Between its time running out and the job ending it, a check-out lets nobody reveal:
    not its holder, whose time is over, and not the others, until it has ended."""
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    rule = {"username": cred["username"], "requires": ["checkout"]}
    answer = admin.api("PUT", f"/api/v1/environments/{env['id']}/policies", json={"rules": [rule]})
    assert answer.status_code == 200, answer.json
    assert _checkout(readonly, cred["id"], minutes=5).status_code == 201
    assert _password(readonly, cred["id"])
    clock.offset = timedelta(minutes=6)
    late = readonly.api("POST", f"/api/v1/credentials/{cred['id']}/reveal", json={})
    assert late.status_code == 403 and late.json["details"]["needs"] == ["checkout"]
    other = admin.api("POST", f"/api/v1/credentials/{cred['id']}/reveal", json={})
    assert other.status_code == 403 and other.json["details"]["held_by"] == "bob"


def test_a_break_glass_window_is_rotated_by_the_queue_once_it_closes(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    rule = {"username": cred["username"], "requires": ["approval"]}
    assert (
        admin.api(
            "PUT", f"/api/v1/environments/{env['id']}/policies", json={"rules": [rule]}
        ).status_code
        == 200
    )
    opened = readonly.api(
        "POST",
        f"/api/v1/credentials/{cred['id']}/access-requests",
        json={"reason": "site down", "minutes": 30, "break_glass": True},
    )
    assert opened.status_code == 201, opened.json
    seen = _password(readonly, cred["id"])
    with app.app_context():
        # Not while the window is open.
        assert rotation_due.run()["due"] == 0
    with app.app_context():
        db.session.get(AccessRequest, opened.json["id"]).closes_at = clock.now()
        db.session.commit()
        jobs.close_expired()
        assert db.session.get(Credential, cred["id"]).rotation_due_reason == "break_glass"
    # The rule goes (so that the test may read the password); the rotation is still owed.
    admin.api("PUT", f"/api/v1/environments/{env['id']}/policies", json={"rules": []})
    assert _due(app, cred["id"])
    _drive(app, lambda: not _due(app, cred["id"]) and _password(admin, cred["id"]) != seen)
    assert _password(admin, cred["id"]) != seen


def _token(portal, scope: str) -> dict:
    body = {"name": f"{scope} runbook", "scope": scope, "expires_in_days": 1}
    created = portal.api("POST", "/api/v1/me/tokens", json=body)
    assert created.status_code == 201, created.json
    return {"Authorization": f"Bearer {created.json['token']}"}


def test_a_script_checks_out_and_in_with_a_token_of_the_reveal_scope(app, admin, readonly, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    script = app.test_client(use_cookies=False)  # no cookie, no CSRF token: a script
    script.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    reveal, read = _token(readonly, "reveal"), _token(readonly, "read")
    body = {"minutes": 15, "reason": "runbook: firmware"}
    # The read scope does not check out: a check-out is for using the password.
    refused = script.post(f"/api/v1/credentials/{cred['id']}/checkout", json=body, headers=read)
    assert refused.status_code == 403
    out = script.post(f"/api/v1/credentials/{cred['id']}/checkout", json=body, headers=reveal)
    assert out.status_code == 201, out.json
    assert out.json["holder"] == "bob"
    shown = script.post(f"/api/v1/credentials/{cred['id']}/reveal", headers=reveal)
    assert shown.status_code == 200 and shown.json["password"]
    listed = script.get("/api/v1/checkouts", headers=read).json["items"]
    assert [c["id"] for c in listed] == [out.json["id"]]
    # A reveal token does not take anyone's check-out back (that is the admin scope's).
    admin_reveal = _token(admin, "reveal")
    taking = script.post(f"/api/v1/checkouts/{out.json['id']}/take-back", headers=admin_reveal)
    assert taking.status_code == 403
    back = script.post(f"/api/v1/checkouts/{out.json['id']}/checkin", headers=reveal)
    assert back.status_code == 200, back.json
    assert back.json["end_reason"] == "checkin" and back.json["rotation"] == "queued"
    _drive(app, lambda: not _due(app, cred["id"]))


def test_an_absent_credential_stays_owed_with_the_reason_until_it_is_back(app, admin, lab):
    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    with app.app_context():
        row = db.session.get(Credential, cred["id"])
        rotation_due.mark_due(row, "break_glass")
        row.present = False
        db.session.commit()
        assert rotation_due.run()["queued"] == 0
        db.session.commit()
        row = db.session.get(Credential, cred["id"])
        assert row.rotation_error == rotation_due.CANNOT_ROTATE["absent"]
        row.present = True
        db.session.commit()
        assert rotation_due.run()["queued"] == 1
        db.session.commit()
        assert db.session.get(Credential, cred["id"]).rotation_error is None
    _drive(app, lambda: not _due(app, cred["id"]))


def test_a_check_out_ends_once_when_two_end_it_at_once(app, admin, readonly, lab):
    """A check-in and the job's expiry at the same moment: the first ends it, the other finds
    it ended (no second end, audit line or rotation mark)."""
    from sqlalchemy import update

    sim, env = lab
    cred = _creds(app, env["id"], 1)[0]
    out = _checkout(readonly, cred["id"]).json
    with app.app_context():
        stale = db.session.get(CredentialCheckout, out["id"])  # read before the other ends it
        db.session.execute(
            update(CredentialCheckout)
            .where(CredentialCheckout.id == out["id"])
            .values(ended_at=clock.now(), ended_by_name="bob", end_reason="checkin")
            .execution_options(synchronize_session=False)
        )
        with pytest.raises(checkouts.CheckoutError, match="ended already"):
            checkouts.end(stale, "expired", "system")
        clock.offset = timedelta(hours=2)  # past its time, but ended: not ended again
        assert checkouts.expire_due() == 0
        assert db.session.get(Credential, cred["id"]).rotation_due_since is None
        expired = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "credential.checkout_expired")
        ).all()
        assert expired == []
