"""Availability under work, through the running portal: operators sign in, search, reveal,
copy, export and press "Sync now" while the portal syncs a large estate every 30 s (2% of its
passwords rotated upstream before each), checks expiry after each sync, carries out bulk
rotations and writes backups.

The portal runs as ./start_https.sh runs it (Gunicorn over HTTPS, 2 workers) on SQLite or on
PostgreSQL, or as several such nodes on one PostgreSQL database behind the real HAProxy
(deploy/haproxy-several-nodes.cfg, health checks on); the simulator of SDDC Manager runs in a
process of its own. Every operator is a user of their own who signs in with a password and an
authenticator-app code (the second step), and signs in again every minute. It prints:

- every answer that was not the expected one, by kind (5xx, 4xx, connection errors);
- p50 / p95 / p99 per operation (sign-in, search, reveal, copy, export, "Sync now");
- the longest write transaction of the portal (from its log: every transaction over 250 ms
  is logged by portal.platform.writes), or that none was over 250 ms;
- the delay from a bulk rotation's end (its action reports success) to the first Reveal
  that shows a rotated credential's new password.

    .venv/bin/python bench/soak.py [--size 15000] [--minutes 3] [--users 20]
                                   [--database sqlite|postgresql] [--nodes 2]
                                   [--dual-control]

With --dual-control, rules make ESXi roots need approval and vCenter roots a check-out, and
requests, approvals, check-outs and the rotations after check-in run beside the operators
(bench/soak_control.py).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import pyotp
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import soak_control  # noqa: E402
from bench.common import sim_control, start_simulator  # noqa: E402
from portal.simulator.server import DEFAULT_PASSWORD  # noqa: E402
from tests.support import PortalServer, ProxiedNodes  # noqa: E402

ADMIN_PASSWORD = "soak bench admin passphrase"  # noqa: S105 - a throwaway local instance
OPERATOR_PASSWORD = "soak bench operator passphrase"  # noqa: S105 - the same
SIGN_IN_AGAIN_SECONDS = 60
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYNC_SECONDS = 30
ROTATE_FRACTION = 0.02
BULK_ROTATE = 200
HOLD = re.compile(
    r"held the database for (\d+) ms \((\d+) rows, (\d+) statements, (\d+) ms of its "
    r"thread's CPU; first: ([^)]*)\)"
)


class Figures:
    """Latencies per operation and unexpected answers by kind, from every thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter = collections.Counter()
        self.freshness: list[float] = []
        self.killed_at: int | None = None  # unexpected answers before a node was killed

    def timed(self, operation: str, call, expect=(200,)):
        """Run `call` (a request), record its time, or its failure by kind."""
        started = time.perf_counter()
        try:
            answer = call()
        except (requests.RequestException, AttributeError) as exc:  # AttributeError: no form
            with self.lock:
                self.errors[f"{operation}: {type(exc).__name__}"] += 1
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            if answer.status_code in expect:
                self.times[operation].append(elapsed)
            else:
                self.errors[f"{operation}: HTTP {answer.status_code}{_who(answer)}"] += 1
        return answer


def _who(answer: requests.Response) -> str:
    """Whose error: the portal's (its JSON error body) or the proxy's (its own page)."""
    if answer.status_code < 500:
        return ""
    try:
        return f" (portal: {answer.json()['error'][:60]})"
    except (ValueError, KeyError, TypeError):
        return " (not the portal: the proxy)"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _sign_in(front, figures: Figures, username: str, password: str, otp=None):
    """A signed-in session (None on failure). With `otp` (an Authenticator), the sign-in is
    password then code, timed as one operation."""
    session = front.session()
    try:
        token = front.csrf(session)
    except (requests.RequestException, AttributeError):  # no answer, or an error page
        with figures.lock:
            figures.errors["sign-in: the form did not load"] += 1
        return None

    def both_steps():
        answer = session.post(
            front.url + "/login",
            data={"username": username, "password": password, "csrf_token": token},
            allow_redirects=False,
        )
        if otp is None or answer.status_code != 302:
            return answer
        if not answer.headers["Location"].startswith("/login/verify"):
            raise requests.RequestException("no second step was asked for")
        step_token = front.csrf(session, "/login/verify")  # AttributeError: an error page
        return session.post(
            front.url + "/login/verify",
            data={"code": otp.next_code(), "csrf_token": step_token},
            allow_redirects=False,
        )

    answer = figures.timed("sign-in", both_steps, expect=(302,))
    if answer is None or answer.status_code != 302:
        return None
    try:
        session.headers["X-CSRFToken"] = front.csrf(session, "/")
    except (requests.RequestException, AttributeError):
        with figures.lock:
            figures.errors["sign-in: the dashboard did not load"] += 1
        return None
    return session


