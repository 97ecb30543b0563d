"""The dashboard API and the exports at scale, through the running portal.

Stores 50 environments and 200,000 credentials (one environment of 100,000, one of 10,000, 48
of 1,875) directly in a new data directory's SQLite database, encrypted with the portal's
cipher, then starts the portal as operators do (./start_https.sh: Gunicorn over HTTPS, 2
workers, scheduler off) on loopback and measures:

- `GET /api/v1/environments`: server time (Gunicorn's request time from the access log) one
  request at a time, then throughput and p99 with 20 concurrent connections (a thread pool of
  requests sessions);
- CSV and Excel exports of 10,000 credentials (seconds, median of 3, download included);
- the serving worker's peak memory growth (VmHWM of the Gunicorn workers before and after)
  for CSV and Excel exports of 100,000 credentials;
- a page of 50 credentials of the 100,000-credential environment (median of 20).

With `--sensitive`, a global dual-control rule makes every ESXi root (a fifth of the
credentials) need approval first: the list computes what each row needs and the exports
withhold those passwords row by row.

Each figure is printed beside its goal (issue 13). Only loopback is used.

    .venv/bin/python bench/scale_bench.py [--requests 4000] [--sensitive] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PASSWORD = "benchmark passphrase"  # noqa: S105
SIZES = [100_000, 10_000] + [1_875] * 48  # 50 environments, 200,000 credentials
CONNECTIONS = 20
GOALS = {
    "server time": "< 0.020 s",
    "throughput": ">= 500 req/s",
    "memory": "< 50 MB",
    "csv": "< 0.28 s",
    "xlsx": "< 1.0 s",
}


def seed(data: Path, sensitive: bool = False) -> list[int]:
    """Create the data directory and store the environments and credentials in bulk; with
    `sensitive`, a global rule: every ESXi root needs approval."""
    os.environ.update(
        PORTAL_DATA_DIR=str(data),
        PORTAL_LOG_DIR=str(data.parent / "seed-logs"),
        PORTAL_SCHEDULER="off",
        PORTAL_ADMIN_PASSWORD=PASSWORD,
    )
    from sqlalchemy import insert

    from portal import create_app
    from portal.environments.service import refresh_counts, save_environment
    from portal.models import AccessPolicy, Credential
    from portal.ops.bootstrap import initialize
    from portal.platform import clock
    from portal.platform.crypto import CREDENTIAL_PASSWORD, cipher
    from portal.platform.extensions import db

    app = create_app()
    initialize(app)
    kinds = [
        ("ESXI", "root", "SSH", "USER"),
        ("ESXI", "svc-vcf", "SSH", "SERVICE"),
        ("VCENTER", "root", "SSH", "USER"),
        ("NSXT_MANAGER", "admin", "API", "USER"),
        ("NSXT_MANAGER", "audit", "AUDIT", "USER"),
    ]
    env_ids = []
    with app.app_context():
        data_cipher, now = cipher(), clock.now()
        for index, size in enumerate(SIZES):
            env, _ = save_environment(
                {
                    "name": f"site-{index:02d}",
                    "manager": {
                        "host": f"sddc-{index:02d}.example.net",
                        "username": "svc@vsphere.local",
                        "password": "not-used-here",
                        "sync_enabled": False,
                    },
                }
            )
            db.session.flush()
            rows = []
            for n in range(size):
                rtype, user, ctype, atype = kinds[n % len(kinds)]
                rows.append(
                    {
                        "environment_id": env.id,
                        "source": "manager",
                        "hostname": f"w{n // 500:03d}-host{n:06d}.site{index:02d}.example.net",
                        "username": user,
                        "credential_type": ctype,
                        "account_type": atype,
                        "resource_type": rtype,
                        "resource_ip": f"10.{index}.{n // 250 % 256}.{n % 250}",
                        "domain": f"w{n // 500:03d}",
                        "remote_id": f"id-{index}-{n}",
                        "password_enc": data_cipher.encrypt(
                            f"Pw-{n:06d}-{index}-Zq9!x", CREDENTIAL_PASSWORD
                        ),
                        "present": n % 50 != 0,
                        "first_seen_at": now,
                        "last_seen_at": now,
                        "last_changed_at": now,
                    }
                )
            for start in range(0, len(rows), 10_000):
                db.session.execute(insert(Credential), rows[start : start + 10_000])
            refresh_counts(env.id, "manager")
            db.session.commit()
            env_ids.append(env.id)
        if sensitive:
            rule = AccessPolicy(
                environment_id=None,
                position=0,
                resource_type="ESXI",
                username="root",
                requires="approval",
                updated_by="benchmark",
                updated_at=now,
            )
            db.session.add(rule)
            db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return env_ids


def workers(server) -> list[int]:
    """Process ids of the Gunicorn workers (children of the master) of `server`."""
    table = subprocess.run(
        ["ps", "-o", "pid=,ppid=,args=", "-g", str(server.proc.pid)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    procs = [line.split(None, 2) for line in table if line.strip()]
    gunicorn = {int(p[0]): int(p[1]) for p in procs if "gunicorn" in p[2]}
    return [pid for pid, parent in gunicorn.items() if parent in gunicorn]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def server_times(log: Path, path: str) -> list[float]:
    """Gunicorn's request times (seconds) of the GET requests of `path` in the access log."""
    pattern = re.compile(rf'"GET {re.escape(path)} HTTP/[\d.]+" 200 \d+ ([\d.]+)s')
    return [float(m.group(1)) for m in pattern.finditer(log.read_text())]


