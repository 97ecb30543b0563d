"""The sync never wedges: whatever fails, a run ends, and a run whose process stopped is ended
by whichever process notices; a run whose owner is alive is never touched."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from support import create_env, fetched, make_app

from portal import sync
from portal.environments.service import save_environment
from portal.models import Credential, Endpoint, SyncRun
from portal.platform import clock
from portal.platform.extensions import db


@pytest.fixture
def env_id(app, admin, sim):
    app.config.update(SYNC_RECORD_FAILURE_SECONDS=5, SQLITE_BUSY_TIMEOUT_MS=300)
    env = create_env(admin, sim)
    with app.app_context():
        db.session.execute(db.delete(SyncRun))  # the first sync queued on creation
        db.session.commit()
    return env["id"]


def _queue(app, env_id: int) -> int:
    with app.app_context():
        return sync.request_sync(env_id, "manager", "manual", "alice").id


def _run(app, run_id: int) -> SyncRun:
    with app.app_context():
        return db.session.get(SyncRun, run_id)


def _stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Credential.id)))


@pytest.fixture
def fail_writes(app):
    """Make the database refuse statements that match a test, as a full disk would."""
    rules: list = []

    def before(conn, cursor, statement, parameters, context, executemany):
        for rule in rules:
            if rule(statement, parameters):
                raise sqlite3.OperationalError("database or disk is full")

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before)
    yield rules
    event.remove(engine, "before_cursor_execute", before)


def _ends_run_with(state: str):
    def rule(statement, parameters):
        return statement.startswith("UPDATE sync_runs") and state in str(parameters)

    return rule


def test_a_database_error_while_ending_the_run_fails_it_with_its_reason(
    app, env_id, fail_writes, caplog
):
    fail_writes.append(_ends_run_with("success"))
    run_id = _queue(app, env_id)
    with caplog.at_level(logging.INFO, logger="portal"), app.app_context():
        sync.execute_run(run_id, fetch=lambda settings: fetched(3))
    run = _run(app, run_id)
    assert run.state == "failed" and "disk" in run.error and run.finished_at is not None
    # The fetch was complete: its slices were stored (in short transactions) before the
    # run's end could not be written; the run still says it failed, and why.
    assert _stored(app) == 3
    finishes = [line for line in caplog.text.splitlines() if 'action="sync.finish"' in line]
    assert finishes and all('outcome="failed"' in line for line in finishes)
    fail_writes.clear()
    again = _queue(app, env_id)
    with app.app_context():
        assert sync.execute_run(again, fetch=lambda settings: fetched(3)).state == "success"
    assert _stored(app) == 3


def test_a_run_that_cannot_even_record_its_failure_ends_when_its_heartbeat_expires(
    app, env_id, fail_writes
):
    app.config.update(SYNC_RECORD_FAILURE_SECONDS=0.5, SYNC_STALE_SECONDS=1)
    run_id = _queue(app, env_id)

    def fetch(settings):  # the disk fills up while the run fetches
        fail_writes.append(lambda statement, parameters: statement.startswith("UPDATE"))
        fail_writes.append(lambda statement, parameters: statement.startswith("INSERT"))
        return fetched(3)

    with app.app_context():
        sync.execute_run(run_id, fetch=fetch)
    assert _run(app, run_id).state == "running"  # the disk is still full
    fail_writes.clear()  # space is freed
    time.sleep(1.1)
    with app.app_context():
        assert sync.fail_stale_runs() == 1
    run = _run(app, run_id)
    assert run.state == "failed" and run.error.startswith("Interrupted")
    with app.app_context():
        endpoint = db.session.scalar(select(Endpoint).where(Endpoint.environment_id == env_id))
        assert endpoint.last_status == "failed" and endpoint.last_error == run.error
    assert _queue(app, env_id) != run_id  # the source syncs again


def test_a_write_lock_held_by_another_process_fails_the_run_not_wedges_it(app, env_id):
    path = app.config["PORTAL_SETTINGS"].sqlite_path
    locked, released = threading.Event(), threading.Event()

    def hold_lock():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(1.5)
        conn.rollback()
        conn.close()
        released.set()

    def fetch(settings):
        threading.Thread(target=hold_lock, daemon=True).start()
        locked.wait(5)
        return fetched(3)

    run_id = _queue(app, env_id)
    with app.app_context():
        sync.execute_run(run_id, fetch=fetch)
    assert released.wait(5)
    run = _run(app, run_id)
    assert run.state == "failed" and "busy" in run.error
    assert _stored(app) == 0


def _running_run(app, env_id: int, owner: str, heartbeat_age: float) -> int:
    with app.app_context():
        beat = clock.now() - timedelta(seconds=heartbeat_age)
        run = SyncRun(
            environment_id=env_id,
            source="manager",
            trigger="schedule",
            state="running",
            phase="fetching",
            started_at=beat,
            owner=owner,
            heartbeat_at=beat,
        )
        db.session.add(run)
        db.session.commit()
        return run.id


def test_a_run_of_a_dead_node_is_failed_and_the_source_syncs_again(app, env_id):
    run_id = _running_run(app, env_id, "other-node 4242 cafe", heartbeat_age=120)
    # "Sync now" meanwhile returns the run in progress, as long as it lives.
    assert _queue(app, env_id) == run_id
    with app.app_context():
        assert sync.fail_stale_runs() == 1
    assert _run(app, run_id).state == "failed"
    new = _queue(app, env_id)
    assert new != run_id
    with app.app_context():
        assert sync.execute_run(new, fetch=lambda settings: fetched(3)).state == "success"


def test_a_live_owner_is_never_failed(app, env_id):
    run_id = _running_run(app, env_id, "other-node 4242 cafe", heartbeat_age=5)
    with app.app_context():
        assert sync.fail_stale_runs() == 0
        assert sync.fail_interrupted_runs() == 0  # a node starting leaves it alone
    assert _run(app, run_id).state == "running"


@pytest.mark.slow  # runs a process that ends, for a pid that is gone
def test_starting_fails_only_the_runs_of_this_hosts_stopped_processes(app, env_id, admin, sim):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    host = sync.owner_id().split(" ")[0]
    dead = _running_run(app, env_id, f"{host} {gone.stdout.strip()} beef", heartbeat_age=1)
    other = create_env(admin, sim, name="second")["id"]
    with app.app_context():
        db.session.execute(db.delete(SyncRun).where(SyncRun.environment_id == other))
        db.session.commit()
    alive = _running_run(app, other, "other-node 7 cafe", heartbeat_age=1)
    with app.app_context():
        assert sync.fail_interrupted_runs() == 1
    assert _run(app, dead).state == "failed"
    assert _run(app, dead).error == "Interrupted by a restart of the portal."
    assert _run(app, alive).state == "running"


def test_a_run_failed_as_interrupted_meanwhile_stores_nothing(app, env_id):
    def fetch(settings):
        with app.app_context():  # another node decides this run's owner is gone
            assert sync.fail_stale_runs(stale_seconds=-1) == 1
        return fetched(3)

    run_id = _queue(app, env_id)
    with app.app_context():
        sync.execute_run(run_id, fetch=fetch)
    assert _run(app, run_id).state == "failed"
    assert _stored(app) == 0


def test_the_heartbeat_is_renewed_while_the_run_works(app, env_id):
    app.config.update(SYNC_HEARTBEAT_SECONDS=0.1)
    seen = {}

    def fetch(settings):
        # Waits for the heartbeat to move on (at most 10 s), however busy the machine is.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with app.app_context():
                run = db.session.get(SyncRun, run_id)
                seen["started"], seen["beat"] = run.started_at, run.heartbeat_at
                seen["owner"] = run.owner
            if seen["beat"] - seen["started"] >= timedelta(seconds=0.2):
                break
            time.sleep(0.05)
        return fetched(3)

    run_id = _queue(app, env_id)
    with app.app_context():
        assert sync.execute_run(run_id, fetch=fetch).state == "success"
        assert seen["owner"] == sync.owner_id()
    assert seen["beat"] - seen["started"] >= timedelta(seconds=0.2)


def test_a_full_disk_while_storing_says_so(app, env_id, fail_writes):
    fail_writes.append(
        lambda statement, parameters: statement.startswith("INSERT INTO credentials")
    )
    run_id = _queue(app, env_id)
    with app.app_context():
        run = sync.execute_run(run_id, fetch=lambda settings: fetched(3))
        endpoint_error = run.error
    assert run.state == "failed"
    assert endpoint_error.startswith("The disk holding the database is full")
    assert "Free space and sync again" in endpoint_error
    assert _stored(app) == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 4 MiB (tmpfs) for the data directory, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode()[:200]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow  # mounts a small filesystem
def test_a_really_full_disk_fails_the_sync_and_keeps_what_is_stored(tmp_path, small_disk):
    app = make_app(small_disk, PORTAL_LOG_DIR=str(tmp_path / "logs"))
    with app.app_context():
        manager = {"host": "sddc.example.net", "username": "svc", "password": "x"}
        env, _ = save_environment({"name": "full", "manager": manager})
        db.session.execute(db.delete(SyncRun))
        db.session.commit()
        first = sync.request_sync(env.id, "manager", "manual", "alice").id
        assert sync.execute_run(first, fetch=lambda settings: fetched(200)).state == "success"
        before = sorted(c.remote_id for c in db.session.scalars(select(Credential)))

        # Fill the filesystem, leaving a little room: the next sync cannot store 20,000.
        filler = small_disk / "filler"
        with open(filler, "wb") as out:
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
        # Give back 256 KiB: room for recording the failure (a run row, its audit record
        # with the record's indexes, an alert), never for 20,000 credentials.
        filler.write_bytes(filler.read_bytes()[: -256 * 1024])
        run = sync.request_sync(env.id, "manager", "manual", "alice").id
        failed = sync.execute_run(run, fetch=lambda settings: fetched(20000, rotated=200))
        assert failed.state == "failed"
        assert failed.error.startswith("The disk holding the database is full")
        db.session.expire_all()
        after = db.session.scalars(select(Credential)).all()
        assert sorted(c.remote_id for c in after) == before  # nothing lost, nothing half-added

        filler.unlink()  # room again: the next sync stores everything
        again = sync.request_sync(env.id, "manager", "manual", "alice").id
        assert sync.execute_run(again, fetch=lambda settings: fetched(2000)).state == "success"
        assert db.session.scalar(select(func.count(Credential.id))) == 2000
        db.engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_name_longer_than_its_column_fails_the_sync_alike_on_both_databases(
    request, tmp_path, database
):
    """SDDC Manager's names longer than the portal keeps fail the fetch with a clear error and
    nothing changed, on SQLite as on PostgreSQL (which refuses the write halfway); a type
    longer than its column is clipped, the same on both."""
    env = {"DATABASE_URL": request.getfixturevalue("pg_url")} if database == "postgresql" else {}
    app = make_app(tmp_path, **env)
    try:
        with app.app_context():
            manager = {"host": "sddc.example.net", "username": "svc", "password": "x"}
            saved, _ = save_environment({"name": "long", "manager": manager})
            db.session.commit()
            first = sync.request_sync(saved.id, "manager", "manual", "alice").id
            assert sync.execute_run(first, fetch=lambda settings: fetched(1200)).state == "success"
            before = {
                remote_id: mac
                for remote_id, mac in db.session.execute(
                    select(Credential.remote_id, Credential.password_mac)
                )
            }

            # Rotated rows in the first slices, the over-long name after them: nothing of the
            # first slices may be kept either.
            hostile = fetched(1200, rotated=600)
            hostile[1100] = replace(hostile[1100], hostname="long-" + "x" * 600)
            run = sync.request_sync(saved.id, "manager", "manual", "alice").id
            failed = sync.execute_run(run, fetch=lambda settings: hostile)
            assert failed.state == "failed"
            assert failed.error == (
                "a manager account's hostname is longer than the 512 characters the portal "
                "keeps: nothing was stored"
            )
            db.session.expire_all()
            after = {
                remote_id: mac
                for remote_id, mac in db.session.execute(
                    select(Credential.remote_id, Credential.password_mac)
                )
            }
            assert len(after) == len(before)
            assert [key for key, mac in before.items() if after.get(key) != mac] == []
            assert db.session.scalar(select(func.count()).where(~Credential.present)) == 0

            typed = fetched(1200)
            typed[0] = replace(typed[0], resource_type="ESXI_" + "T" * 100)
            run = sync.request_sync(saved.id, "manager", "manual", "alice").id
            assert sync.execute_run(run, fetch=lambda settings: typed).state == "success"
            kept = db.session.scalar(
                select(Credential.resource_type).where(Credential.remote_id == "id-0")
            )
            assert kept == ("ESXI_" + "T" * 100)[:64]
    finally:
        with app.app_context():
            db.engine.dispose()


def test_a_sync_of_an_environment_gone_meanwhile_is_refused_not_retried_forever(tmp_path):
    """A "Sync now" racing the environment's deletion: the refused insert is not a queued run
    of that source, and one retry cannot mend it. The error comes back at once."""
    from sqlalchemy.exc import IntegrityError

    app = make_app(tmp_path)
    with app.app_context():
        tries = []
        real = sync.runs.wakeup.announce

        def counting(session, settings):
            tries.append(1)
            return real(session, settings)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sync.runs.wakeup, "announce", counting)
            with pytest.raises(IntegrityError):
                sync.request_sync(987654, "manager", "manual", "alice")
        assert len(tries) == 2
        db.session.rollback()
        assert db.session.scalar(select(func.count(SyncRun.id))) == 0
