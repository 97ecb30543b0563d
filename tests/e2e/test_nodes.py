"""Two real portal nodes (Gunicorn over HTTPS) on one real PostgreSQL database: one scheduler,
each scheduled sync once, one run for "Sync now" pressed on both, and a leader killed mid-sync
is replaced and its run failed, while a node starting during a sync disturbs nothing."""

from __future__ import annotations

import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from support import KEY_FILES, running_portal

from portal.simulator import Simulator

ADMIN_PASSWORD = "two nodes admin pass"  # noqa: S105
INTERVAL = 3


def _role(node) -> str:
    return node.session().get(node.url + "/healthz", timeout=10).json()["scheduler"]


def _signed_in(node):
    session = node.session()
    assert node.login(session, "admin", ADMIN_PASSWORD).status_code == 302
    session.headers["X-CSRFToken"] = node.csrf(session, "/")
    return session


def _runs(pg_url: str, env_id: int) -> list[tuple]:
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id, trigger, state, owner, started_at, finished_at, error FROM sync_runs"
                " WHERE environment_id = %s ORDER BY id",
                (env_id,),
            )
            return cur.fetchall()
    finally:
        conn.close()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _copy_keys(source, target_base) -> None:
    data = target_base / "data"
    data.mkdir(parents=True, mode=0o700)
    for name in KEY_FILES:
        shutil.copy2(source.base / "data" / name, data / name)
        os.chmod(data / name, 0o600)


@pytest.mark.e2e
def test_two_nodes_share_one_scheduler(tmp_path, pg_url):
    env = {
        "DATABASE_URL": pg_url,
        "PORTAL_SECRET_KEY": "a session key both nodes share, 32+ chars",
        "PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PORTAL_TEST_INTERVAL_SECONDS": str(INTERVAL),
    }
    with (
        Simulator(credentials=200, seed=3) as sim,
        running_portal(tmp_path / "a", workers=1, env=env) as a,
    ):
        assert _role(a) == "leader"
        session = _signed_in(a)
        endpoint = {
            "host": sim.host,
            "port": sim.port,
            "username": sim.admin_username,
            "password": sim.admin_password,
            "ca_pem": sim.ca_pem,
            "sync_enabled": True,
            "sync_interval_minutes": 60,
        }
        created = session.post(
            a.url + "/api/v1/environments", json={"name": "lab", "manager": endpoint}
        )
        assert created.status_code == 201, created.text
        env_id = created.json()["id"]
        _wait(lambda: any(r[2] == "success" for r in _runs(pg_url, env_id)), 30, "first sync")

        # A node starting while the leader syncs does not disturb that sync.
        sim.inject_failure("slow", count=1, path_prefix="/v1/credentials$", delay=4)
        _wait(lambda: any(r[2] == "running" for r in _runs(pg_url, env_id)), 30, "a slow sync")
        busy = next(r for r in _runs(pg_url, env_id) if r[2] == "running")
        _copy_keys(a, tmp_path / "b")
        with running_portal(tmp_path / "b", workers=1, env=env) as b:
            assert sorted([_role(a), _role(b)]) == ["leader", "standby"]
            done = _wait(
                lambda: next((r for r in _runs(pg_url, env_id) if r[0] == busy[0] and r[5]), None),
                30,
                "the slow sync to end",
            )
            assert done[2] == "success", done

            # Over several intervals, each scheduled sync happens once: runs never overlap.
            # (Waits for the runs themselves, not for a time: a loaded machine is slower.)
            watched = time.monotonic()

            def scheduled_runs():
                runs = [r for r in _runs(pg_url, env_id) if r[4] is not None and r[5]]
                return [r for r in runs if r[1] == "schedule" and r[4] > done[5]]

            scheduled = _wait(
                lambda: len(scheduled_runs()) >= 3 and scheduled_runs(),
                INTERVAL * 20,
                "three scheduled syncs",
            )
            runs = [r for r in _runs(pg_url, env_id) if r[4] is not None]
            for earlier, later in zip(runs, runs[1:], strict=False):
                assert earlier[5] is not None and earlier[5] <= later[4], (earlier, later)
            intervals = (time.monotonic() - watched) / INTERVAL
            assert len(scheduled) <= intervals + 2, (len(scheduled), intervals)

            # "Sync now" pressed on both nodes at once gives one run.
            other = _signed_in(b)
            sim.inject_failure("slow", count=1, path_prefix="/v1/credentials$", delay=6)
            url = f"/api/v1/environments/{env_id}/sync"
            with ThreadPoolExecutor(2) as pool:
                answers = list(
                    pool.map(
                        lambda pair: pair[0].post(pair[1] + url, json={"source": "manager"}),
                        [(session, a.url), (other, b.url)],
                    )
                )
            assert [r.status_code for r in answers] == [202, 202]
            assert answers[0].json()["id"] == answers[1].json()["id"]
            pressed = answers[0].json()["id"]

            # Kill the leader mid-sync: the other node takes over, fails the dead run within
            # the limit, and syncs the source again.
            _wait(
                lambda: any(r[0] == pressed and r[2] == "running" for r in _runs(pg_url, env_id)),
                30,
                "the pressed sync to run",
            )
            leader, survivor = (a, b) if _role(a) == "leader" else (b, a)
            os.killpg(leader.proc.pid, signal.SIGKILL)
            leader.proc.wait()
            failed = _wait(
                lambda: next(
                    (r for r in _runs(pg_url, env_id) if r[0] == pressed and r[2] == "failed"),
                    None,
                ),
                30,
                "the dead leader's run to be failed",
            )
            assert failed[6].startswith("Interrupted")
            _wait(lambda: _role(survivor) == "leader", 30, "the survivor to lead")
            _wait(
                lambda: any(r[0] > pressed and r[2] == "success" for r in _runs(pg_url, env_id)),
                30,
                "a new sync by the survivor",
            )