class Authenticator:
    """A user's authenticator app: a fresh code for each sign-in (the portal takes each 30 s
    step once, and the step after the current one; a third sign-in within one step waits)."""

    def __init__(self, secret: str):
        self.totp = pyotp.TOTP(secret)
        self.last_step = 0

    def next_code(self) -> str:
        while True:
            now = int(time.time()) // 30
            step = max(now, self.last_step + 1)
            if step <= now + 1:
                self.last_step = step
                return self.totp.generate_otp(step)
            time.sleep(1)


def _new_operator(front, admin, number: int) -> tuple[str, Authenticator]:
    """An admin of their own with an authenticator app; its name and its app."""
    name = f"operator{number}"
    created = admin.post(
        front.url + "/users/",
        data={
            "csrf_token": admin.headers["X-CSRFToken"],
            "username": name,
            "role": "admin",
            "password": ADMIN_PASSWORD,
        },
        allow_redirects=False,
    )
    assert created.status_code == 302, created.text[:300]
    session = front.session()
    assert front.login(session, name, ADMIN_PASSWORD).status_code == 302
    changed = session.post(
        front.url + "/change-password",
        data={
            "csrf_token": front.csrf(session, "/change-password"),
            "current_password": ADMIN_PASSWORD,
            "new_password": OPERATOR_PASSWORD,
            "confirm_password": OPERATOR_PASSWORD,
        },
        allow_redirects=False,
    )
    assert changed.status_code == 302, changed.text[:300]
    session.headers["X-CSRFToken"] = front.csrf(session, "/account/security")
    started = session.post(
        front.url + "/api/v1/me/second-factor/totp", json={"password": OPERATOR_PASSWORD}
    )
    otp = Authenticator(started.json()["secret"])
    confirmed = session.post(
        front.url + "/api/v1/me/second-factor/totp/confirm", json={"code": otp.next_code()}
    )
    assert confirmed.status_code == 200, confirmed.text[:300]
    return name, otp


def _operator(
    front, figures, username, otp, env_id, ids, stop, export_every: int, sensitive=()
) -> None:
    rng = secrets.SystemRandom()
    session = None
    signed_in = 0.0
    rounds = 0
    while not stop.is_set():
        if session is None or time.monotonic() - signed_in > SIGN_IN_AGAIN_SECONDS:
            session = _sign_in(front, figures, username, OPERATOR_PASSWORD, otp)
            signed_in = time.monotonic()
            if session is None:
                stop.wait(1)
                continue
        rounds += 1
        cred = rng.choice(ids)
        calls = [
            ("search", "get", "/api/v1/credentials", {"params": {"q": f"esx-{rng.randrange(99)}"}}),
            ("reveal", "post", f"/api/v1/credentials/{cred}/reveal", {"json": {}}),
            ("copy", "post", f"/api/v1/credentials/{cred}/reveal", {"json": {"purpose": "copy"}}),
        ]
        if rounds % export_every == 0:
            calls.append(("export", "post", f"/api/v1/environments/{env_id}/export", {"json": {}}))
        if rounds % 7 == 0:
            body = {"json": {"source": "manager"}}
            calls.append(("sync now", "post", f"/api/v1/environments/{env_id}/sync", body))
        if sensitive and rounds % 5 == 0:
            soak_control.refused_reveal(front.url, session, figures, rng.choice(sensitive))
        for operation, method, path, options in calls:
            figures.timed(
                operation,
                partial(getattr(session, method), front.url + path, **options),
                expect=(202,) if operation == "sync now" else (200,),
            )
        stop.wait(rng.uniform(0.2, 1.0))


def _upstream_rotations(port, ca, stop: threading.Event) -> None:
    while not stop.wait(SYNC_SECONDS - 2):
        sim_control(port, ca, {"action": "rotate", "fraction": ROTATE_FRACTION})


def _bulk_rotations(front, figures, env_id, ids, stop: threading.Event) -> None:
    """Rotate BULK_ROTATE credentials through the portal, then time how long the portal
    takes to show a new password after the action ended."""
    session = _sign_in(front, figures, "admin", ADMIN_PASSWORD)
    while session is not None and not stop.wait(20):
        try:
            _one_bulk_rotation(front.url, session, figures, ids, stop)
        except (requests.RequestException, ValueError, KeyError) as exc:
            with figures.lock:
                figures.errors[f"bulk rotate: {type(exc).__name__}"] += 1


