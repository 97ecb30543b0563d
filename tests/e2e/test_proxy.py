"""Two real portal nodes on one PostgreSQL database behind the real HAProxy, configured from
deploy/haproxy-several-nodes.cfg: operators keep working through a rolling restart of both
nodes without one error, and a kill -9 of the leader loses no request beyond those it was
answering, while the other node takes over the scheduler."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from support import PortalServer, ProxiedNodes

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "proxy nodes admin pass"  # noqa: S105 - a throwaway local instance
OPERATORS = 8


class Operators:
    """Signed-in operators listing environments, searching and opening the dashboard."""

    def __init__(self, url: str, ca: Path):
        self.url, self.ca = url, ca
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._work) for _ in range(OPERATORS)]

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca)
        session.headers["Referer"] = self.url + "/"
        page = session.get(self.url + "/login", timeout=30)
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        answer = session.post(
            self.url + "/login",
            data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 302, answer.status_code
        token = re.search(r'name="csrf-token" content="([^"]+)"', session.get(self.url + "/").text)
        session.headers["X-CSRFToken"] = token.group(1)
        return session

    def _work(self) -> None:
        session = self._session()
        while not self.stop.is_set():
            for path in ("/api/v1/environments", "/api/v1/credentials?q=esx", "/"):
                try:
                    answer = session.get(self.url + path, timeout=30)
                    outcome = answer.status_code
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                with self.lock:
                    if outcome == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{path}: {outcome}")
            time.sleep(0.05)

    def __enter__(self) -> Operators:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def count(self) -> tuple[int, int]:
        with self.lock:
            return self.ok, len(self.failures)


def _role(node: PortalServer) -> str:
    try:
        return node.session().get(node.url + "/healthz", timeout=5).json()["scheduler"]
    except (requests.RequestException, ValueError):
        return "down"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _unusual_proxy_lines(folder: Path, limit: int = 20) -> list[str]:
    """HAProxy's log lines (httplog) whose answer was not 200 or whose termination state was
    not normal ("----"), at most `limit`."""
    try:
        lines = (folder / "haproxy.log").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [line for line in lines if " 200 " not in line or " ---- " not in line][-limit:]


def test_rolling_restart_and_a_killed_leader_behind_haproxy(tmp_path, pg_url):
    env = {
        "DATABASE_URL": pg_url,
        "PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PORTAL_REVEALS_PER_MINUTE": "100000",
    }
    cluster = ProxiedNodes(tmp_path, env).start()
    a, b = cluster.nodes
    try:
        with Operators(cluster.url, cluster.ca) as operators:
            _wait(lambda: operators.count()[0] > 50, 60, "traffic through the proxy")
            for node in (a, b):  # rolling restart: one node at a time
                node.proc.send_signal(signal.SIGTERM)
                node.proc.wait(timeout=40)
                node.start()
                _wait(lambda: operators.count()[0] > 0, 5, "traffic")
                time.sleep(3)  # the proxy sees the node healthy again (rise 2, inter 2 s)
            ok, failed = operators.count()
            # On a failure, the proxy's own lines that were not a plain 200 say where it was.
            assert failed == 0, (operators.failures[:10], _unusual_proxy_lines(tmp_path))
            assert ok > 200

            leader = a if _role(a) == "leader" else b
            other = b if leader is a else a
            before = operators.count()
            os.killpg(leader.proc.pid, signal.SIGKILL)
            leader.proc.wait(timeout=10)
            _wait(lambda: _role(other) == "leader", 30, "the other node to lead")
            time.sleep(5)
            ok, failed = operators.count()
            assert ok > before[0] + 50
        lost = failed - before[1]
        assert lost <= OPERATORS, operators.failures[before[1] :]
    finally:
        cluster.stop()
