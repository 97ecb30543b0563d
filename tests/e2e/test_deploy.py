"""Deployment: the unit's hardening, shellcheck, and install/update/uninstall for real.

The scripts run against a temporary root (--root) with systemctl and the flask command
replaced by stubs that log their calls, and without pip (PORTAL_INSTALL_SKIP_PIP).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import not_copied

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT_NAME = "vcf-credential-portal.service"
UNIT = DEPLOY / UNIT_NAME
CODE = "opt/vcf-credential-portal"
PREVIOUS = "opt/vcf-credential-portal.previous"
DATA = "var/lib/vcf-credential-portal"
LOGS = "var/log/vcf-credential-portal"
ENV_FILE = "etc/vcf-credential-portal/portal.env"
UNIT_FILE = f"etc/systemd/system/{UNIT_NAME}"
NOT_COPIED = (".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "dist")


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_exposure_is_at_most_2():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_unit_runs_unprivileged_with_only_the_bind_capability():
    unit = _unit_settings()
    assert unit["User"] == ["vcfportal"] and unit["Group"] == ["vcfportal"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["Type"] == ["simple"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["StandardOutput"] == ["journal"] and unit["StandardError"] == ["journal"]
    assert unit["EnvironmentFile"] == ["/etc/vcf-credential-portal/portal.env"]
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[0] == f"/{CODE}/.venv/bin/gunicorn"
    assert exec_start[-1] == "app:app"
    assert "PrivateUsers" not in unit  # would defeat the capability for the host's ports


def _shell_scripts() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "*.sh"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    names = set(listed.stdout.split()) if listed.returncode == 0 else set()
    if not names:
        names = {str(p.relative_to(ROOT)) for p in ROOT.glob("*.sh")}
    names.add(".ci/run")
    names.update(str(p.relative_to(ROOT)) for p in DEPLOY.glob("*.sh"))
    return sorted(names)


@pytest.mark.parametrize("script", _shell_scripts())
def test_shellcheck(script):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (.ci/run installs it)"
    result = subprocess.run(
        [shellcheck, "--external-sources", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class Deployment:
    """A temporary root, stubs that log to `calls.log`, and sources to install from."""

    tmp: Path
    root: Path
    env: dict[str, str]

    def source(self, name: str, broken: bool = False) -> Path:
        """A copy of the repository marked with `name`; a broken one fails the health check."""
        src = self.tmp / name
        shutil.copytree(ROOT, src, ignore=not_copied(*NOT_COPIED))
        (src / "MARKER").write_text(name)
        if broken:
            (src / "BROKEN").write_text("")
        return src

    def run(self, source: Path, script: str, *args: str, **env: str):
        """Run deploy/SCRIPT from `source` with --root."""
        return subprocess.run(
            [str(source / "deploy" / script), "--root", str(self.root), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def install(self, source: Path):
        result = self.run(source, "install.sh")
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def path(self, relative: str) -> Path:
        return self.root / relative

    def calls(self) -> list[str]:
        log = self.tmp / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def clear_calls(self) -> None:
        (self.tmp / "calls.log").unlink(missing_ok=True)

    def marker(self, relative: str = CODE) -> str:
        return (self.path(relative) / "MARKER").read_text()


def _stub(path: Path, body: str) -> str:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def deployment(tmp_path):
    calls = tmp_path / "calls.log"
    root = tmp_path / "root"
    systemctl = _stub(tmp_path / "systemctl", f'echo "systemctl $*" >> {calls}\n')
    flask = _stub(
        tmp_path / "flask",
        f'echo "flask $PWD $PORTAL_SCHEDULER $PORTAL_DATA_DIR $*" >> {calls}\n'
        'if [ "$3" = backup ]; then\n'
        f"  [ -e {tmp_path}/fail-backup ] && exit 1\n"
        '  echo backup > "$5/portal-backup.db"\n'
        "fi\n",
    )
    env = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
    env.update(
        PYTHON=sys.executable,
        PORTAL_INSTALL_SKIP_PIP="1",
        SYSTEMCTL=systemctl,
        PORTAL_FLASK=flask,
        HEALTHCHECK_CMD=f"test ! -e {root}/{CODE}/BROKEN",
        HEALTHCHECK_TIMEOUT="0",
    )
    return Deployment(tmp=tmp_path, root=root, env=env)


def test_install_lays_out_code_data_config_and_unit(deployment):
    result = deployment.install(deployment.source("v1"))

    code = deployment.path(CODE)
    assert deployment.marker() == "v1"
    assert (code / "app.py").is_file() and (code / "portal" / "platform" / "certs.py").is_file()
    assert (code / "deploy" / "update.sh").is_file()
    for absent in ("tests", ".git", "instance", "logs", "ssl"):
        assert not (code / absent).exists(), absent
    assert os.access(code / ".venv" / "bin" / "python", os.X_OK)
    assert not deployment.path(CODE + ".new").exists()

    data = deployment.path(DATA)
    assert _mode(data) == 0o700
    assert _mode(data / "backups") == 0o700
    assert (data / "ssl" / "cert.pem").is_file()
    assert _mode(data / "ssl" / "key.pem") == 0o600
    assert _mode(deployment.path(LOGS)) == 0o750
    assert f"ownership: vcfportal:vcfportal 0700 /{DATA}\n" in result.stdout

    env_file = deployment.path(ENV_FILE)
    assert _mode(env_file) == 0o600
    assert "PORTAL_BIND=0.0.0.0:443" in env_file.read_text().splitlines()
    assert f"/{DATA}" in env_file.read_text()

    unit = deployment.path(UNIT_FILE)
    assert unit.read_text() == UNIT.read_text()
    assert _mode(unit) == 0o644
    calls = deployment.calls()
    assert calls.index("systemctl daemon-reload") < calls.index(f"systemctl enable {UNIT_NAME}")
    assert calls[-1] == f"systemctl restart {UNIT_NAME}"

    assert "https://" in result.stdout and "'admin'" in result.stdout


def test_reinstall_keeps_data_certificate_and_settings(deployment):
    deployment.install(deployment.source("v1"))
    data = deployment.path(DATA)
    (data / "marker.db").write_text("precious")
    env_file = deployment.path(ENV_FILE)
    env_file.write_text(env_file.read_text() + "PORTAL_WORKERS=4\n")
    settings = env_file.read_text()
    cert = (data / "ssl" / "cert.pem").read_bytes()

    deployment.install(deployment.source("v2"))

    assert (data / "marker.db").read_text() == "precious"
    assert env_file.read_text() == settings and _mode(env_file) == 0o600
    assert (data / "ssl" / "cert.pem").read_bytes() == cert
    assert deployment.marker() == "v2"
    assert deployment.marker(PREVIOUS) == "v1"


def test_update_backs_up_then_swaps_the_code_and_keeps_the_previous(deployment):
    deployment.install(deployment.source("v1"))
    deployment.clear_calls()

    result = deployment.run(deployment.source("v2"), "update.sh")

    assert result.returncode == 0, result.stdout + result.stderr
    assert deployment.marker() == "v2"
    assert deployment.marker(PREVIOUS) == "v1"
    assert os.access(deployment.path(CODE) / ".venv" / "bin" / "python", os.X_OK)
    calls = deployment.calls()
    backup_dir = deployment.path(DATA) / "backups"
    assert calls[0] == f"systemctl stop {UNIT_NAME}"
    assert re.fullmatch(
        rf"flask {deployment.path(CODE)} off {deployment.path(DATA)} "
        rf"--app app backup --to {backup_dir}/update-\d{{8}}T\d{{6}}Z",
        calls[1],
    )
    assert calls[-1] == f"systemctl start {UNIT_NAME}"
    assert not any(" restore " in call for call in calls)


def test_update_rolls_back_code_and_database_when_unhealthy(deployment):
    deployment.install(deployment.source("v1"))
    deployment.clear_calls()

    result = deployment.run(deployment.source("v2", broken=True), "update.sh")

    assert result.returncode != 0
    assert "previous version runs again" in result.stderr
    assert deployment.marker() == "v1"
    assert not deployment.path(PREVIOUS).exists()
    assert deployment.path(UNIT_FILE).read_text() == UNIT.read_text()
    backups = list((deployment.path(DATA) / "backups").glob("update-*/portal-backup.db"))
    assert len(backups) == 1
    code, data = deployment.path(CODE), deployment.path(DATA)
    assert deployment.calls() == [
        f"systemctl stop {UNIT_NAME}",
        f"flask {code} off {data} --app app backup --to {backups[0].parent}",
        "systemctl daemon-reload",
        f"systemctl start {UNIT_NAME}",
        f"systemctl stop {UNIT_NAME}",
        "systemctl daemon-reload",
        f"flask {code} off {data} --app portal:create_app() restore {backups[0]}",
        f"systemctl start {UNIT_NAME}",
    ]


def test_update_changes_nothing_when_the_backup_fails(deployment):
    deployment.install(deployment.source("v1"))
    (deployment.tmp / "fail-backup").write_text("")
    deployment.clear_calls()

    result = deployment.run(deployment.source("v2"), "update.sh")

    assert result.returncode != 0
    assert "backup failed" in result.stderr
    assert deployment.marker() == "v1"
    assert not deployment.path(PREVIOUS).exists()
    assert not deployment.path(CODE + ".new").exists()
    calls = deployment.calls()
    assert calls[0] == f"systemctl stop {UNIT_NAME}" and " backup " in calls[1]
    assert calls[2:] == [f"systemctl start {UNIT_NAME}"]


def test_uninstall_removes_code_and_unit_but_keeps_data(deployment):
    source = deployment.source("v1")
    deployment.install(source)
    deployment.install(source)  # leaves a previous copy to remove as well
    (deployment.path(DATA) / "marker.db").write_text("precious")
    deployment.clear_calls()

    result = subprocess.run(
        [str(source / "deploy" / "uninstall.sh")],
        env={**deployment.env, "DESTDIR": str(deployment.root)},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    for gone in (CODE, PREVIOUS, UNIT_FILE):
        assert not deployment.path(gone).exists(), gone
    assert (deployment.path(DATA) / "marker.db").read_text() == "precious"
    assert (deployment.path(DATA) / "ssl" / "key.pem").exists()
    assert deployment.path(ENV_FILE).exists() and deployment.path(LOGS).exists()
    assert f"systemctl disable {UNIT_NAME}" in deployment.calls()


def test_uninstall_purge_removes_data_logs_and_settings(deployment):
    source = deployment.source("v1")
    deployment.install(source)

    result = deployment.run(source, "uninstall.sh", "--purge")

    assert result.returncode == 0, result.stdout + result.stderr
    for gone in (CODE, UNIT_FILE, DATA, LOGS, "etc/vcf-credential-portal"):
        assert not deployment.path(gone).exists(), gone


def test_uninstall_purge_after_a_plain_uninstall(deployment):
    source = deployment.source("v1")
    deployment.install(source)
    installed = deployment.path(CODE) / "deploy" / "uninstall.sh"
    plain = subprocess.run(
        [str(installed), "--root", str(deployment.root)],
        env=deployment.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert deployment.path(DATA).exists()
    assert not deployment.path(CODE).exists()
    hint = re.search(r"(\S+/uninstall\.sh) --purge", plain.stdout)
    assert hint, plain.stdout

    purge = subprocess.run(
        [hint.group(1), "--purge", "--root", str(deployment.root)],
        env=deployment.env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert purge.returncode == 0, purge.stdout + purge.stderr
    for gone in (DATA, LOGS, "etc/vcf-credential-portal", hint.group(1)):
        assert not deployment.path(gone).exists(), gone
