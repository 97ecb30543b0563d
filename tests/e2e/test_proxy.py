"""Two real portal nodes on one PostgreSQL database behind the real HAProxy, configured from
deploy/haproxy-several-nodes.cfg: operators keep working through a rolling restart of both
nodes without one error, and a kill -9 of the leader loses no request beyond those it was
answering, while the other node takes over the scheduler."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from support import ROOT, PortalServer, ca_signed_pair, free_port

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "proxy nodes admin pass"  # noqa: S105 - a throwaway local instance
OPERATORS = 8
NAME = "vcf-portal.example.com"  # the example's name, replaced by the test certificate's


def _proxy_config(tmp_path: Path, port: int, nodes: list[PortalServer], ca: Path) -> Path:
    """The documented configuration with this test's addresses, certificate and nodes."""
    text = (ROOT / "deploy" / "haproxy-several-nodes.cfg").read_text()
    pem = tmp_path / "proxy.pem"
    ssl_dir = nodes[0].base / "ssl"
    pem.write_text((ssl_dir / "cert.pem").read_text() + (ssl_dir / "key.pem").read_text())
    bind = "bind :443 ssl crt /etc/haproxy/tls/vcf-portal.pem"
    text = text.replace(bind, f"bind 127.0.0.1:{port} ssl crt {pem}")
    text = text.replace("/etc/haproxy/tls/portal-nodes-ca.pem", str(ca))
    text = text.replace(NAME, "localhost")  # the name the test certificate carries
    servers = "\n".join(
        f"    server node{n} 127.0.0.1:{node.port}" for n, node in enumerate(nodes, 1)
    )
    text = re.sub(r"(?m)^    server node\d .*\n", "", text) + servers + "\n"
    assert f"127.0.0.1:{port}" in text and str(ca) in text
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path


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


def test_rolling_restart_and_a_killed_leader_behind_haproxy(tmp_path, pg_url):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "haproxy is not installed (.ci/run installs it)"
    ca = ca_signed_pair(tmp_path / "a" / "ssl")
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "ssl", tmp_path / "b" / "ssl")
    env = {
        "DATABASE_URL": pg_url,
        "PORTAL_SECRET_KEY": "a session key both nodes share, 32+ chars",
        "PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PORTAL_TRUSTED_PROXIES": "127.0.0.1",
        "PORTAL_REVEALS_PER_MINUTE": "100000",
    }
    a = PortalServer(tmp_path / "a", workers=2, env=env, ca=ca).start()
    (tmp_path / "b" / "data").mkdir(mode=0o700)
    shutil.copy2(tmp_path / "a" / "data" / "data.key", tmp_path / "b" / "data" / "data.key")
    b = PortalServer(tmp_path / "b", workers=2, env=env, ca=ca).start()
    port = free_port()
    config = _proxy_config(tmp_path, port, [a, b], ca)
    with open(tmp_path / "haproxy.log", "wb") as output:  # the proxy's log, for a failure
        proxy = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    url = f"https://127.0.0.1:{port}"
    try:
        _wait(lambda: _healthy(url, ca), 30, "the proxy")
        with Operators(url, ca) as operators:
            _wait(lambda: operators.count()[0] > 50, 60, "traffic through the proxy")
            for node in (a, b):  # rolling restart: one node at a time
                node.proc.send_signal(signal.SIGTERM)
                node.proc.wait(timeout=40)
                node.start()
                _wait(lambda: operators.count()[0] > 0, 5, "traffic")
                time.sleep(3)  # the proxy sees the node healthy again (rise 2, inter 2 s)
            ok, failed = operators.count()
            assert failed == 0, operators.failures[:10]
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
        proxy.terminate()
        proxy.wait(timeout=10)
        for node in (a, b):
            node.stop()


def _healthy(url: str, ca: Path) -> bool:
    try:
        return requests.get(url + "/healthz", verify=str(ca), timeout=3).status_code == 200
    except requests.RequestException:
        return False