def main() -> int:
    """Seed, start the portal, measure and print the figures beside the goals."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="concurrent requests made")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--sensitive", action="store_true", help="a global rule: every ESXi root needs approval"
    )
    args = parser.parse_args()
    from support import PortalServer

    base = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    started = time.monotonic()
    env_ids = seed(base / "data", args.sensitive)
    print(
        f"stored {len(SIZES)} environments, {sum(SIZES):,} credentials in "
        f"{time.monotonic() - started:.0f} s"
    )
    server = PortalServer(base, workers=2, env={"PORTAL_SCHEDULER": "off"}).start()
    try:
        session = server.session()
        assert server.login(session, "admin", PASSWORD).status_code == 302
        token = server.csrf(session, "/change-password")
        url = server.url + "/api/v1/environments"
        first = session.get(url)
        assert first.ok and len(first.json()["items"]) == len(SIZES)
        total = sum(
            s["manager"]["credential_count"] + s["manager"]["absent_count"]
            for s in (i["status"] for i in first.json()["items"])
        )
        assert total == sum(SIZES), total

        access_log = base / "logs" / "access.log"
        before = len(server_times(access_log, "/api/v1/environments"))
        for _ in range(200):
            assert session.get(url).ok
        time.sleep(0.5)  # the access log is written after the answer
        times = server_times(access_log, "/api/v1/environments")[before:]

        cookies = session.cookies.get_dict()

        def client():
            own = server.session()
            own.cookies.update(cookies)
            return own

        sessions = [client() for _ in range(CONNECTIONS)]
        for own in sessions:
            assert own.get(url).ok  # connect and warm up each connection

        def work(index: int) -> list[float]:
            own, latencies = sessions[index], []
            for _ in range(args.requests // CONNECTIONS):
                begin = time.perf_counter()
                response = own.get(url)
                latencies.append(time.perf_counter() - begin)
                assert response.status_code == 200, response.status_code
            return latencies

        begin = time.perf_counter()
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            latencies = [t for part in pool.map(work, range(CONNECTIONS)) for t in part]
        elapsed = time.perf_counter() - begin
        rate = len(latencies) / elapsed

        def export(env_id: int, fmt: str) -> tuple[float, int]:
            begin = time.perf_counter()
            response = session.post(
                f"{server.url}/environments/{env_id}/export",
                data={"format": fmt, "scope": "all", "csrf_token": token},
                stream=True,
            )
            assert response.status_code == 200, response.status_code
            size = sum(len(chunk) for chunk in response.iter_content(64 * 1024))
            return time.perf_counter() - begin, size

        growth = {}
        for fmt in ("csv", "xlsx"):
            pids = workers(server)
            hwm = {pid: status_kb(pid, "VmHWM") for pid in pids}
            seconds, size = export(env_ids[0], fmt)
            rises = {pid: status_kb(pid, "VmHWM") - hwm[pid] for pid in pids}
            served = max(rises, key=rises.get)
            growth[fmt] = (
                rises[served] / 1024,
                seconds,
                size,
                hwm[served] / 1024,
                status_kb(served, "VmRSS") / 1024,
            )
        small = {
            fmt: statistics.median(export(env_ids[1], fmt)[0] for _ in range(3))
            for fmt in ("csv", "xlsx")
        }
        page_url = f"{server.url}/api/v1/environments/{env_ids[0]}/credentials?per_page=50"
        pages = []
        for _ in range(20):
            begin = time.perf_counter()
            listed = session.get(page_url)
            pages.append(time.perf_counter() - begin)
            assert listed.ok and len(listed.json()["items"]) == 50
        needing = sum(1 for item in listed.json()["items"] if item.get("needs"))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    print(
        f"\nGunicorn over HTTPS on loopback, 2 workers; {len(SIZES)} environments, "
        f"{sum(SIZES):,} credentials (SQLite)"
    )
    print(f"{'figure':58} {'measured':>14}  goal")
    rows = [
        (
            "GET /api/v1/environments, server time, median",
            f"{statistics.median(times):.4f} s",
            GOALS["server time"],
        ),
        (
            "GET /api/v1/environments, server time, p99",
            f"{percentile(times, 0.99):.4f} s",
            GOALS["server time"],
        ),
        (
            f"GET /api/v1/environments, {CONNECTIONS} connections, throughput",
            f"{rate:.0f} req/s",
            GOALS["throughput"],
        ),
        (
            f"GET /api/v1/environments, {CONNECTIONS} connections, p99 latency",
            f"{percentile(latencies, 0.99):.3f} s",
            "",
        ),
        (
            "a page of 50 of 100,000 credentials, median of 20",
            f"{statistics.median(pages):.3f} s",
            f"{needing} of the 50 need approval",
        ),
        ("CSV export of 10,000, median of 3", f"{small['csv']:.3f} s", GOALS["csv"]),
        ("Excel export of 10,000, median of 3", f"{small['xlsx']:.3f} s", GOALS["xlsx"]),
    ]
    for fmt, label in (("csv", "CSV"), ("xlsx", "Excel")):
        rise, seconds, size, peak_before, rss = growth[fmt]
        rows.append(
            (
                f"{label} export of 100,000: worker peak memory growth (VmHWM)",
                f"{rise:.1f} MB",
                f"{GOALS['memory']} (peak before {peak_before:.0f} MB, RSS after {rss:.0f} MB)",
            )
        )
        rows.append(
            (
                f"{label} export of 100,000: time (download included), size",
                f"{seconds:.2f} s",
                f"{size / 1e6:.1f} MB",
            )
        )
    for name, value, goal in rows:
        print(f"{name:58} {value:>14}  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
