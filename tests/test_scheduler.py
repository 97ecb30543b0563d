"""Exactly one scheduler: the real ./start_https.sh with 4 workers against the simulator."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from support import make_app, running_portal

from portal import sync
from portal.models import Endpoint, Environment, SyncRun
from portal.ops import scheduler
from portal.platform import locks, wakeup
from portal.platform.clock import UTC
from portal.platform.crypto import ENDPOINT_PASSWORD, cipher
from portal.platform.extensions import db
from portal.simulator import Simulator

ADMIN_PASSWORD = "scheduler test admin"  # noqa: S105
INTERVAL = 3


def _api(server, session, method, path, json=None):
    token = server.csrf(session, "/change-password")
    return session.request(
        method, server.url + path, json=json, headers={"X-CSRFToken": token}, timeout=30
    )


def _wait(predicate, timeout=40.0, step=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def _runs(db_path, env_id):
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT id, trigger, state, started_at FROM sync_runs WHERE environment_id = ? "
            "ORDER BY id",
            (env_id,),
        ).fetchall()


@pytest.mark.e2e
def test_one_scheduler_with_four_workers(tmp_path):
    env = {"PORTAL_TEST_INTERVAL_SECONDS": str(INTERVAL), "PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD}
    db_path = tmp_path / "data" / "vcf_credentials.db"
    with (
        Simulator(credentials=200, seed=2) as sim_a,
        Simulator(credentials=50, seed=3) as sim_b,
        running_portal(tmp_path, workers=4, env=env) as server,
    ):
        session = server.session()
        assert server.login(session, "admin", ADMIN_PASSWORD).status_code == 302

        def body(sim, name, enabled):
            return {
                "name": name,
                "manager": {
                    "host": sim.host,
                    "port": sim.port,
                    "username": sim.admin_username,
                    "password": sim.admin_password,
                    "ca_pem": sim.ca_pem,
                    "sync_enabled": enabled,
                    "sync_interval_minutes": 5,
                },
            }

        created = _api(
            server, session, "POST", "/api/v1/environments", body(sim_a, "scheduled", True)
        )
        assert created.status_code == 201, created.text
        env_a = created.json()["id"]
        # the initial run, then the interval job the reconciler adds, must be running
        assert _wait(lambda: sum(1 for r in _runs(db_path, env_a) if r[2] == "success") >= 2)
        sim_a.reset_hits()
        window = 4 * INTERVAL
        time.sleep(window)
        fetches = sim_a.hits["GET /v1/credentials"]
        # one scheduler: about window / interval fetches; four would give about four times that
        assert window // INTERVAL - 1 <= fetches <= window // INTERVAL + 1, fetches
        scheduled = [r for r in _runs(db_path, env_a) if r[1] == "schedule"]
        assert all(r[2] in ("success", "running", "queued") for r in scheduled)

        created_b = _api(
            server, session, "POST", "/api/v1/environments", body(sim_b, "manual", False)
        )
        env_b = created_b.json()["id"]
        cookies = session.cookies.get_dict()

        def press_sync(_):
            own = server.session()
            own.cookies.update(cookies)
            return _api(server, own, "POST", f"/api/v1/environments/{env_b}/sync").json()["id"]

        # The run starts at once; a slow answer keeps it running while every press arrives.
        sim_b.inject_failure("slow", count=1, path_prefix="/v1/credentials", delay=2)
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = set(pool.map(press_sync, range(8)))
        assert len(ids) == 1
        run_id = ids.pop()
        assert _wait(
            lambda: (
                _api(server, session, "GET", f"/api/v1/sync-runs/{run_id}").json()["state"]
                == "success"
            )
        )
        assert [r[0] for r in _runs(db_path, env_b)] == [run_id]
        assert sim_b.hits["GET /v1/credentials"] == 1
        state = _api(server, session, "GET", "/api/v1/scheduler").json()
        assert state["running"] is True
        job = next(j for j in state["jobs"] if j["environment"] == "scheduled")
        assert job["next_run_at"] is not None


def test_standby_takes_over_when_the_lock_is_freed(app, monkeypatch):
    monkeypatch.setattr(scheduler, "TAKEOVER_SECONDS", 0.2)
    monkeypatch.setattr(scheduler.sys, "argv", ["gunicorn"])
    settings = app.config["PORTAL_SETTINGS"]
    app.config["PORTAL_SETTINGS"] = settings.__class__(
        **{**settings.__dict__, "scheduler_enabled": True}
    )
    held = locks.acquire_scheduler_lock(settings.data_dir)
    try:
        assert scheduler.start_if_enabled(app) is False
        assert scheduler.running() is None
        assert locks.scheduler_lock_holder(settings.data_dir) is not None
        os.close(held)
        held = None
        # The takeover is done when its dispatcher is published (it is started first).
        assert _wait(lambda: scheduler._state["dispatcher"] is not None, timeout=10)
        assert scheduler.running() is not None
        assert {job.id for job in scheduler.running().get_jobs()} >= {"reconcile"}
        assert scheduler._state["dispatcher"][0].is_alive()
    finally:
        if held is not None:
            os.close(held)
        scheduler.stop()


def test_a_failed_takeover_gives_the_lead_back_and_tries_again(app, monkeypatch):
    """A standby whose takeover fails (a locked database) does not keep the lock without a
    scheduler: it releases it and takes over at its next try."""
    monkeypatch.setattr(scheduler, "TAKEOVER_SECONDS", 0.2)
    monkeypatch.setattr(scheduler.sys, "argv", ["gunicorn"])
    settings = app.config["PORTAL_SETTINGS"]
    app.config["PORTAL_SETTINGS"] = settings.__class__(
        **{**settings.__dict__, "scheduler_enabled": True}
    )
    tries = []
    real = sync.fail_interrupted_runs

    def failing_once():
        tries.append(locks.scheduler_lock_holder(settings.data_dir))
        if len(tries) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real()

    monkeypatch.setattr(scheduler.sync, "fail_interrupted_runs", failing_once)
    held = locks.acquire_scheduler_lock(settings.data_dir)
    try:
        assert scheduler.start_if_enabled(app) is False
        os.close(held)
        held = None
        assert _wait(lambda: scheduler._state["dispatcher"] is not None, timeout=10)
        assert len(tries) == 2
        assert scheduler.running() is not None
        assert scheduler._state["dispatcher"][0].is_alive()
    finally:
        if held is not None:
            os.close(held)
        scheduler.stop()
    assert locks.scheduler_lock_holder(settings.data_dir) is None


def test_missed_run_is_due_once_at_start(app):
    endpoint = Endpoint(sync_interval_minutes=60)
    endpoint.last_sync_at = (datetime.now(UTC) - timedelta(hours=5)).replace(tzinfo=None)
    first = scheduler._first_run(endpoint, 3600)
    assert first - datetime.now(UTC) < timedelta(seconds=10)
    endpoint.last_sync_at = (datetime.now(UTC) - timedelta(minutes=10)).replace(tzinfo=None)
    first = scheduler._first_run(endpoint, 3600)
    assert timedelta(minutes=49) < first - datetime.now(UTC) < timedelta(minutes=51)


@pytest.fixture
def short_dir():
    # A Unix socket path has at most 107 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="sched", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_sync_now_starts_at_once(request, short_dir, monkeypatch, database):
    env = {"DATABASE_URL": request.getfixturevalue("pg_url")} if database == "postgresql" else {}
    app = make_app(short_dir, PORTAL_SCHEDULER="on", **env)
    monkeypatch.setattr(scheduler, "DISPATCH_SECONDS", 30)  # the timer alone would take 30 s
    monkeypatch.setattr(scheduler.sys, "argv", ["gunicorn"])
    with Simulator(credentials=20, seed=4) as sim:
        with app.app_context():
            env_row = Environment(name="lab")
            db.session.add(env_row)
            db.session.flush()
            db.session.add(
                Endpoint(
                    environment_id=env_row.id,
                    source="manager",
                    host=sim.host,
                    port=sim.port,
                    username=sim.admin_username,
                    password_enc=cipher().encrypt(sim.admin_password, ENDPOINT_PASSWORD),
                    ca_pem=sim.ca_pem,
                    sync_enabled=False,
                )
            )
            db.session.commit()
            env_id = env_row.id
        assert scheduler.start_if_enabled(app)
        try:
            time.sleep(0.5)  # the dispatcher's first look is done: only a wake-up starts a run
            with app.app_context():
                run = sync.request_sync(env_id, "manager", "manual", "alice")
                queued_at = time.monotonic()

                def started():
                    db.session.expire_all()
                    return db.session.get(SyncRun, run.id).started_at is not None

                assert _wait(started, timeout=10, step=0.02)
                assert time.monotonic() - queued_at < 1.5
                db.session.remove()
        finally:
            scheduler.stop()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def test_the_wake_up_socket_is_removed_on_stop(short_dir, monkeypatch):
    """A stopped portal leaves no socket in its data directory (copies and backups of the
    folder would trip on it)."""
    app = make_app(short_dir, PORTAL_SCHEDULER="on")
    monkeypatch.setattr(scheduler.sys, "argv", ["gunicorn"])
    path = app.config["PORTAL_SETTINGS"].data_dir / wakeup.SOCKET_NAME
    with app.app_context():
        assert scheduler.start_if_enabled(app)
    try:
        assert path.is_socket()
    finally:
        scheduler.stop()
    assert not path.exists()
    with app.app_context():
        assert scheduler.start_if_enabled(app)
    assert path.is_socket()
    scheduler.halt(app)
    assert not path.exists()


def test_a_failed_dispatch_does_not_end_the_dispatcher(short_dir, monkeypatch, caplog):
    """A turn that raises (a locked database, a broken connection) is logged; the next turn
    runs, so queued syncs are not stranded until a restart."""
    app = make_app(short_dir, PORTAL_SCHEDULER="on")
    monkeypatch.setattr(scheduler.sys, "argv", ["gunicorn"])
    monkeypatch.setattr(scheduler, "DISPATCH_SECONDS", 0.05)
    turns = []
    real = sync.fail_stale_runs

    def failing_once():
        turns.append(time.monotonic())
        if len(turns) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real()

    monkeypatch.setattr(scheduler.sync, "fail_stale_runs", failing_once)
    with app.app_context():
        assert scheduler.start_if_enabled(app)
    try:
        assert _wait(lambda: len(turns) >= 3, timeout=10, step=0.02)
        assert scheduler._state["dispatcher"][0].is_alive()
        failures = [r for r in caplog.records if "dispatching queued runs failed" in r.message]
        assert len(failures) == 1 and failures[0].exc_info is not None
    finally:
        scheduler.stop()


def test_overlapping_and_late_turns_do_not_look_like_errors(caplog):
    record = logging.LogRecord(
        "apscheduler.executors.default",
        logging.WARNING,
        __file__,
        1,
        'Run time of job "%s" was missed by %s',
        ("sync:1:manager", "0:00:02"),
        None,
    )
    busy = logging.LogRecord(
        "apscheduler.scheduler",
        logging.WARNING,
        __file__,
        1,
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
        ("expiry", 1),
        None,
    )
    keep = scheduler._OverlapFilter()
    assert keep.filter(record) and record.levelname == "INFO"
    assert not keep.filter(busy)


def test_the_leader_makes_break_glass_copies_when_due(app, tmp_path, monkeypatch):
    import pyrage

    from portal.ops import break_glass, break_glass_settings

    monkeypatch.setattr(scheduler.sys, "argv", ["gunicorn"])
    settings = app.config["PORTAL_SETTINGS"]
    app.config["PORTAL_SETTINGS"] = settings.__class__(
        **{**settings.__dict__, "scheduler_enabled": True}
    )
    key = str(pyrage.x25519.Identity.generate().to_public())
    with app.app_context():
        break_glass_settings.save({"recipients": [key], "folder": str(tmp_path / "copies")})
        db.session.commit()
    scheduler._break_glass(app)  # not leading: nothing is copied
    assert not (tmp_path / "copies").exists()
    try:
        assert scheduler.start_if_enabled(app)
        job = scheduler.running().get_job("break-glass")
        assert job.trigger.interval == timedelta(seconds=scheduler.BREAK_GLASS_SECONDS)
        scheduler._break_glass(app)
        assert len(break_glass.copies_in(tmp_path / "copies")) == 1
        scheduler._break_glass(app)  # not due again before tomorrow's 02:00 UTC
        assert len(break_glass.copies_in(tmp_path / "copies")) == 1
    finally:
        scheduler.stop()
