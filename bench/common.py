"""What the sync benchmarks share: the simulator in a process of its own, its control API,
the raw fetch floor, and the figures of the tool operators use today."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import requests

from portal.simulator.server import DEFAULT_PASSWORD
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
SIM_ADMIN = "administrator@vsphere.local"
CASES = ("first sync", "unchanged re-sync", "re-sync after 20% rotation")
# Trigger to done of the tool operators use today (median of 3, this machine class, issue 13).
TODAY = {
    1000: (0.47, 0.55, 0.53),
    10000: (2.9, 2.2, 2.9),
    50000: (13.7, 9.3, 16.5),
}


def start_simulator(size: int, work: Path) -> tuple[subprocess.Popen, int, Path]:
    """The simulator with `size` credentials, serving HTTPS on a free loopback port: the
    process, the port, and its CA file."""
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "portal.simulator", "--port", str(port), "--credentials",
         str(size), "--cert-dir", str(work / "sim")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in sim.stdout:
        if "listening" in line:
            break
    return sim, port, work / "sim" / "sim-ca.pem"


def sim_control(port: int, ca: Path, payload: dict) -> dict:
    """Ask the simulator to change its inventory (rotate, remove, ...)."""
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/_sim/control",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=60) as response:
        return json.load(response)


def raw_fetch_floor(port: int, ca: Path, page_size: int) -> tuple[float, int]:
    """Seconds one plain HTTPS client takes to log in and read every page; and the count."""
    base = f"https://127.0.0.1:{port}"
    started = time.perf_counter()
    with requests.Session() as session:
        session.trust_env = False  # the simulator's CA, not REQUESTS_CA_BUNDLE
        session.verify = str(ca)
        token = session.post(
            f"{base}/v1/tokens",
            json={"username": SIM_ADMIN, "password": DEFAULT_PASSWORD},
            timeout=60,
        ).json()["accessToken"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        count, page, pages = 0, 0, 1
        while page < pages:
            body = session.get(
                f"{base}/v1/credentials",
                params={"pageSize": str(page_size), "pageNumber": str(page)},
                headers=headers,
                timeout=60,
            ).json()
            count += len(body["elements"])
            pages = body["pageMetadata"]["totalPages"]
            page += 1
    return time.perf_counter() - started, count


def sync_now(server, session, env_id: int, source: str = "manager") -> tuple[float, dict]:
    """From "Sync now" of one source to the run's final state, as the page's button and its
    polling see it: the seconds and the run's counts."""
    started = time.perf_counter()
    run = session.post(
        f"{server.url}/api/v1/environments/{env_id}/sync", json={"source": source}
    ).json()
    while run["state"] in ("queued", "running"):
        time.sleep(0.02)
        run = session.get(f"{server.url}/api/v1/sync-runs/{run['id']}").json()
    elapsed = time.perf_counter() - started
    assert run["state"] == "success", run
    return elapsed, run["counts"]
