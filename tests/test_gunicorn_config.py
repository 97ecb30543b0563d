"""Gunicorn settings derived from the portal's configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
