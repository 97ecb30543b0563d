"""Backup, restore, key rotation and `check`, on real SQLite files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from support import create_env, make_app, run_sync

from portal.models import Credential
from portal.ops import maintenance
from portal.platform import locks
from portal.platform.extensions import db
from portal.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent


def _passwords(app):
    from portal.vault.credentials import reveal

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
        from conftest import Portal, client_for

        portal = Portal(client_for(app))
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


def test_rotate_key_round_trip(tmp_path, app, admin, synced):
    before = _passwords(app)
    old_key = (tmp_path / "data" / "data.key").read_text()
    done = maintenance.rotate_key(app)
    assert done.count >= 401  # 400 credentials, their history, the endpoint password
    assert (tmp_path / "data" / "data.key").read_text() != old_key
    assert list((tmp_path / "data").glob("data.key.old-*")) == [done.old_key]
    assert done.old_key.read_text() == old_key
    assert _passwords(app) == before
    with app.app_context():  # the keyed hashes follow the new key
        from portal.platform.crypto import CREDENTIAL_PASSWORD, CREDENTIAL_PASSWORD_MAC, cipher

        new_cipher = cipher()
        for blob, mac in db.session.execute(
            select(Credential.password_enc, Credential.password_mac)
        ):
            plain = new_cipher.decrypt(blob, CREDENTIAL_PASSWORD)
            assert mac == new_cipher.mac(plain, CREDENTIAL_PASSWORD_MAC)
    again = run_sync(app, admin, synced[1]["id"])
    assert again["counts"] == {"new": 0, "changed": 0, "unchanged": 400, "absent": 0}
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


def _flask(data_dir, *args: str) -> subprocess.CompletedProcess:
    """`flask --app app ARGS` in the project folder, as an operator runs it."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PORTAL_DATA_DIR": str(data_dir),
        "PORTAL_LOG_DIR": str(data_dir.parent / "logs"),
        "PORTAL_SSL_DIR": str(data_dir.parent / "ssl"),
    }
    flask = Path(sys.executable).parent / "flask"
    return subprocess.run(
        [str(flask), "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_error(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert words in result.stderr, result.stderr


@pytest.mark.slow  # runs the commands as an operator does
def test_restore_into_a_new_data_directory(tmp_path, app):
    backup_file = maintenance.backup(app, tmp_path / "b")
    key = (tmp_path / "data" / "data.key").read_text()
    new = tmp_path / "new" / "data"
    new.mkdir(parents=True)

    _one_line_error(_flask(new, "restore", str(backup_file)), "missing")
    assert sorted(os.listdir(new)) == []
    _one_line_error(_flask(new, "restore", str(tmp_path / "b" / "typo.db")), "does not exist")
    assert sorted(os.listdir(new)) == []
    (new / "data.key").write_text("11" * 32 + "\n")
    _one_line_error(_flask(new, "restore", str(backup_file)), "different data key")
    assert sorted(os.listdir(new)) == ["data.key"]

    (new / "data.key").write_text(key)
    # The backup's audit log is sealed: its chain and checkpoint keys must come along.
    _one_line_error(_flask(new, "restore", str(backup_file)), "audit.key is missing")
    assert sorted(os.listdir(new)) == ["data.key"]
    for name in ("audit.key", "audit-signing.key"):
        shutil.copy2(tmp_path / "data" / name, new / name)
    result = _flask(new, "restore", str(backup_file))
    assert result.returncode == 0, result.stderr
    assert "restored" in result.stdout and "kept as" not in result.stdout
    assert (new / "vcf_credentials.db").exists() and not (new / "session.key").exists()
    check = _flask(new, "check")
    assert "[ok] data key" in check.stdout and "[ok] schema version" in check.stdout

    (new / "data.key").write_text("22" * 32 + "\n")
    check = _flask(new, "check")
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert "[FAIL] data key: does not match this database" in check.stdout


def test_rotate_key_command_names_the_kept_key(tmp_path, app):
    result = app.test_cli_runner().invoke(args=["rotate-key"])
    assert result.exit_code == 0, result.output
    (kept,) = (tmp_path / "data").glob("data.key.old-*")
    assert str(kept) in result.output


def test_two_key_rotations_in_one_second_keep_both_old_keys(tmp_path, app, monkeypatch):
    class SameSecond(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 12, 1, 3, 0, 0, tzinfo=tz)

    monkeypatch.setattr(maintenance, "datetime", SameSecond)
    key_path = tmp_path / "data" / "data.key"
    first_key = key_path.read_text()
    first = maintenance.rotate_key(app)
    second_key = key_path.read_text()
    second = maintenance.rotate_key(app)
    assert first.old_key != second.old_key
    assert first.old_key.read_text() == first_key and second.old_key.read_text() == second_key
    assert all(r.ok for r in maintenance.run_checks(make_app(tmp_path)) if r.name != "certificate")


def test_check_reports_a_loose_key_mode_without_changing_it(tmp_path, app):
    key_path = tmp_path / "data" / "data.key"
    key_path.chmod(0o644)
    results = {r.name: r for r in maintenance.run_checks(app)}
    assert not results["data key"].ok and "mode 644" in results["data key"].detail
    assert key_path.stat().st_mode & 0o777 == 0o644


def _hold_write_lock(app, seconds: float) -> threading.Thread:
    """Another process's write transaction on the database, for `seconds`."""
    import sqlite3
    import time

    ready = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(app.config["PORTAL_SETTINGS"].sqlite_path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        conn.rollback()
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(5)
    return thread


def test_backup_while_busy_waits_for_the_database(tmp_path, app):
    from portal.cli import backup_command

    app.config["SQLITE_BUSY_TIMEOUT_MS"] = 200
    holder = _hold_write_lock(app, 1.0)
    result = app.test_cli_runner().invoke(backup_command, ["--to", str(tmp_path / "b")])
    holder.join()
    assert result.exit_code == 0, result.output
    assert "backup written" in result.output
    with app.app_context():
        from portal.models import AuditEvent

        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "settings.backup"))


def test_backup_while_busy_for_too_long_ends_in_one_line(tmp_path, app):
    from portal.cli import backup_command

    app.config.update(SQLITE_BUSY_TIMEOUT_MS=200, CLI_BUSY_WAIT_SECONDS=0.5)
    holder = _hold_write_lock(app, 2.0)
    result = app.test_cli_runner().invoke(backup_command, ["--to", str(tmp_path / "b")])
    holder.join()
    assert result.exit_code == 1
    assert (
        "Traceback" not in result.output
        and not isinstance(result.exception, Exception)
        or (isinstance(result.exception, SystemExit))
    )
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "stayed busy" in errors[0], result.output
    assert maintenance.verify_backup(next((tmp_path / "b").glob("*.db")))  # the file is good


def test_check_on_postgresql_names_the_node_that_leads(tmp_path, pg_url):
    from portal.platform import locks

    app = make_app(tmp_path, DATABASE_URL=pg_url)
    try:
        idle = {r.name: r for r in maintenance.run_checks(app)}["scheduler lock"]
        assert idle.ok and idle.detail == "free: no node runs the scheduler"
        leadership = locks.PostgresLeadership(pg_url)  # another node, as far as check knows
        assert leadership.acquire()
        try:
            led = {r.name: r for r in maintenance.run_checks(app)}["scheduler lock"]
            assert led.ok and "held by" in led.detail and "stopped" not in led.detail
            assert str(os.getpid()) in led.detail
        finally:
            leadership.release()
    finally:
        with app.app_context():
            db.engine.dispose()