def _one_bulk_rotation(url, session, figures, ids, stop: threading.Event) -> None:
    batch = ids[:BULK_ROTATE]
    probe = batch[0]
    before = session.post(f"{url}/api/v1/credentials/{probe}/reveal", json={}).json()
    action = session.post(
        f"{url}/api/v1/credentials/actions",
        json={"operation": "rotate", "credential_ids": batch},
    )
    if action.status_code != 202:
        with figures.lock:
            figures.errors[f"bulk rotate: HTTP {action.status_code}{_who(action)}"] += 1
        return
    action_id = action.json()["id"]
    state = "queued"
    while state in ("queued", "running") and not stop.is_set():
        time.sleep(0.2)
        answer = session.get(f"{url}/api/v1/credential-actions/{action_id}")
        if answer.status_code == 200:
            state = answer.json()["state"]
    if stop.is_set():
        return  # the run ended while the action was still going: not a failure
    if state != "success":
        with figures.lock:
            figures.errors[f"bulk rotate: {state}"] += 1
        return
    done = time.perf_counter()
    while not stop.is_set():
        answer = session.post(f"{url}/api/v1/credentials/{probe}/reveal", json={})
        if answer.status_code == 200 and answer.json().get("password") != before.get("password"):
            with figures.lock:
                figures.freshness.append(time.perf_counter() - done)
            return
        time.sleep(0.5)


def _kill_leader(nodes, figures: Figures) -> None:
    """SIGKILL the leading node's processes (its master and workers), as a crash would."""
    for node in nodes:
        try:
            role = node.session().get(node.url + "/healthz", timeout=10).json()["scheduler"]
        except (requests.RequestException, ValueError, KeyError):
            continue
        if role == "leader":
            with figures.lock:
                figures.killed_at = sum(figures.errors.values())
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)
            print(f"killed the leader {node.base.name} (kill -9)")
            return
    print("no leader found to kill")


def _backups(server, stop: threading.Event, env: dict) -> None:
    while not stop.wait(45):
        subprocess.run(
            [str(ROOT / ".venv/bin/flask"), "--app", "app", "backup"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        )


def _create_database() -> str:
    import psycopg2

    name = f"soak_{secrets.token_hex(4)}"
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def _drop_database(url: str) -> None:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s", (name,)
        )
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


