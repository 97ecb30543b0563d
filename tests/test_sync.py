"""The sync engine against the simulator over real HTTPS: history, absence, failures."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import func, select
from support import create_env, run_sync

from portal import sync
from portal.models import AuditEvent, Credential, Endpoint, PasswordHistory, SyncRun
from portal.platform.extensions import db
from portal.simulator import Simulator
from portal.vcf import FetchedCredential


@pytest.fixture
def fast_app(app):
    app.config.update(VCF_CONNECT_TIMEOUT=2.0, VCF_READ_TIMEOUT=1.0)
    return app


def stored_state(app):
    """Everything a sync could change, to prove a failed one changed nothing."""
    with app.app_context():
        creds = db.session.execute(
            select(
                Credential.id,
                Credential.hostname,
                Credential.username,
                Credential.password_enc,
                Credential.present,
                Credential.last_changed_at,
            )
        ).all()
        history = db.session.execute(
            select(PasswordHistory.id, PasswordHistory.password_enc, PasswordHistory.changed_at)
        ).all()
    return sorted(map(tuple, creds)), sorted(map(tuple, history))


def test_first_sync_and_reveal(app, admin, sim):
    env = create_env(admin, sim)
    run = run_sync(app, admin, env["id"])
    assert run["state"] == "success", run
    assert run["counts"] == {"new": 300, "changed": 0, "unchanged": 0, "absent": 0}
    page = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?per_page=500").json
    assert page["total"] == 300 and len(page["items"]) == 300
    assert all("password" not in item for item in page["items"])
    upstream = {
        (c["resource"]["resourceName"], c["username"], c["credentialType"]): c
        for c in sim.credentials_snapshot()
    }
    item = page["items"][0]
    revealed = admin.api("POST", f"/api/v1/credentials/{item['id']}/reveal").json["password"]
    key = (item["hostname"], item["username"], item["credential_type"])
    assert revealed == upstream[key]["password"]
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "credential.reveal")
        )
        assert event.actor == "alice" and item["hostname"] in event.target
        assert revealed not in (event.target + (event.details or ""))
        endpoint = db.session.scalar(select(Endpoint))
        assert endpoint.last_status == "success" and endpoint.last_error is None
    status = admin.client.get(f"/api/v1/environments/{env['id']}").json["status"]["manager"]
    assert status["state"] == "success" and status["credential_count"] == 300


def test_paging_follows_total_pages(app, admin):
    with Simulator(credentials=1234, seed=3) as big:
        env = create_env(admin, big)
        big.reset_hits()
        run = run_sync(app, admin, env["id"])
        assert run["counts"]["new"] == 1234
        assert big.hits["GET /v1/credentials"] == 3


def test_unchanged_rotation_history_and_absence(app, admin, sim):
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    again = run_sync(app, admin, env["id"])
    assert again["counts"] == {"new": 0, "changed": 0, "unchanged": 300, "absent": 0}
    rotated = sim.rotate(0.2)
    after = run_sync(app, admin, env["id"])
    assert after["counts"]["changed"] == rotated == 60
    assert after["counts"]["unchanged"] == 240
    with app.app_context():
        changed_id = db.session.scalar(
            select(PasswordHistory.credential_id).where(PasswordHistory.changed_at.is_not(None))
        )
    history = admin.client.get(f"/api/v1/credentials/{changed_id}/history").json["items"]
    assert len(history) == 2 and history[0]["current"] and not history[1]["current"]
    assert history[1]["changed_at"] and history[1]["changed_by"] == "SYNC"
    old = admin.api("POST", f"/api/v1/credentials/{changed_id}/history/{history[1]['id']}/reveal")
    new = admin.api("POST", f"/api/v1/credentials/{changed_id}/reveal")
    assert old.json["password"] != new.json["password"]
    removed = sim.remove(5)
    gone = run_sync(app, admin, env["id"])
    removed_count = sum(1 for _ in removed)
    assert gone["counts"]["absent"] >= 5 and gone["counts"]["absent"] == removed_count
    absent = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?status=absent").json
    assert absent["total"] == removed_count
    assert all(item["status"] == "absent" for item in absent["items"])
    # absent credentials keep their history and password until an admin purges one
    victim = absent["items"][0]["id"]
    assert admin.api("POST", f"/api/v1/credentials/{victim}/reveal").json["password"]
    assert admin.api("DELETE", f"/api/v1/credentials/{victim}").status_code == 204
    with app.app_context():
        assert db.session.get(Credential, victim) is None


def test_returning_credential_is_present_again(app, admin, sim):
    env = create_env(admin, sim)
    item = FetchedCredential(
        source="manager",
        hostname="esx9.example",
        username="root",
        password="First-Password-1",
        credential_type="SSH",
        account_type="USER",
        resource_type="ESXI",
    )
    with app.app_context():
        assert sync.apply_fetch(env["id"], "manager", [item]).new == 1
        db.session.commit()
        assert sync.apply_fetch(env["id"], "manager", []).absent == 1
        db.session.commit()
        counts = sync.apply_fetch(env["id"], "manager", [item])
        db.session.commit()
        assert counts.unchanged == 1 and counts.absent == 0
        cred = db.session.scalar(select(Credential))
        assert cred.present and cred.absent_since is None
        missing = dataclasses.replace(item, password=None)
        assert sync.apply_fetch(env["id"], "manager", [missing]).unchanged == 1
        db.session.commit()
        assert db.session.scalar(select(func.count(PasswordHistory.id))) == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("500", "500"),
        ("401", "401"),
        ("403", "ADMIN role"),
        ("timeout", "did not answer"),
        ("reset", "reset"),
        ("malformed", "invalid JSON"),
    ],
)
def test_failure_changes_nothing(fast_app, admin, sim, mode, expected):
    app = fast_app
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    sim.rotate(0.5)
    sim.remove(3)
    before = stored_state(app)
    sim.inject_failure(mode, count=10, path_prefix="/v1/credentials")
    run = run_sync(app, admin, env["id"])
    sim.clear_failures()
    assert run["state"] == "failed"
    assert expected.lower() in run["error"].lower(), run["error"]
    assert stored_state(app) == before
    status = admin.client.get(f"/api/v1/environments/{env['id']}").json["status"]["manager"]
    assert status["state"] == "failed" and status["last_error"] == run["error"]
    assert sim.admin_password not in run["error"]


def test_tls_verification_failure_names_fingerprint(app, admin, sim):
    env = create_env(admin, sim, ca_pem=None)
    run = run_sync(app, admin, env["id"])
    assert run["state"] == "failed"
    assert sim.certificate_sha256 in run["error"]
    unchanged = stored_state(app)
    no_password = admin.api(
        "PATCH",
        f"/api/v1/environments/{env['id']}",
        json={"manager": {"pinned_sha256": sim.certificate_sha256}},
    )
    assert no_password.status_code == 422 and "manager.password" in no_password.json["details"]
    assert stored_state(app) == unchanged
    pinned = admin.api(
        "PATCH",
        f"/api/v1/environments/{env['id']}",
        json={"manager": {"pinned_sha256": sim.certificate_sha256, "password": sim.admin_password}},
    )
    assert pinned.status_code == 200
    assert run_sync(app, admin, env["id"])["state"] == "success"


def test_one_active_run_per_source(app, admin, sim):
    env = create_env(admin, sim)
    with app.app_context():
        db.session.execute(db.delete(SyncRun))
        db.session.commit()
    first = admin.api("POST", f"/api/v1/environments/{env['id']}/sync", json={}).json
    second = admin.api("POST", f"/api/v1/environments/{env['id']}/sync", json={}).json
    assert first["id"] == second["id"]
    with app.app_context():
        assert sync.process_queue() == [first["id"]]
        assert sync.execute_run(first["id"]) is None  # already claimed and finished
        assert db.session.scalar(select(func.count(SyncRun.id))) == 1


def test_secrets_never_in_database_file(tmp_path, app, admin, sim):
    canary = "Canary-Service-Pass-4242"
    with Simulator(credentials=200, seed=11, password=canary) as canary_sim:
        env = create_env(admin, canary_sim)
        run_sync(app, admin, env["id"])
        canary_sim.rotate(0.5)
        run_sync(app, admin, env["id"])
        fetched = [c["password"] for c in canary_sim.credentials_snapshot()]
    with app.app_context():
        assert db.session.scalar(select(func.count(PasswordHistory.id))) == 300
    data_dir = tmp_path / "data"
    blobs = b"".join(p.read_bytes() for p in data_dir.glob("vcf_credentials.db*"))
    assert len(blobs) > 0
    for secret in [canary, *fetched]:
        for encoding in ("utf-8", "utf-16-le"):
            assert secret.encode(encoding) not in blobs, "a secret is stored in clear"


@pytest.mark.parametrize("form", ["raw", "url", "json", "spaced", "cut"])
def test_server_echo_of_the_password_is_masked(fast_app, admin, form):
    from urllib.parse import quote

    secret = 'Echo "Pass\\word" 42!'
    with Simulator(credentials=20, seed=1, password=secret) as echo_sim:
        env = create_env(admin, echo_sim)
        shown = {
            "raw": secret,
            "url": quote(secret, safe=""),
            "json": json.dumps(secret)[1:-1],
            "spaced": secret.replace(" ", "  "),
            "cut": secret,
        }[form]
        prefix = "x" * 290 if form == "cut" else "login failed for"
        echo_sim.inject_failure(
            "500", count=10, path_prefix="/v1/tokens", message=f"{prefix} {shown} end"
        )
        run = run_sync(fast_app, admin, env["id"])
    assert run["state"] == "failed"
    for leak in (secret, "Pass", "word", quote(secret, safe="")):
        assert leak not in run["error"], run["error"]


def test_sync_requested_by_a_person_is_audited(app, admin):
    endpoint = {"host": "vcf.example.test", "username": "svc", "password": "pw"}
    env = admin.api("POST", "/api/v1/environments", json={"name": "lab", "manager": endpoint}).json
    with app.app_context():
        first = db.session.scalar(select(SyncRun))
        first.state = "success"  # finished, so the next request queues a run of its own
        db.session.commit()
        first_id = first.id
    response = admin.api("POST", f"/api/v1/environments/{env['id']}/sync", json={})
    assert response.status_code == 202
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sync.request").order_by(AuditEvent.id)
        ).all()
    assert [(e.actor, e.ip, e.target) for e in events] == [
        ("alice", "127.0.0.1", "lab / manager")
    ] * 2
    assert [json.loads(e.details) for e in events] == [
        {"run": str(first_id), "source": "manager", "trigger": "schedule"},
        {"run": str(response.json["id"]), "source": "manager", "trigger": "manual"},
    ]


def _fetched(password: str, hostname: str = "esx9.example") -> FetchedCredential:
    return FetchedCredential(
        source="manager",
        hostname=hostname,
        username="root",
        password=password,
        credential_type="SSH",
        account_type="USER",
        resource_type="ESXI",
    )


def test_unchanged_passwords_are_found_without_decrypting(app, admin, sim, monkeypatch):
    from portal.platform.crypto import CREDENTIAL_PASSWORD_MAC, DataCipher, cipher

    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    with app.app_context():
        rows = db.session.execute(select(Credential.password_enc, Credential.password_mac)).all()
        data_cipher = cipher()
        for blob, mac in rows:
            plain = data_cipher.decrypt(blob, "credential.password")
            assert mac == data_cipher.mac(plain, CREDENTIAL_PASSWORD_MAC) and len(mac) == 32

    decrypt = DataCipher.decrypt

    def refuse(self, blob, purpose):
        assert purpose != "credential.password", "a sync decrypted a stored password"
        return decrypt(self, blob, purpose)

    monkeypatch.setattr(DataCipher, "decrypt", refuse)
    sim.rotate(0.2)
    run = run_sync(app, admin, env["id"])
    assert run["counts"] == {"new": 0, "changed": 60, "unchanged": 240, "absent": 0}


def test_rows_without_a_keyed_hash_are_compared_once_and_get_one(app, admin):
    from portal.platform.crypto import CREDENTIAL_PASSWORD_MAC, cipher

    env = admin.api(
        "POST",
        "/api/v1/environments",
        json={
            "name": "old",
            "manager": {"host": "vcf.example.test", "username": "u", "password": "p"},
        },
    ).json
    same, rotated = (
        _fetched("Same-Password-1", "a.example"),
        _fetched("Old-Password-1", "b.example"),
    )
    with app.app_context():
        sync.apply_fetch(env["id"], "manager", [same, rotated])
        # as synced before the column existed
        db.session.execute(db.update(Credential).values(password_mac=None))
        db.session.commit()
        new = dataclasses.replace(rotated, password="New-Password-2")
        counts = sync.apply_fetch(env["id"], "manager", [same, new])
        db.session.commit()
        assert (counts.unchanged, counts.changed) == (1, 1)
        macs = dict(db.session.execute(select(Credential.hostname, Credential.password_mac)).all())
        data_cipher = cipher()
        assert macs == {
            "a.example": data_cipher.mac("Same-Password-1", CREDENTIAL_PASSWORD_MAC),
            "b.example": data_cipher.mac("New-Password-2", CREDENTIAL_PASSWORD_MAC),
        }
        assert db.session.scalar(select(func.count(PasswordHistory.id))) == 3


def test_keyed_hash_is_never_shown_exported_or_logged(app, admin, sim, caplog):
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    with app.app_context():
        macs = db.session.scalars(select(Credential.password_mac)).all()
    page = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?per_page=500").json
    export = admin.post(f"/environments/{env['id']}/export", {"format": "csv", "scope": "all"})
    assert export.status_code == 200
    csv = export.get_data()
    shown = json.dumps(page) + csv.decode("utf-8", "replace") + caplog.text
    assert all("mac" not in key for key in page["items"][0])
    for mac in macs:
        assert mac.hex() not in shown and mac.hex().upper() not in shown


@pytest.mark.parametrize("ids_by_key", [False, True])
def test_batched_writes_link_history_and_metadata(app, admin, monkeypatch, ids_by_key):
    from portal.platform.crypto import CREDENTIAL_PASSWORD, HISTORY_PASSWORD, cipher
    from portal.sync import store

    monkeypatch.setattr(store, "_BATCH", 7)  # several statements for a few rows
    if ids_by_key:  # the new ids read back by key instead of counted from the last id
        monkeypatch.setattr(store, "_max_credential_id", lambda _connection: -5)
    env = admin.api(
        "POST",
        "/api/v1/environments",
        json={
            "name": "b",
            "manager": {"host": "vcf.example.test", "username": "u", "password": "p"},
        },
    ).json
    items = [_fetched(f"Password-{n}", f"esx{n}.example") for n in range(30)]
    with app.app_context():
        assert sync.apply_fetch(env["id"], "manager", items).new == 30
        db.session.commit()
        items[3] = dataclasses.replace(items[3], expiry_status="EXPIRING")
        items[4] = dataclasses.replace(items[4], password="Rotated-4")
        counts = sync.apply_fetch(env["id"], "manager", items[:-2])
        db.session.commit()
        assert (counts.new, counts.changed, counts.unchanged, counts.absent) == (0, 1, 27, 2)
        data_cipher = cipher()
        rows = db.session.execute(
            select(
                Credential.id,
                Credential.hostname,
                Credential.password_enc,
                Credential.expiry_status,
            )
        ).all()
        current = {
            cred_id: data_cipher.decrypt(blob, HISTORY_PASSWORD)
            for cred_id, blob in db.session.execute(
                select(PasswordHistory.credential_id, PasswordHistory.password_enc).where(
                    PasswordHistory.changed_at.is_(None)
                )
            )
        }
        for cred_id, hostname, blob, status in rows:
            password = data_cipher.decrypt(blob, CREDENTIAL_PASSWORD)
            assert current[cred_id] == password
            expected = "Rotated-4" if hostname == "esx4.example" else f"Password-{hostname[3:-8]}"
            assert password == expected
            assert status == ("EXPIRING" if hostname == "esx3.example" else None)
