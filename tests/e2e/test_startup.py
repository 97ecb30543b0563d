"""Start-up for real: ./start_https.sh with Gunicorn, concurrent first starts, TLS scan."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, ca_signed_pair, free_port, running_portal

NEW_PASSWORD = "a brand new passphrase"  # noqa: S105

TABLES = {
    "users",
    "user_sessions",
    "login_failures",
    "environments",
    "endpoints",
    "credentials",
    "password_history",
    "sync_runs",
    "audit_events",
    "portal_meta",
    "alembic_version",
}


def _tables(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _users(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT id, username, role FROM users ORDER BY id").fetchall()


def test_fresh_install_and_restart_with_gunicorn(tmp_path):
    db_path = tmp_path / "data" / "vcf_credentials.db"
    with running_portal(tmp_path, workers=2) as server:
        assert db_path.exists()
        assert TABLES <= _tables(db_path)
        assert _users(db_path) == [(1, "admin", "admin")]
        assert (tmp_path / "data" / "data.key").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "ssl" / "key.pem").stat().st_mode & 0o777 == 0o600
        output = server.output.read_text()
        assert "sign in as 'admin'" in output and server.url.split("//")[1] in output
        assert "Generated a self-signed certificate" in output
        assert "Warning" not in output, output  # a start prints no Python warning
        session = server.session()
        page = session.get(server.url + "/login")
        assert page.status_code == 200 and 'name="password"' in page.text
        assert "Server" not in page.headers
        login = server.login(session, "admin", "admin")
        assert login.status_code == 302 and login.headers["Location"].endswith("/change-password")
        assert session.get(server.url + "/", allow_redirects=False).status_code == 302
        token = server.csrf(session, "/change-password")
        changed = session.post(
            server.url + "/change-password",
            data={
                "csrf_token": token,
                "current_password": "admin",
                "new_password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD,
            },
            allow_redirects=False,
        )
        assert changed.status_code == 302
        dashboard = session.get(server.url + "/")
        assert dashboard.status_code == 200 and "Sign out" in dashboard.text
        assert "Environments" in dashboard.text
        assert "Database initialization complete" in (tmp_path / "logs" / "portal.log").read_text()
    with running_portal(tmp_path, workers=2) as server:
        assert _users(db_path) == [(1, "admin", "admin")]
        assert "sign in as 'admin'" not in server.output.read_text().split("VCF Credential")[-1]
        session = server.session()
        assert server.login(session, "admin", "admin").status_code == 401
        assert server.login(session, "admin", NEW_PASSWORD).headers["Location"].endswith("/")


def test_concurrent_first_start(tmp_path):
    env_script = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); "
        "os.environ.update(PORTAL_SCHEDULER='off'); import app"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PORTAL_DATA_DIR": str(tmp_path / "data"),
        "PORTAL_LOG_DIR": str(tmp_path / "logs"),
    }
    procs = [
        subprocess.Popen([sys.executable, "-c", env_script, str(ROOT)], env=env, cwd=tmp_path)
        for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    db_path = tmp_path / "data" / "vcf_credentials.db"
    assert _users(db_path) == [(1, "admin", "admin")]
    assert TABLES <= _tables(db_path)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(conn.execute("SELECT * FROM alembic_version").fetchall()) == 1


def test_bad_configuration_names_the_variable(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import app",
            str(ROOT),
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "PORTAL_WORKERS": "many",
            "PORTAL_DATA_DIR": str(tmp_path / "d"),
            "PORTAL_LOG_DIR": str(tmp_path / "l"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PORTAL_WORKERS" in result.stderr


def test_sslyze_mozilla_intermediate(tmp_path):
    # sslyze has a virtual environment of its own (./run_tests.sh makes it): it pins an
    # older cryptography than the portal's.
    sslyze = ROOT / ".venv-tls-scan" / "bin" / "sslyze"
    if not sslyze.exists():
        pytest.fail("sslyze is missing: ./run_tests.sh installs requirements-tls-scan.txt")
    ca_path = ca_signed_pair(tmp_path / "ssl")
    with running_portal(tmp_path, workers=1, ca=ca_path) as server:
        result = subprocess.run(
            [
                str(sslyze),
                "--mozilla_config=intermediate",
                f"--certinfo_ca_file={ca_path}",
                f"127.0.0.1:{server.port}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "is compliant" in result.stdout.lower() or "OK - Compliant" in result.stdout


def test_version_flag():
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    from portal import __version__

    assert result.returncode == 0 and result.stdout.strip().endswith(__version__)


def _start_once(data_dir: Path) -> subprocess.CompletedProcess:
    """Import app.py (the start-up) in a fresh process, without the scheduler."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import app",
            str(ROOT),
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "PORTAL_DATA_DIR": str(data_dir),
            "PORTAL_LOG_DIR": str(data_dir.parent / "logs"),
            "PORTAL_SCHEDULER": "off",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_or_corrupt_data_key_stops_start_up_in_one_line(tmp_path):
    data = tmp_path / "data"
    first = _start_once(data)
    assert first.returncode == 0, first.stderr
    assert "sign in as 'admin'" in first.stderr
    key = data / "data.key"
    key.unlink()

    missing = _start_once(data)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert f"data key file {key} is missing" in missing.stderr
    assert not key.exists()

    key.write_text("this is not a key\n")
    corrupt = _start_once(data)
    assert corrupt.returncode != 0 and "Traceback" not in corrupt.stderr
    assert len(corrupt.stderr.strip().splitlines()) == 1, corrupt.stderr
    assert str(key) in corrupt.stderr

    key.write_text("33" * 32 + "\n")
    other = _start_once(data)
    assert other.returncode != 0 and "does not match this database" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr


def _start_https_fails(tmp_path: Path, bind: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PORTAL_BIND": bind,
        "PORTAL_WORKERS": "1",
        "PORTAL_SCHEDULER": "off",
        "PORTAL_DATA_DIR": str(tmp_path / "data"),
        "PORTAL_LOG_DIR": str(tmp_path / "logs"),
        "PORTAL_SSL_DIR": str(tmp_path / "ssl"),
    }
    return subprocess.run(
        [str(ROOT / "start_https.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_start_https_shows_why_it_cannot_bind(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = _start_https_fails(tmp_path, f"127.0.0.1:{port}")
    assert in_use.returncode != 0
    assert "Connection in use" in in_use.stderr and str(port) in in_use.stderr, in_use.stderr
    # 192.0.2.1 (TEST-NET-1) is on no interface here: nothing is sent, the bind just fails.
    foreign = _start_https_fails(tmp_path, f"192.0.2.1:{free_port()}")
    assert foreign.returncode != 0
    assert "Cannot assign requested address" in foreign.stderr, foreign.stderr
