"""Sync benchmark: 10,000 credentials from the simulator (a separate process, over HTTPS).

Prints wall time of a first sync, an unchanged re-sync and a re-sync after rotating 20% of
the passwords, with the peak resident memory of the syncing process, and the ratio to the
figures of the tool operators use today (2.0 s, 1.6 s, 2.4 s on this machine class).

    .venv/bin/python bench/sync_bench.py [--credentials 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BASELINE = {"first sync": 2.0, "unchanged re-sync": 1.6, "re-sync after 20% rotation": 2.4}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _control(port: int, ca: Path, payload: dict) -> dict:
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/_sim/control",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.load(response)


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--credentials", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    port = _free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portal.simulator",
            "--port",
            str(port),
            "--credentials",
            str(args.credentials),
            "--cert-dir",
            str(work / "sim"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in sim.stdout:
            if "listening" in line:
                break
        ca = work / "sim" / "sim-ca.pem"
        os.environ.update(
            PORTAL_DATA_DIR=str(work / "data"),
            PORTAL_LOG_DIR=str(work / "logs"),
            PORTAL_SCHEDULER="off",
        )
        from portal import create_app, sync
        from portal.bootstrap import initialize
        from portal.environments import save_environment
        from portal.extensions import db
        from portal.simulator.server import DEFAULT_PASSWORD

        app = create_app()
        initialize(app)
        results: dict[str, list] = {label: [] for label in BASELINE}
        with app.app_context():
            for round_no in range(args.rounds):
                env, _ = save_environment(
                    {
                        "name": f"bench-{round_no}",
                        "manager": {
                            "host": "127.0.0.1",
                            "port": port,
                            "username": "administrator@vsphere.local",
                            "password": DEFAULT_PASSWORD,
                            "ca_pem": ca.read_text(),
                        },
                    }
                )
                db.session.commit()
                for label in BASELINE:
                    if label.startswith("re-sync after"):
                        _control(port, ca, {"action": "rotate", "fraction": 0.2})
                    run = sync.request_sync(env.id, "manager", "manual", "bench")
                    started = time.perf_counter()
                    finished = sync.execute_run(run.id)
                    elapsed = time.perf_counter() - started
                    assert finished.state == "success", finished.error
                    counts = (
                        f"new={finished.count_new} changed={finished.count_changed} "
                        f"unchanged={finished.count_unchanged} "
                        f"absent={finished.count_absent}"
                    )
                    results[label].append((elapsed, counts))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"Sync of {args.credentials} credentials from the simulator over HTTPS "
            f"(SQLite in {work / 'data'})"
        )
        print(f"median of {args.rounds} rounds, each on a new environment")
        print(f"{'case':32} {'seconds':>8} {'baseline':>9} {'speed-up':>9}  counts")
        for label, runs in results.items():
            elapsed = statistics.median(t for t, _ in runs)
            counts = runs[-1][1]
            print(
                f"{label:32} {elapsed:8.3f} {BASELINE[label]:9.1f} "
                f"{BASELINE[label] / elapsed:8.1f}x  {counts}"
            )
        print(f"peak resident memory of the syncing process: {peak_mb:.0f} MB (target 150 MB)")
    finally:
        sim.terminate()
        sim.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
