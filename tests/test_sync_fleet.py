"""VCF Operations fleet management as a source, through the API and the sync engine against
the simulator over real HTTPS: 9.0 (locker) and 9.1 (fleet password management) estates,
rotation and history, the locker decryption password (write-only, audited, refused
clearly with nothing stored changed), status, expiry on the dashboard, exports."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from sqlalchemy import select
from support import PASSWORD, fleet_body, run_sync

from portal import sync
from portal.alerts import notifications
from portal.alerts.expiring import expiry_counts
from portal.identity import tokens
from portal.models import (
    AuditEvent,
    Credential,
    Endpoint,
    NotificationOutbox,
    PasswordHistory,
    User,
)
from portal.platform.crypto import LOCKER_PASSWORD, cipher
from portal.platform.extensions import db
from portal.simulator import Simulator
from portal.vcf.fleet_accounts import expiry_iso


def create_fleet_env(admin, sim, name="sfo-fleet", **extra):
    response = admin.api(
        "POST", "/api/v1/environments", json={"name": name, "fleet": fleet_body(sim, **extra)}
    )
    assert response.status_code == 201, response.json
    return response.json


def stored(app):
    """Every stored credential and history row: what a failed sync must leave alone."""
    with app.app_context():
        creds = db.session.execute(
            select(
                Credential.id,
                Credential.password_enc,
                Credential.present,
                Credential.last_changed_at,
                Credential.expiry_status,
            )
        ).all()
        history = db.session.execute(
            select(PasswordHistory.id, PasswordHistory.password_enc, PasswordHistory.changed_at)
        ).all()
    return sorted(map(tuple, creds)), sorted(map(tuple, history))


def fleet_items(admin, env_id):
    page = admin.client.get(
        f"/api/v1/environments/{env_id}/credentials?source=fleet&per_page=500"
    ).json
    return page["items"]


@pytest.fixture(params=["9.0", "9.1"])
def estate(request):
    with Simulator(credentials=30, seed=11, installer_version=request.param) as sim:
        yield sim


def test_every_management_appliance_account_synced_with_its_password(app, admin, estate):
    env = create_fleet_env(admin, estate)
    assert env["fleet"]["locker_password_set"] is True
    assert estate.fleet_root_password not in json.dumps(env)
    assert '"locker_password":' not in json.dumps(env)
    run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "success", run
    truth = {(a.fqdn, a.username): a for a in estate.fleet_accounts()}
    assert run["counts"]["new"] == len(truth)
    items = fleet_items(admin, env["id"])
    assert len(items) == len(truth)
    for item in items:
        account = truth[(item["hostname"], item["username"])]
        assert item["source"] == "fleet"
        assert item["resource_type"] == account.appliance
        revealed = admin.api("POST", f"/api/v1/credentials/{item['id']}/reveal")
        assert revealed.json["password"] == account.password
    body = admin.client.get(f"/api/v1/environments/{env['id']}").json
    expected = (
        "VCF 9.1 fleet password management"
        if estate.fleet_version == "9.1"
        else "VCF 9.0 fleet management locker"
    )
    assert body["fleet"]["api_detected"] == expected
    assert body["status"]["fleet"]["state"] == "success"
    assert body["status"]["fleet"]["credential_count"] == len(truth)
    with app.app_context():
        uses = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "fleet.locker_password.use")
        ).all()
        # "Sync now": the person who asked is the actor, never "scheduler"
        assert len(uses) == 1 and uses[0].actor == run["requested_by"] != "scheduler"
        assert json.loads(uses[0].details)["decryptions"] == str(len(truth))
        secret = estate.fleet_root_password
        every = db.session.scalars(select(AuditEvent)).all()
        assert all(secret not in (e.target + (e.details or "")) for e in every)


def test_9_1_status_and_expiry_stored_and_counted_on_the_dashboard(app, admin):
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        items = {(i["hostname"], i["username"]): i for i in fleet_items(admin, env["id"])}
        accounts = sim.fleet_accounts()
    now_ms = int(time.time() * 1000)
    for account in accounts:
        item = items[(account.fqdn, account.username)]
        assert item["expiry_status"] == account.status(now_ms)
        assert item["expiry_date"] == expiry_iso(account.expiry_ms)
    expired = sum(1 for a in accounts if a.status(now_ms) == "EXPIRED")
    expiring = sum(1 for a in accounts if a.status(now_ms) == "EXPIRING")
    assert expired and expiring
    with app.app_context():
        counts = expiry_counts((14,))[env["id"]]
    assert counts["expired"] == expired and counts[14] == expiring
    page = admin.client.get("/").get_data(as_text=True)
    assert f"{expired} already expired" in page and f"{expiring} password" in page
    # the daily digest alert and the metrics count them as they count SDDC Manager's
    with app.app_context():
        assert notifications.expiry_digest()
        digest = json.loads(
            db.session.scalar(
                select(NotificationOutbox.details).where(NotificationOutbox.kind == "expiry.digest")
            )
        )
        user = db.session.scalar(select(User).where(User.username == "alice"))
        _, token = tokens.create(user, "prometheus", "read", 30, None)
        db.session.commit()
    assert (digest["expiring"], digest["expired"]) == (expiring, expired)
    metrics = admin.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    text = metrics.get_data(as_text=True)
    assert f'vcf_portal_passwords_expired{{environment="sfo-fleet"}} {expired}.0' in text


def test_a_rotation_appears_at_the_next_sync_with_the_old_value_in_history(app, admin, estate):
    env = create_fleet_env(admin, estate)
    assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
    before = {(a.fqdn, a.username): a.password for a in estate.fleet_accounts()}
    rotated = estate.fleet_rotate(1)
    run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "success", run
    assert run["counts"]["changed"] == 1 and run["counts"]["new"] == 0
    fqdn, _, user = rotated[0].partition(" ")
    item = next(
        i
        for i in fleet_items(admin, env["id"])
        if (i["hostname"], i["username"])
        == (
            fqdn,
            user,
        )
    )
    current = admin.api("POST", f"/api/v1/credentials/{item['id']}/reveal").json["password"]
    assert current != before[(fqdn, user)]
    history = admin.client.get(f"/api/v1/credentials/{item['id']}/history").json["items"]
    assert len(history) == 2 and history[0]["current"]
    old = admin.api("POST", f"/api/v1/credentials/{item['id']}/history/{history[1]['id']}/reveal")
    assert old.json["password"] == before[(fqdn, user)]


def test_a_wrong_locker_password_fails_clearly_and_changes_nothing(app, admin, estate):
    env = create_fleet_env(admin, estate)
    assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
    estate.fleet_rotate(2)  # would show as changes, were anything written
    before = stored(app)
    estate.fleet_root_password = "Root-Password-Changed-1!"
    run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "failed"
    assert "refused the locker decryption password" in run["error"]
    assert stored(app) == before
    status = admin.client.get(f"/api/v1/environments/{env['id']}").json["status"]["fleet"]
    assert status["state"] == "failed" and "locker decryption password" in status["last_error"]
    with app.app_context():
        uses = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "fleet.locker_password.use")
        ).all()
    assert len(uses) == 2  # the refused attempt is audited too
    # the operator types the new one: the next sync reads the rotated values
    changed = admin.api(
        "PATCH",
        f"/api/v1/environments/{env['id']}",
        json={"fleet": {"locker_password": "Root-Password-Changed-1!"}},
    )
    assert changed.status_code == 200, changed.json
    run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "success" and run["counts"]["changed"] == 2


@pytest.mark.parametrize(
    ("mode", "state", "words"),
    [("401", "failed", "HTTP 401"), ("500", "failed", "HTTP 500"), ("slow", "success", None)],
)
def test_faults_of_the_fleet_surfaces(app, admin, mode, state, words):
    app.config.update(VCF_RETRY_BACKOFF=0.01)
    with Simulator(credentials=30, seed=11, installer_version="9.1", slow_delay=0.2) as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        sim.fleet_rotate(1)
        before = stored(app)
        sim.inject_failure(mode, count=20, path_prefix="/suite-api/api/fleet-management/")
        run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == state, run
    if words:
        assert words in run["error"]
        assert stored(app) == before
    else:
        assert run["counts"]["changed"] == 1


def test_9_1_without_a_locker_password_lists_no_values_and_says_so(app, admin):
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim, locker_password=None)
        assert env["fleet"]["locker_password_set"] is False
        run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "partial"
    assert "set the locker decryption password" in run["error"]
    assert fleet_items(admin, env["id"]) == []


def test_the_locker_password_is_write_only_and_stored_encrypted(app, admin, sim):
    env = create_fleet_env(admin, sim, locker_password="Locker-Root-Pw-1!")
    env_id = env["id"]
    with app.app_context():
        endpoint = db.session.scalar(select(Endpoint).where(Endpoint.source == "fleet"))
        assert b"Locker-Root-Pw-1!" not in endpoint.locker_password_enc
        assert cipher().decrypt(endpoint.locker_password_enc, LOCKER_PASSWORD) == (
            "Locker-Root-Pw-1!"
        )
    # an empty or missing value keeps it
    kept = admin.api(
        "PATCH", f"/api/v1/environments/{env_id}", json={"fleet": {"locker_password": ""}}
    )
    assert kept.status_code == 200 and kept.json["fleet"]["locker_password_set"]
    # a new host: both passwords must be typed again, nothing is changed
    moved = admin.api(
        "PATCH",
        f"/api/v1/environments/{env_id}",
        json={"fleet": {"host": "fleet.other.example", "password": "Service-Pw-1!"}},
    )
    assert moved.status_code == 422
    assert "locker decryption password again" in moved.json["details"]["fleet.locker_password"]
    too_long = admin.api(
        "PATCH", f"/api/v1/environments/{env_id}", json={"fleet": {"locker_password": "x" * 513}}
    )
    assert too_long.status_code == 422 and "fleet.locker_password" in too_long.json["details"]
    with app.app_context():
        audit = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "environment.update")
        ).all()
    assert all("Locker-Root-Pw-1!" not in (e.details or "") for e in audit)
    listed = admin.client.get("/api/v1/environments").json["items"]
    assert listed[0]["fleet"]["locker_password_set"] is True
    assert "Locker-Root-Pw-1!" not in json.dumps(listed)


def test_sync_of_the_fleet_source_alone(app, admin, sim):
    response = admin.api(
        "POST",
        "/api/v1/environments",
        json={
            "name": "three",
            "manager": {
                "host": sim.host,
                "port": sim.port,
                "username": sim.admin_username,
                "password": sim.admin_password,
                "ca_pem": sim.ca_pem,
            },
            "fleet": fleet_body(sim),
        },
    )
    env_id = response.json["id"]
    with app.app_context():
        sync.process_queue()
    queued = admin.api("POST", f"/api/v1/environments/{env_id}/sync", json={"source": "fleet"})
    assert queued.status_code == 202
    assert [r["source"] for r in queued.json["runs"]] == ["fleet"]
    refused = admin.api("POST", f"/api/v1/environments/{env_id}/sync", json={"source": "cloud"})
    assert refused.status_code == 422


def test_definitions_carry_the_fleet_endpoint_never_its_locker_password(app, admin, sim):
    create_fleet_env(admin, sim, locker_password="Locker-Root-Pw-2!")
    plain = admin.client.get("/api/v1/environments/definitions")
    document = json.loads(plain.get_data())
    with_passwords = admin.api(
        "POST",
        "/api/v1/environments/definitions/export",
        json={"include_passwords": True, "confirm_password": PASSWORD},
    )
    assert with_passwords.status_code == 200
    full = json.loads(with_passwords.get_data())
    assert full["environments"][0]["fleet"]["password"] == sim.installer_password
    for exported in (document, full):
        assert "Locker-Root-Pw-2!" not in json.dumps(exported)
        assert "locker_password" not in exported["environments"][0]["fleet"]
    item = document["environments"][0]
    assert item["fleet"]["host"] == sim.host and item["manager"] is None
    item["name"] = "copy"
    item["fleet"]["password"] = "Service-Pw-2!"
    done = admin.api("POST", "/api/v1/environments/definitions/import", json=document)
    assert done.status_code == 200, done.json
    copy = next(
        e for e in admin.client.get("/api/v1/environments").json["items"] if e["name"] == "copy"
    )
    assert copy["fleet"]["port"] == sim.port and copy["fleet"]["locker_password_set"] is False


def test_the_export_names_source_appliance_type_and_expiry(app, admin):
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        truth = {(a.fqdn, a.username): a for a in sim.fleet_accounts()}
    response = admin.post(f"/environments/{env['id']}/export", {"format": "csv", "scope": "all"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == len(truth)
    for row in rows:
        account = truth[(row["Host"], row["User"])]
        assert row["Source"] == "fleet"
        assert row["Resource type"] == account.appliance
        # formula-safe: a leading = + - @ is escaped with a quote
        escaped = account.password[:1] in ("=", "+", "-", "@", "\t", "\r")
        assert row["Password"] == ("'" if escaped else "") + account.password
        assert row["Expiry status"] == account.status(int(time.time() * 1000))
        assert row["Expiry date"] == expiry_iso(account.expiry_ms)


def test_test_connection_names_the_api_that_answered(app, admin, estate):
    body = {**fleet_body(estate), "source": "fleet"}
    answer = admin.api("POST", "/api/v1/environments/test-connection", json=body).json
    assert answer["ok"] is True, answer
    accounts = len(estate.fleet_accounts())
    if estate.fleet_version == "9.1":
        assert f"VCF 9.1 fleet password management {estate.host}:{estate.port}" in answer["message"]
        assert answer["message"].endswith(f"{accounts} accounts")
    else:
        assert answer["message"].endswith(f"{accounts} locker entries")
        assert "VCF 9.0 fleet management locker" in answer["message"]
    assert answer["credential_count"] == accounts
    wrong = admin.api(
        "POST", "/api/v1/environments/test-connection", json={**body, "password": "wrong-pw!"}
    ).json
    assert wrong["ok"] is False and "bad credentials for user admin@local" in wrong["message"]


def test_hostile_fleet_data_is_kept_exactly_and_exported_safely(app, admin):
    with Simulator(credentials=30, seed=11, installer_version="9.1", hostile=True) as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        hostile = sim.fleet_accounts()[-1]
    assert hostile.username == "<script>alert(1)</script>"
    item = next(i for i in fleet_items(admin, env["id"]) if i["username"] == hostile.username)
    assert item["hostname"] == "\u202eexe.cod.rainpole.io"
    revealed = admin.api("POST", f"/api/v1/credentials/{item['id']}/reveal").json["password"]
    assert revealed == hostile.password and revealed.startswith("=")
    response = admin.post(f"/environments/{env['id']}/export", {"format": "csv", "scope": "all"})
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    row = next(r for r in rows if "script" in r["User"])
    assert row["Password"] == "'" + hostile.password
    assert "\u202e" not in row["Host"]


def test_another_host_forgets_the_api_detected(app, admin):
    with Simulator(credentials=30, seed=11, installer_version="9.0") as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
    shown = admin.client.get(f"/api/v1/environments/{env['id']}").json["fleet"]
    assert shown["api_detected"] == "VCF 9.0 fleet management locker"
    same = admin.api(
        "PATCH", f"/api/v1/environments/{env['id']}", json={"fleet": {"sync_interval_minutes": 30}}
    )
    assert same.json["fleet"]["api_detected"] == "VCF 9.0 fleet management locker"
    moved = admin.api(
        "PATCH",
        f"/api/v1/environments/{env['id']}",
        json={
            "fleet": {
                "host": "fleet.example.test",
                "password": "Service-Pw-3!",
                "locker_password": "Root-Pw-3!",
            }
        },
    )
    assert moved.status_code == 200, moved.json
    assert moved.json["fleet"]["api_detected"] is None


def test_9_1_without_an_answering_locker_keeps_the_values_and_says_so(app, admin):
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        before = stored(app)
        sim.fleet_rotate(1)
        sim.inject_failure("404", count=5, path_prefix="/lcm/locker/api/passwords$")
        run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "partial"
    assert "the locker did not answer (HTTP 404)" in run["error"]
    assert run["counts"]["changed"] == 0 and run["counts"]["absent"] == 0
    after = stored(app)
    # passwords and history unchanged; only the fleet status may have moved on
    assert [row[:4] for row in after[0]] == [row[:4] for row in before[0]]
    assert after[1] == before[1]


def test_a_listing_short_of_its_total_fails_the_sync_and_marks_nothing_absent(
    app, admin, monkeypatch
):
    from portal.vcf import fleet as fleet_module

    monkeypatch.setattr(fleet_module, "PAGE_SIZE", 2)
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        before = stored(app)
        surface = sim._fleet
        original = surface._query

        def short(query, body):  # the second page comes back empty, the total unchanged
            status, answer = original(query, body)
            if query.get("page") == ["1"]:
                answer["vcfPasswordAccounts"] = []
            return status, answer

        surface._query = short
        run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "failed", run
    assert "is empty after 2 of" in run["error"]
    assert run["counts"]["absent"] == 0
    assert stored(app) == before


def test_a_stray_404_on_a_9_1_estate_fails_and_keeps_everything(app, admin):
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        before = stored(app)
        sim.inject_failure("404", count=1, path_prefix="/suite-api/api/auth/token/acquire")
        run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "failed", run
    assert "edit the endpoint's host or port" in run["error"]
    assert run["counts"]["absent"] == 0
    assert stored(app) == before
    shown = admin.client.get(f"/api/v1/environments/{env['id']}").json["fleet"]
    assert shown["api_detected"] == "VCF 9.1 fleet password management"


@pytest.mark.parametrize(
    ("mode", "path", "words"),
    [
        ("500", "/lcm/locker/api/passwords$", "HTTP 500"),
        ("403", "/lcm/locker/api/passwords$", "access denied"),
        ("500", "/lcm/locker/api/v2/passwords/", "HTTP 500"),
    ],
)
def test_9_1_with_a_failing_locker_stores_status_and_expiry_and_keeps_the_values(
    app, admin, mode, path, words
):
    app.config.update(VCF_RETRY_BACKOFF=0.01)
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim)
        assert run_sync(app, admin, env["id"], "fleet")["state"] == "success"
        before = stored(app)
        sim.fleet_rotate(1)
        sim.inject_failure(mode, count=20, path_prefix=path)
        run = run_sync(app, admin, env["id"], "fleet")
    assert run["state"] == "partial", run
    assert "the fleet management locker at" in run["error"] and words in run["error"]
    assert "stored passwords are unchanged" in run["error"]
    assert "decryption password" not in run["error"]
    assert run["counts"]["changed"] == 0 and run["counts"]["absent"] == 0
    after = stored(app)
    assert [row[:4] for row in after[0]] == [row[:4] for row in before[0]]
    assert after[1] == before[1]


@pytest.mark.parametrize("where", ["crash", "store", "interrupted", "finish"])
def test_every_run_that_decrypted_is_audited_with_who_asked(app, admin, monkeypatch, where):
    """The locker password's use is audited whatever ends the run after the fetch: a crash,
    a failed write, an interruption, or an end that cannot be recorded."""
    from portal.sync import runs

    def broken(*args, **kwargs):
        raise RuntimeError("simulated")

    if where == "crash":
        monkeypatch.setattr(runs, "_set_phase", broken)
    elif where == "store":
        monkeypatch.setattr(runs, "apply_fetch", broken)
    elif where == "interrupted":

        def interrupted(*args, **kwargs):
            raise runs._NoLongerOurs(0)

        monkeypatch.setattr(runs, "apply_fetch", interrupted)
    else:
        monkeypatch.setattr(runs, "_finish", lambda *args, **kwargs: False)
    app.config.update(SYNC_RECORD_FAILURE_SECONDS=0)
    with Simulator(credentials=30, seed=11, installer_version="9.1") as sim:
        env = create_fleet_env(admin, sim)
        run = run_sync(app, admin, env["id"], "fleet")
        accounts = len(sim.fleet_accounts())
    with app.app_context():
        uses = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "fleet.locker_password.use")
        ).all()
    assert len(uses) == 1, where
    assert uses[0].actor == run["requested_by"] != "scheduler"
    assert json.loads(uses[0].details) == {"run": str(run["id"]), "decryptions": str(accounts)}