def main() -> None:
    """Run the scenario and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=15000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="2 or more: that many nodes on PostgreSQL behind HAProxy",
    )
    parser.add_argument(
        "--kill-leader",
        action="store_true",
        help="half way, kill -9 the node that runs the scheduler (with --nodes 2 or more); the "
        "unexpected answers are then also counted from that moment",
    )
    parser.add_argument(
        "--dual-control",
        action="store_true",
        help="rules make ESXi roots need approval and vCenter roots a check-out; requests, "
        "approvals and check-outs run beside the operators",
    )
    parser.add_argument(
        "--export-every",
        type=int,
        default=20,
        help="each operator exports the environment every N rounds (a round: search, reveal, "
        "copy, then a pause of 0.2-1 s)",
    )
    args = parser.parse_args()
    # A SIGTERM (timeout, kill) ends the run through its clean-up: nodes, database, files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    if args.nodes > 1:
        args.database = "postgresql"

    work = Path(tempfile.mkdtemp(prefix="soak", dir="/tmp"))
    sim, port, ca = start_simulator(args.size, work)
    database_url = _create_database() if args.database == "postgresql" else None
    env = {
        "PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PORTAL_TEST_INTERVAL_SECONDS": str(SYNC_SECONDS),
        "PORTAL_REVEALS_PER_MINUTE": "100000",
        **({"DATABASE_URL": database_url} if database_url else {}),
    }
    if args.nodes > 1:
        front = ProxiedNodes(work / "portal", env, count=args.nodes)
        nodes = front.nodes
    else:
        front = PortalServer(work / "portal" / "node1", workers=2, env=env)
        nodes = [front]
    figures = Figures()
    stop = threading.Event()
    try:
        front.start()
        admin = _sign_in(front, figures, "admin", ADMIN_PASSWORD)
        env_id = admin.post(
            front.url + "/api/v1/environments",
            json={
                "name": "soak",
                "manager": {
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "administrator@vsphere.local",
                    "password": DEFAULT_PASSWORD,
                    "ca_pem": ca.read_text(),
                },
            },
        ).json()["id"]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            operators = list(
                pool.map(partial(_new_operator, front, admin), range(1, args.users + 1))
            )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = admin.get(f"{front.url}/api/v1/environments/{env_id}").json()["status"]
            if status["manager"]["state"] == "success":
                break
            time.sleep(1)
        ids = [
            item["id"]
            for item in admin.get(
                f"{front.url}/api/v1/environments/{env_id}/credentials",
                params={"per_page": 500, "q": "esx"},
            ).json()["items"]
        ]
        print(
            f"{args.size} credentials synced; {args.users} operators for {args.minutes} min "
            f"on {args.nodes} node(s), {args.database}"
        )
        extra, sensitive = [], []
        if args.dual_control:
            extra_users = [
                _new_operator(front, admin, number) for number in (args.users + 1, args.users + 2)
            ]
            extra, sensitive = soak_control.start(
                front,
                admin,
                extra_users,
                lambda name, otp: _sign_in(front, figures, name, OPERATOR_PASSWORD, otp),
                figures,
                env_id,
                stop,
            )
            ids = [i for i in ids if i not in set(sensitive)]
        figures.times.clear()
        figures.errors.clear()
        threads = [
            threading.Thread(
                target=_operator,
                args=(front, figures, name, otp, env_id, ids, stop, args.export_every, sensitive),
                daemon=True,
            )
            for name, otp in operators
        ]
        threads += extra
        threads.append(threading.Thread(target=_upstream_rotations, args=(port, ca, stop)))
        threads.append(
            threading.Thread(target=_bulk_rotations, args=(front, figures, env_id, ids, stop))
        )
        if database_url is None:
            threads.append(threading.Thread(target=_backups, args=(front, stop, front.env)))
        for thread in threads:
            thread.start()
        if args.kill_leader:
            time.sleep(args.minutes * 30)
            _kill_leader(nodes, figures)
            time.sleep(args.minutes * 30)
        else:
            time.sleep(args.minutes * 60)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        _report(args, nodes, figures)
    finally:
        stop.set()
        front.stop()
        sim.terminate()
        sim.wait()
        if database_url:
            _drop_database(database_url)
        shutil.rmtree(work, ignore_errors=True)


def _report(args, nodes, figures: Figures) -> None:
    """Print the figures of the run."""
    log = "".join((node.base / "logs" / "portal.log").read_text(errors="replace") for node in nodes)
    holds = sorted(
        (
            (int(ms), int(rows), int(n), int(cpu), first)
            for ms, rows, n, cpu, first in HOLD.findall(log)
        ),
        reverse=True,
    )
    runs = log.count("sync soak / manager success")
    print(
        f"\ndatabase: {args.database}, {args.nodes} node(s); "
        f"syncs that succeeded during the run: {runs}"
    )
    print(f"{'operation':<24} {'count':>7} {'p50 s':>8} {'p95 s':>8} {'p99 s':>8}")
    usual = ("sign-in", "search", "reveal", "copy", "export", "sync now")
    others = sorted(set(figures.times) - set(usual))
    for operation in (*usual, *others):
        values = figures.times.get(operation) or [0.0]
        print(
            f"{operation:<24} {len(figures.times.get(operation, [])):>7} "
            f"{statistics.median(values):>8.3f} {_percentile(values, 0.95):>8.3f} "
            f"{_percentile(values, 0.99):>8.3f}"
        )
    total = sum(len(v) for v in figures.times.values())
    errors = sum(figures.errors.values())
    print(f"\nunexpected answers: {errors} of {total + errors}")
    for kind, count in figures.errors.most_common():
        print(f"  {kind}: {count}")
    proxy_log = nodes[0].base.parent / "haproxy.log"
    if proxy_log.exists():
        # HAProxy's own answers by termination state (sQ: waited its turn in the queue too
        # long; SC: no node would take it; see HAProxy's "Session state at disconnection").
        text = proxy_log.read_text(errors="replace")
        states = collections.Counter(
            m.groups() for m in re.finditer(r" (5\d\d) \d+ - - (\S{4}) ", text)
        )
        changes = [
            line.strip()
            for line in text.splitlines()
            if line.startswith("Server nodes/") and (" is DOWN" in line or " is UP" in line)
        ]
        for line in changes[:12]:
            print(f"  proxy: {line[:160]}")
        refused = [line for line in text.splitlines() if " 503 " in line]
        for line in refused[:3] + refused[-3:]:
            print(f"  proxy 503: {line[:220]}")
        if states:
            print(
                "  proxy answers 5xx by status and state: "
                + ", ".join(f"{status} {state}: {n}" for (status, state), n in states.most_common())
            )
    if figures.killed_at is not None:
        print(f"unexpected answers from the kill of the leader on: {errors - figures.killed_at}")
    if holds:
        busiest = max(holds, key=lambda hold: hold[3])
        print(
            f"write transactions over 250 ms (their wait for the lock included): {len(holds)}, "
            f"the longest {holds[0][0]} ms; the most CPU inside one: {busiest[3]} ms "
            f"({busiest[0]} ms, {busiest[4]})"
        )
        for ms, rows, statements, cpu, first in holds[:8]:
            print(f"  {ms} ms: {rows} rows in {statements} statements, {cpu} ms of CPU; {first}")
    else:
        print("write transactions over 250 ms: none")
    if figures.freshness:
        print(
            "rotation end to new password shown: "
            + ", ".join(f"{s:.1f}" for s in figures.freshness)
            + f" s (max {max(figures.freshness):.1f} s; goal 60 s)"
        )


if __name__ == "__main__":
    main()
