"""Gunicorn settings derived from the portal's configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs Gunicorn's configuration in a process

ROOT = Path(__file__).resolve().parents[1]


def _setting(name: str, tmp_path, **env) -> str:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}
    environment.update(PORTAL_DATA_DIR=str(tmp_path), PORTAL_LOG_DIR=str(tmp_path), **env)
    done = subprocess.run(
        [sys.executable, "-c", f"import gunicorn_config as c; print(c.{name})"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_forwarded_headers_trusted_from_no_one_by_default(tmp_path):
    assert _setting("forwarded_allow_ips", tmp_path) == ""


def test_forwarded_headers_trusted_from_the_configured_proxies_only(tmp_path):
    value = _setting(
        "forwarded_allow_ips", tmp_path, PORTAL_TRUSTED_PROXIES="192.0.2.8/31, 2001:db8::5"
    )
    assert value == "192.0.2.8,192.0.2.9,2001:db8::5"


ACCESS_LINE = """
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config

import gunicorn_config as c

environ = {
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/%0d%0aFORGED",
    "PATH_INFO": "/\\r\\n127.0.0.1 - - [01/Dec/2026] \\"GET /admin HTTP/1.1\\" 200",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_USER_AGENT": "agent\\x1b[2J",
}
response = SimpleNamespace(status="404 NOT FOUND", sent=9, headers=[])
logger = c.TerminalErrorLogger(Config())
atoms = logger.atoms(response, SimpleNamespace(headers=[]), environ, timedelta(seconds=1))
print(c.access_log_format % atoms, end="")
"""


def test_a_request_path_cannot_forge_a_line_in_access_log(tmp_path):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}
    environment.update(PORTAL_DATA_DIR=str(tmp_path), PORTAL_LOG_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", ACCESS_LINE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    line = done.stdout
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert '"GET /\\r\\n127.0.0.1 - - [01/Dec/2026]' in line
    assert '"agent\\x1b[2J"' in line


def _under_file_limit(limit: int, tmp_path) -> tuple[int, int]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PORTAL_")}
    environment.update(PORTAL_DATA_DIR=str(tmp_path), PORTAL_LOG_DIR=str(tmp_path))
    code = (
        f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}));"
        "import gunicorn_config as c;"
        "print(c.worker_connections, resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    connections, soft = done.stdout.split()
    return int(connections), int(soft)


def test_worker_connections_fit_the_open_file_limit(tmp_path):
    assert _setting("worker_connections", tmp_path) == "1000"
    assert _setting("worker_class", tmp_path) == "portal.worker.TLSThreadWorker"
    assert _setting("control_socket_disable", tmp_path) == "True"
    # A small hard limit: the workers hold fewer connections instead of running out.
    assert _under_file_limit(400, tmp_path) == (200, 400)
