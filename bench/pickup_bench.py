"""Sync-now pickup benchmark: from the "Sync now" request to the run fetching, through the
real portal (./start_https.sh: Gunicorn over HTTPS, 2 workers) on SQLite and on PostgreSQL
(127.0.0.1:5432, a database created and dropped here), with the simulator on loopback.

Prints, over 20 presses, the median and the slowest of
- request to "fetching" as the browser sees it (POST, then the run polled every 10 ms), and
- queued to claimed as the database records it (sync_runs.created_at to started_at),
beside the goal (200 ms).

    .venv/bin/python bench/pickup_bench.py [--presses 20] [--database sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from portal.simulator import Simulator  # noqa: E402
from tests.support import PortalServer, endpoint_body  # noqa: E402

GOAL_MS = 200
ADMIN_PASSWORD = "pickup bench admin pass"  # noqa: S105 - a throwaway local instance
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _signed_in(server: PortalServer):
    session = server.session()
    assert server.login(session, "admin", ADMIN_PASSWORD).status_code == 302
    session.headers["X-CSRFToken"] = server.csrf(session, "/")
    return session


def _claim_delays(database: str, base: Path, url: str | None, run_ids: list[int]) -> list[float]:
    query = "SELECT created_at, started_at FROM sync_runs WHERE id IN ({})"
    if database == "sqlite":
        conn = sqlite3.connect(base / "data" / "vcf_credentials.db")
        rows = conn.execute(query.format(",".join("?" * len(run_ids))), run_ids).fetchall()
        parse = __import__("datetime").datetime.fromisoformat
        rows = [(parse(a), parse(b)) for a, b in rows]
    else:
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute(query.format(",".join(["%s"] * len(run_ids))), run_ids)
            rows = cur.fetchall()
    conn.close()
    return [(started - created).total_seconds() * 1000 for created, started in rows]


def measure(database: str, presses: int) -> None:
    """Start a portal on `database`, press Sync now `presses` times, print the figures."""
    base = Path(tempfile.mkdtemp(prefix="pick", dir="/tmp"))  # short: a socket lives there
    env = {"PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD}
    url = None
    if database == "postgresql":
        name = f"portal_bench_{secrets.token_hex(4)}"
        admin = psycopg2.connect(PG_ADMIN)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {name}")
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        env["DATABASE_URL"] = url
    server = PortalServer(base, workers=2, env=env)
    try:
        with Simulator(credentials=50, seed=9) as sim:
            server.start()
            session = _signed_in(server)
            created = session.post(
                server.url + "/api/v1/environments",
                json={"name": "lab", "manager": endpoint_body(sim, sync_enabled=False)},
            )
            env_id = created.json()["id"]
            seen, run_ids = [], []
            for _ in range(presses):
                time.sleep(0.3)  # let the previous run end
                started = time.perf_counter()
                answer = session.post(
                    f"{server.url}/api/v1/environments/{env_id}/sync", json={"source": "manager"}
                )
                run_id = answer.json()["id"]
                while True:
                    run = session.get(f"{server.url}/api/v1/sync-runs/{run_id}").json()
                    if run["phase"] != "queued":
                        break
                    time.sleep(0.01)
                seen.append((time.perf_counter() - started) * 1000)
                run_ids.append(run_id)
                while session.get(f"{server.url}/api/v1/sync-runs/{run_id}").json()["state"] in (
                    "queued",
                    "running",
                ):
                    time.sleep(0.05)
        claimed = _claim_delays(database, base, url, run_ids)
        print(f"{database}: {presses} presses of Sync now (goal: fetching within {GOAL_MS} ms)")
        for label, values in (
            ("request to fetching, as the browser sees it", seen),
            ("queued to claimed, in the database", claimed),
        ):
            median = statistics.median(values)
            verdict = "ok" if median <= GOAL_MS else "SLOW"
            print(
                f"  {label:46s} median {median:7.1f} ms  slowest {max(values):7.1f} ms  "
                f"{GOAL_MS / max(median, 0.1):5.1f}x under the goal  {verdict}"
            )
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        if url is not None:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    for database in ("sqlite", "postgresql"):
        if args.database in (database, "both"):
            measure(database, args.presses)


if __name__ == "__main__":
    main()
