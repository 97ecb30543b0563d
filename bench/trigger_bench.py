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
import json
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal.simulator.server import DEFAULT_PASSWORD  # noqa: E402
from tests.support import PortalServer  # noqa: E402

ADMIN_PASSWORD = "trigger bench admin pass"  # noqa: S105 - a throwaway local instance
TODAY = {  # today's tool, trigger to done in seconds: first / unchanged / 20% rotated
    1000: (0.47, 0.55, 0.53),
    10000: (2.9, 2.2, 2.9),
    50000: (13.7, 9.3, 16.5),
}
CASES = ("first sync", "unchanged re-sync", "re-sync after 20% rotation")
PAGE_SIZE = 500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _control(port: int, ca: Path, payload: dict) -> dict:
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/_sim/control",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=60) as response:
        return json.load(response)


def fetch_floor(port: int, ca: Path) -> float:
    """Seconds one plain HTTPS client takes to fetch every credential page."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = str(ca)
    base = f"https://127.0.0.1:{port}"
    started = time.perf_counter()
    token = session.post(
        base + "/v1/tokens",
        json={"username": "administrator@vsphere.local", "password": DEFAULT_PASSWORD},
        timeout=60,
    ).json()["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    page = 0
    while True:
        body = session.get(
            base + "/v1/credentials",
            params={"pageSize": PAGE_SIZE, "pageNumber": page},
            headers=headers,
            timeout=60,
        ).json()
        page += 1
        if page >= body["pageMetadata"]["totalPages"]:
            break
    return time.perf_counter() - started


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sync(server: PortalServer, session: requests.Session, env_id: int) -> tuple[float, dict]:
    started = time.perf_counter()
    run = session.post(
        f"{server.url}/api/v1/environments/{env_id}/sync", json={"source": "manager"}
    ).json()
    while run["state"] in ("queued", "running"):
        time.sleep(0.02)
        run = session.get(f"{server.url}/api/v1/sync-runs/{run['id']}").json()
    elapsed = time.perf_counter() - started
    assert run["state"] == "success", run
    return elapsed, run["counts"]


def measure(size: int, rounds: int) -> None:
    """Print the figures of one size."""
    work = Path(tempfile.mkdtemp(prefix="trig", dir="/tmp"))
    port = _free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "portal.simulator", "--port", str(port), "--credentials",
         str(size), "--cert-dir", str(work / "sim")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    server = PortalServer(work / "portal", workers=2, env={"PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        for line in sim.stdout:
            if "listening" in line:
                break
        ca = work / "sim" / "sim-ca.pem"
        floor = statistics.median(fetch_floor(port, ca) for _ in range(3))
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
                    _control(port, ca, {"action": "rotate", "fraction": 0.2})
                elapsed, _ = _sync(server, session, env_id)
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
