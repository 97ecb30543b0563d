"""Fleet management sync benchmark through the running portal: "Sync now" (POST) of a fleet
management source until the run reports its final state, on the real portal (Gunicorn over
HTTPS, 2 workers, SQLite) and the simulator in a process of its own, serving VCF 9.1 fleet
password management and the locker for a large estate (by default 50 management appliances
with 200 accounts).

A 9.1 sync reads the accounts (``accounts/query``, pages of 200), lists the locker, and asks
the locker for each value (one ``…/decrypted`` POST per account, with the fleet appliance's
root password): per account, one request. The script prints the first sync, an unchanged
re-sync and a re-sync after fleet management rotated 20% of the passwords, the floor (one
plain HTTPS client making the same requests one after the other, in the same run) and the
ratio to it, and the peak memory of the process that syncs (the Gunicorn master).

    .venv/bin/python bench/fleet_bench.py [--appliances 50] [--accounts 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import sim_control, sync_now  # noqa: E402
from portal.simulator.server import DEFAULT_PASSWORD  # noqa: E402
from tests.support import PortalServer, free_port  # noqa: E402

ADMIN_PASSWORD = "fleet bench admin pass"  # noqa: S105 - a throwaway local instance
ROOT_PASSWORD = "Fleet-Bench-Root-1!"  # noqa: S105 - the simulated fleet appliance's
SERVICE_USER = "admin@local"
CASES = ("first sync", "unchanged re-sync", "re-sync after 20% rotation")


def _start_simulator(work: Path) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "portal.simulator", "--port", str(port), "--credentials", "50",
         "--cert-dir", str(work / "sim"), "--fleet-root-password", ROOT_PASSWORD],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert sim.stdout is not None
    for line in sim.stdout:
        if "listening" in line:
            break
    return sim, port, work / "sim" / "sim-ca.pem"


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def floor(port: int, ca: Path) -> tuple[float, int]:
    """Seconds one plain client takes for what a 9.1 sync asks, one request after the other:
    token, exchange, every page of accounts, the locker's list, every value; and the count."""
    base = f"https://127.0.0.1:{port}"
    started = time.perf_counter()
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(ca)
        ops = session.post(
            f"{base}/suite-api/api/auth/token/acquire",
            json={
                "username": SERVICE_USER,
                "password": DEFAULT_PASSWORD,
                "authSource": "localItem",
            },
            timeout=60,
        ).json()["token"]
        bearer = session.post(
            f"{base}/suite-api/api/auth/token/exchange",
            json={"serviceKeys": ["fleet-lcm"]},
            headers={"Authorization": f"OpsToken {ops}"},
            timeout=60,
        ).json()["token"]
        accounts, page = [], 0
        while True:
            body = session.post(
                f"{base}/suite-api/api/fleet-management/password-management/accounts/query",
                params={"page": str(page), "pageSize": "200"},
                json={},
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=60,
            ).json()
            accounts += body["vcfPasswordAccounts"]
            if len(accounts) >= body["pageInfo"]["totalCount"] or not body["vcfPasswordAccounts"]:
                break
            page += 1
        basic = base64.b64encode(f"{SERVICE_USER}:{DEFAULT_PASSWORD}".encode()).decode()
        auth = {"Authorization": f"Basic {basic}"}
        entries, start = [], 0
        while True:
            body = session.get(
                f"{base}/lcm/locker/api/passwords",
                params={"from": str(start), "size": "200"},
                headers=auth,
                timeout=60,
            ).json()
            entries += body["passwords"]
            start += len(body["passwords"])
            if start >= body["total"] or not body["passwords"]:
                break
        for entry in entries:
            session.post(
                f"{base}/lcm/locker/api/v2/passwords/{entry['vmid']}/decrypted",
                json={"rootPassword": ROOT_PASSWORD},
                headers=auth,
                timeout=60,
            ).raise_for_status()
    return time.perf_counter() - started, len(accounts)


def measure(appliances: int, accounts: int, rounds: int) -> None:
    """Print the figures of one estate."""
    work = Path(tempfile.mkdtemp(prefix="fleet", dir="/tmp"))
    sim, port, ca = _start_simulator(work)
    server = PortalServer(work / "portal", workers=2, env={"PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        made = sim_control(port, ca, {"action": "fleet_scale", "appliances": appliances,
                                      "accounts": accounts})  # fmt: skip
        assert made["accounts"] == accounts, made
        floors = [floor(port, ca) for _ in range(3)]
        assert all(count == accounts for _, count in floors)
        floor_s = statistics.median(seconds for seconds, _ in floors)
        server.start()
        session = server.session()
        assert server.login(session, "admin", ADMIN_PASSWORD).status_code == 302
        session.headers["X-CSRFToken"] = server.csrf(session, "/")
        results: dict[str, list[float]] = {case: [] for case in CASES}
        counts: dict[str, dict] = {}
        for round_no in range(rounds):
            answer = session.post(
                server.url + "/api/v1/environments",
                json={
                    "name": f"fleet-bench-{round_no}",
                    "fleet": {
                        "host": "127.0.0.1",
                        "port": port,
                        "username": SERVICE_USER,
                        "password": DEFAULT_PASSWORD,
                        "ca_pem": ca.read_text(),
                        "locker_password": ROOT_PASSWORD,
                        "sync_enabled": False,
                    },
                },
            )
            assert answer.status_code == 201, answer.text
            env_id = answer.json()["id"]
            for case in CASES:
                if case.startswith("re-sync after"):
                    sim_control(port, ca, {"action": "fleet_rotate", "count": accounts // 5})
                elapsed, counts[case] = sync_now(server, session, env_id, "fleet")
                results[case].append(elapsed)
        peak = _peak_mb(server.proc.pid)
        print(
            f"fleet management 9.1: {appliances} management appliances, {accounts} accounts; "
            f"'Sync now' to the final state through the portal, median of {rounds}"
        )
        print(
            f"  floor: {floor_s:.2f} s (one plain client: token, exchange, accounts, locker, "
            f"{accounts} values one after the other)"
        )
        for case in CASES:
            seconds = statistics.median(results[case])
            figures = counts[case]
            print(
                f"  {case:28s} {seconds:6.2f} s  {seconds / floor_s:4.1f}x the floor  "
                f"(new {figures['new']}, changed {figures['changed']}, "
                f"unchanged {figures['unchanged']})"
            )
        print(f"  peak memory of the syncing process: {peak:.0f} MB")
    finally:
        server.stop()
        sim.terminate()
        sim.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appliances", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    measure(args.appliances, args.accounts, args.rounds)


if __name__ == "__main__":
    main()
