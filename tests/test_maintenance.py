"""Backup, restore, key rotation and `check`, on real SQLite files."""

from __future__ import annotations

import threading

import pytest
from conftest import make_app
from sqlalchemy import select
from test_sync import create_env, run_sync

from portal import locks, maintenance
from portal.extensions import db
from portal.models import Credential
from portal.simulator import Simulator


def _passwords(app):
    from portal.credentials import reveal

    with app.app_context():
        return {
            (c.hostname, c.username, c.credential_type): reveal(c)
            for c in db.session.scalars(select(Credential))
        }


@pytest.fixture
def synced(app, admin):
    with Simulator(credentials=400, seed=9) as sim:
        env = create_env(admin, sim)
        run_sync(app, admin, env["id"])
        yield sim, env


def test_backup_during_activity_then_restore(tmp_path, app, admin, synced):
    sim, env = synced
    stop = threading.Event()
    errors = []

    def browse():
        from conftest import Portal, _client

        portal = Portal(_client(app))
        portal.login("bob")
        while not stop.is_set():
            response = portal.client.get(f"/api/v1/environments/{env['id']}/credentials")
            if response.status_code != 200:
                errors.append(response.status_code)

    reader = threading.Thread(target=browse)
    reader.start()
    try:
        sim.rotate(0.3)
        run_sync(app, admin, env["id"])
        path = maintenance.backup(app, tmp_path / "backups")
        expected = _passwords(app)
        sim.rotate(0.3)
        run_sync(app, admin, env["id"])
    finally:
        stop.set()
        reader.join()
    assert not errors
    assert path.stat().st_mode & 0o777 == 0o600
    assert maintenance.verify_backup(path)
    assert _passwords(app) != expected
    kept = maintenance.restore(app, path)
    assert kept.exists()
    assert _passwords(app) == expected


def test_backup_keeps_the_newest(tmp_path, app):
    app.config["PORTAL_SETTINGS"] = app.config["PORTAL_SETTINGS"].__class__(
        **{**app.config["PORTAL_SETTINGS"].__dict__, "backup_keep": 2}
    )
    paths = [maintenance.backup(app, tmp_path / "b") for _ in range(4)]
    assert sorted((tmp_path / "b").glob("*.db")) == paths[2:]


def test_restore_refuses_corrupt_or_foreign_files(tmp_path, app):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(maintenance.MaintenanceError, match="not a portal database"):
        maintenance.restore(app, bad)
    with pytest.raises(maintenance.MaintenanceError, match="does not exist"):
        maintenance.restore(app, tmp_path / "missing.db")


def test_rotate_key_round_trip(tmp_path, app, synced):
    before = _passwords(app)
    old_key = (tmp_path / "data" / "data.key").read_text()
    done = maintenance.rotate_key(app)
    assert done.count >= 401  # 400 credentials, their history, the endpoint password
    assert (tmp_path / "data" / "data.key").read_text() != old_key
    assert list((tmp_path / "data").glob("data.key.old-*")) == [done.old_key]
    assert done.old_key.read_text() == old_key
    assert _passwords(app) == before
    fresh = make_app(tmp_path)  # a restart loads the new key
    assert _passwords(fresh) == before
    assert all(r.ok for r in maintenance.run_checks(fresh) if r.name != "certificate")


def test_check_catches_corruption_and_wrong_key(tmp_path, app, synced):
    results = {r.name: r for r in maintenance.run_checks(app)}
    assert results["database integrity"].ok and results["data key"].ok
    assert results["schema version"].ok
    key = tmp_path / "data" / "data.key"
    key.write_text("00" * 32 + "\n")
    wrong = {r.name: r for r in maintenance.run_checks(app)}
    assert not wrong["data key"].ok and "does not match" in wrong["data key"].detail
    with app.app_context():
        db.engine.dispose()
    db_file = tmp_path / "data" / "vcf_credentials.db"
    data = bytearray(db_file.read_bytes())
    for offset in range(8192, len(data) - 4096, 4096):
        data[offset + 100 : offset + 400] = b"\xff" * 300
    db_file.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        (tmp_path / "data" / f"vcf_credentials.db{suffix}").unlink(missing_ok=True)
    broken = maintenance.run_checks(app)
    assert not all(r.ok for r in broken)


def test_cli_commands(tmp_path, app, synced):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["backup", "--to", str(tmp_path / "cli")])
    assert result.exit_code == 0 and "backup written" in result.output
    result = runner.invoke(args=["check"])
    assert "[ok] database integrity" in result.output
    assert runner.invoke(args=["version"]).output.strip()
    lock = locks.acquire_scheduler_lock(tmp_path / "data")
    try:
        refused = runner.invoke(args=["rotate-key"])
        assert refused.exit_code != 0 and "running" in refused.output
    finally:
        import os

        os.close(lock)


def test_running_portal_without_scheduler_is_detected(tmp_path, app):
    import fcntl
    import os

    fd = os.open(tmp_path / "data" / "portal.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what every serving process holds
    try:
        with pytest.raises(maintenance.MaintenanceError, match="running"):
            maintenance.rotate_key(app)
    finally:
        os.close(fd)
    assert not locks.portal_running(tmp_path / "data")


def test_restore_refuses_a_backup_under_another_key(tmp_path, app, synced):
    path = maintenance.backup(app, tmp_path / "b")
    maintenance.rotate_key(app)
    with pytest.raises(maintenance.MaintenanceError, match="different data key"):
        maintenance.restore(app, path)
    assert maintenance.run_checks(app)[0].ok
