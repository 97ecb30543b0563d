"""./demo.sh for real: the simulator and the portal start, and a signal stops both."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from support import ROOT, free_port, not_copied

NOT_COPIED = (".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "dist", "docs")


def _descendants(pid: int) -> set[int]:
    """Every live process below pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


class Demo:
    """A running ./demo.sh in `root` (the checkout or a copy of it)."""

    def __init__(self, root: Path, base: Path, **env: str):
        self.port = free_port()
        self.output = base / "demo-output.txt"
        self.env = {
            **os.environ,
            "PORTAL_BIND": f"127.0.0.1:{self.port}",
            "PORTAL_WORKERS": "1",
            "PORTAL_LOG_DIR": str(base / "logs"),
            "PORTAL_SSL_DIR": str(base / "ssl"),
            "SIM_PORT": str(free_port()),
            "SIM_CREDENTIALS": "20",
            **env,
        }
        self.cert = base / "ssl" / "cert.pem"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [str(root / "demo.sh")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"demo.sh exited: {self.output.read_text()}")
            try:
                url = f"https://127.0.0.1:{self.port}/healthz"
                if requests.get(url, verify=str(self.cert), timeout=2).ok:
                    return
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"demo.sh did not start: {self.output.read_text()}")

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def test_sigterm_stops_the_portal_and_the_simulator(tmp_path):
    demo = Demo(ROOT, tmp_path, PORTAL_DATA_DIR=str(tmp_path / "data"))
    try:
        demo.wait_ready()
        children = _descendants(demo.proc.pid)
        assert len(children) >= 2  # the simulator, Gunicorn and its worker
        assert "sign in as 'admin'" in demo.output.read_text()
        demo.proc.send_signal(signal.SIGTERM)  # to demo.sh alone, as `kill PID` does
        assert demo.proc.wait(timeout=40) != 0
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        demo.kill_all()


def _sources_synced(database: Path, timeout: float = 90) -> dict:
    """Each demo source's last state, once none is still waiting for its first sync."""
    deadline = time.monotonic() + timeout
    states: dict = {}
    while time.monotonic() < deadline:
        if database.exists():
            with closing(sqlite3.connect(database, timeout=5)) as db:
                try:
                    states = {
                        source: (status, api)
                        for source, status, api in db.execute(
                            "SELECT source, last_status, api_detected FROM endpoints"
                        )
                    }
                except sqlite3.OperationalError:
                    states = {}
            if len(states) == 3 and all(status for status, _ in states.values()):
                return states
        time.sleep(0.5)
    raise AssertionError(f"the demo's sources did not sync: {states}")


@pytest.mark.parametrize(
    ("version", "api"),
    [("9.1", "VCF 9.1 fleet password management"), ("9.0", "VCF 9.0 fleet management locker")],
)
def test_the_demo_is_a_vcf_9_estate_read_from_three_surfaces(tmp_path, version, api):
    data = tmp_path / "data"
    demo = Demo(ROOT, tmp_path, PORTAL_DATA_DIR=str(data), SIM_VCF_VERSION=version)
    try:
        demo.wait_ready()
        states = _sources_synced(data / "vcf_credentials.db")
        assert states == {
            "manager": ("success", None),
            "installer": ("success", None),
            "fleet": ("success", api),
        }
        with closing(sqlite3.connect(data / "vcf_credentials.db")) as db:
            fleet = dict(
                db.execute(
                    "SELECT resource_type, COUNT(*) FROM credentials WHERE source = 'fleet' "
                    "AND password_enc IS NOT NULL GROUP BY resource_type"
                ).fetchall()
            )
            # Two accounts rotated in fleet management since bring-up (SIM_FLEET_ROTATED):
            # the installer spec's copies of them hold another password, flagged stale.
            stale = db.execute(
                "SELECT COUNT(*) FROM credentials AS spec JOIN credentials AS fleet"
                " ON fleet.environment_id = spec.environment_id AND fleet.source = 'fleet'"
                " AND lower(fleet.hostname) = lower(spec.hostname)"
                " AND fleet.username = spec.username"
                " WHERE spec.source = 'installer' AND fleet.password_mac != spec.password_mac"
            ).fetchone()[0]
        assert {"VCF_OPERATIONS", "VCF_AUTOMATION", "CLOUD_PROXY"} <= set(fleet)
        assert stale == 2
    finally:
        demo.proc.send_signal(signal.SIGTERM)
        demo.proc.wait(timeout=40)
        demo.kill_all()


@pytest.fixture
def checkout_copy(tmp_path):
    """A copy of the checkout (so its default data directory is a temporary one)."""
    copy = tmp_path / "portal"
    shutil.copytree(ROOT, copy, ignore=not_copied(*NOT_COPIED))
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def test_demo_on_a_postgresql_database_the_portal_created(tmp_path, checkout_copy, pg_url):
    # What ./start_https.sh does first on that database: the start-up, with the default
    # data directory (instance/ of the checkout), which creates the data key there.
    started = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import app"]
        + [str(checkout_copy)],
        env={
            "PATH": os.environ["PATH"],
            "DATABASE_URL": pg_url,
            "PORTAL_SCHEDULER": "off",
            "PORTAL_LOG_DIR": str(tmp_path / "logs"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert (checkout_copy / "instance" / "data.key").exists()

    demo = Demo(checkout_copy, tmp_path, DATABASE_URL=pg_url)
    try:
        demo.wait_ready()
        assert "configured; its first sync is queued" in demo.output.read_text()
    finally:
        demo.proc.send_signal(signal.SIGTERM)
        demo.proc.wait(timeout=40)
        demo.kill_all()
