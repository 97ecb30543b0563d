"""Sync trigger-to-done benchmark through the running portal: "Sync now" (POST) until the run
reports its final state, on the real portal (./start_https.sh: Gunicorn over HTTPS, 2 workers,
SQLite) and the simulator in a process of its own, for several sizes.

For each size it prints the first sync, an unchanged re-sync and a re-sync after rotating 20%
of the passwords, beside today's tool (figures measured on this machine class, issue 13), the
raw fetch floor (one plain HTTPS client fetching the same pages from the same simulator, in
the same run) and the ratio to it, and the peak memory of the process that syncs (the
Gunicorn master, which runs the scheduler).

    .venv/bin/python bench/trigger_bench.py [--sizes 1000,10000,50000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CASES,
    TODAY,
    raw_fetch_floor,
    sim_control,
    start_simulator,
    sync_now,
)
from portal.simulator.server import DEFAULT_PASSWORD  # noqa: E402
from tests.support import PortalServer  # noqa: E402

ADMIN_PASSWORD = "trigger bench admin pass"  # noqa: S105 - a throwaway local instance
PAGE_SIZE = 500


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(size: int, rounds: int) -> None:
    """Print the figures of one size."""
    work = Path(tempfile.mkdtemp(prefix="trig", dir="/tmp"))
    sim, port, ca = start_simulator(size, work)
    server = PortalServer(work / "portal", workers=2, env={"PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        floor = statistics.median(raw_fetch_floor(port, ca, PAGE_SIZE)[0] for _ in range(3))
        server.start()
        session = server.session()
        assert server.login(session, "admin", ADMIN_PASSWORD).status_code == 302
        session.headers["X-CSRFToken"] = server.csrf(session, "/")
        results: dict[str, list[float]] = {case: [] for case in CASES}
        for round_no in range(rounds):
            env_id = session.post(
                server.url + "/api/v1/environments",
                json={
                    "name": f"bench-{round_no}",
                    "manager": {
                        "host": "127.0.0.1",
                        "port": port,
                        "username": "administrator@vsphere.local",
                        "password": DEFAULT_PASSWORD,
                        "ca_pem": ca.read_text(),
                        "sync_enabled": False,
                    },
                },
            ).json()["id"]
            for case in CASES:
                if case.startswith("re-sync after"):
                    sim_control(port, ca, {"action": "rotate", "fraction": 0.2})
                elapsed, _ = sync_now(server, session, env_id)
                results[case].append(elapsed)
        peak = _peak_mb(server.proc.pid)
        today = TODAY.get(size)
        print(f"{size:,} credentials: trigger to done through the portal, median of {rounds}")
        print(f"  raw fetch floor: {floor:.2f} s (one plain client, pages of {PAGE_SIZE})")
        for index, case in enumerate(CASES):
            seconds = statistics.median(results[case])
            versus = (
                f"today's tool {today[index]:5.2f} s, {today[index] / seconds:4.1f}x faster "
                f"(goal 2x)"
                if today
                else ""
            )
            print(
                f"  {case:28s} {seconds:6.2f} s  {seconds / floor:4.1f}x the floor (goal 2.5x)"
                f"  {versus}"
            )
        print(f"  peak memory of the syncing process: {peak:.0f} MB (goal under 300 MB)")
    finally:
        server.stop()
        sim.terminate()
        sim.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args.rounds)


if __name__ == "__main__":
    main()
