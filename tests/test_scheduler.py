"""Exactly one scheduler: the real ./start_https.sh with 4 workers against the simulator."""

from __future__ import annotations

import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from support import running_portal

from portal import locks, scheduler
from portal.clock import UTC
from portal.models import Endpoint
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

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = set(pool.map(press_sync, range(8)))
        assert len(ids) == 1
        run_id = ids.pop()
        assert _wait(
            lambda: _api(server, session, "GET", f"/api/v1/sync-runs/{run_id}").json()["state"]
            == "success"
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
        assert _wait(lambda: scheduler.running() is not None, timeout=10)
        assert {job.id for job in scheduler.running().get_jobs()} >= {"dispatch", "reconcile"}
    finally:
        if held is not None:
            os.close(held)
        scheduler.stop()


def test_missed_run_is_due_once_at_start(app):
    endpoint = Endpoint(sync_interval_minutes=60)
    endpoint.last_sync_at = (datetime.now(UTC) - timedelta(hours=5)).replace(tzinfo=None)
    first = scheduler._first_run(endpoint, 3600)
    assert first - datetime.now(UTC) < timedelta(seconds=10)
    endpoint.last_sync_at = (datetime.now(UTC) - timedelta(minutes=10)).replace(tzinfo=None)
    first = scheduler._first_run(endpoint, 3600)
    assert timedelta(minutes=49) < first - datetime.now(UTC) < timedelta(minutes=51)
