"""Real servers for tests: the portal through ./start_https.sh (Gunicorn over HTTPS)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortalServer:
    """A running ./start_https.sh; `session()` gives a requests session that trusts its cert."""

    def __init__(
        self, base: Path, workers: int = 2, env: dict | None = None, ca: Path | None = None
    ):
        self.base = base
        self.ca = ca
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PORTAL_BIND": f"127.0.0.1:{self.port}",
            "PORTAL_WORKERS": str(workers),
            "PORTAL_DATA_DIR": str(base / "data"),
            "PORTAL_LOG_DIR": str(base / "logs"),
            "PORTAL_SSL_DIR": str(base / "ssl"),
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.output = base / "server-output.txt"

    @property
    def cert(self) -> str:
        """What to trust: the given CA, or the self-signed certificate itself."""
        return str(self.ca or self.base / "ssl" / "cert.pem")

    def start(self, timeout: float = 120) -> PortalServer:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [str(ROOT / "start_https.sh")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portal exited: {self.output.read_text()}")
            try:
                if requests.get(self.url + "/healthz", verify=self.cert, timeout=2).ok:
                    return self
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"portal did not start: {self.output.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = self.cert
        session.headers["Referer"] = self.url + "/"
        return session

    def csrf(self, session: requests.Session, path: str = "/login") -> str:
        return CSRF_META.search(session.get(self.url + path).text).group(1)

    def login(self, session: requests.Session, username: str, password: str):
        token = self.csrf(session)
        return session.post(
            self.url + "/login",
            data={"username": username, "password": password, "csrf_token": token},
            allow_redirects=False,
        )


@contextmanager
def running_portal(base: Path, workers: int = 2, env: dict | None = None, ca: Path | None = None):
    server = PortalServer(base, workers, env, ca).start()
    try:
        yield server
    finally:
        server.stop()
