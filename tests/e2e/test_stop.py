"""Stopping the real Gunicorn while the scheduler runs a job: the master exits within the
graceful timeout, the job's run is recorded as interrupted, the lead is released, and the
next start leads at once."""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest
from support import LAB_PASSWORD, PortalServer, endpoint_body, first_admin

from portal.platform import locks
from portal.simulator import Simulator

pytestmark = pytest.mark.e2e

GRACEFUL_TIMEOUT = 30  # gunicorn_config.graceful_timeout


def _runs(data_dir) -> list[tuple]:
    with sqlite3.connect(data_dir / "vcf_credentials.db") as conn:
        return conn.execute("SELECT state, phase, error FROM sync_runs ORDER BY id").fetchall()


def test_sigterm_during_a_sync_interrupts_it_and_releases_the_lead(tmp_path):
    data_dir = tmp_path / "data"
    with Simulator(credentials=50, seed=2) as sim:
        # The credential list answers only after a minute: the sync is mid-fetch for long.
        sim.inject_failure("slow", count=20, path_prefix="/v1/credentials$", delay=60)
        server = PortalServer(tmp_path, workers=1).start()
        try:
            session, token = first_admin(server, LAB_PASSWORD)
            created = session.post(
                server.url + "/api/v1/environments",
                json={"name": "sfo-m01", "manager": endpoint_body(sim)},
                headers={"X-CSRFToken": token},
            )
            assert created.status_code == 201, created.text
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and ("running", "fetching") not in [
                run[:2] for run in _runs(data_dir)
            ]:
                time.sleep(0.2)
            assert ("running", "fetching") in [run[:2] for run in _runs(data_dir)]
            assert locks.scheduler_lock_holder(data_dir) == str(server.proc.pid)

            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)  # the master only, as systemd does first
            server.proc.wait(timeout=GRACEFUL_TIMEOUT + 5)
            took = time.monotonic() - started
        finally:
            server.stop()
        assert took < GRACEFUL_TIMEOUT, f"the master took {took:.1f} s to stop"
        assert _runs(data_dir)[-1] == (
            "failed",
            "done",
            "Interrupted: the portal was stopped during the sync.",
        )
        assert locks.scheduler_lock_holder(data_dir) is None

        sim.clear_failures()
        again = PortalServer(tmp_path, workers=1).start()
        try:
            assert locks.scheduler_lock_holder(data_dir) == str(again.proc.pid)
            health = again.session().get(again.url + "/healthz").json()
            assert health["scheduler"] == "leader"
        finally:
            again.stop()
