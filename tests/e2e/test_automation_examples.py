"""The automation examples of docs/API.md (curl and Python), run as written against the running
portal with a token: each prints the password of the named host and account."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from support import ROOT, endpoint_body, first_admin, running_portal

from portal.simulator import Simulator

ADMIN_PASSWORD = "Automation-admin-passphrase-3"  # noqa: S105 - test password
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```\w+\n(.*?)```", re.DOTALL)


def _examples() -> dict[str, str]:
    return dict(EXAMPLE.findall((ROOT / "docs" / "API.md").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with (
        Simulator(credentials=60, seed=4) as sim,
        running_portal(tmp_path_factory.mktemp("automation"), workers=2) as server,
    ):
        session, token = first_admin(server, ADMIN_PASSWORD)
        csrf = {"X-CSRFToken": token}
        env = session.post(
            server.url + "/api/v1/environments",
            json={"name": "sfo-m01", "manager": endpoint_body(sim)},
            headers=csrf,
        ).json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = session.get(f"{server.url}/api/v1/environments/{env['id']}").json()
            if status["status"]["manager"]["state"] == "success":
                break
            time.sleep(0.3)
        minted = session.post(
            server.url + "/api/v1/me/tokens",
            json={"name": "readme", "scope": "reveal", "expires_in_days": 1},
            headers=csrf,
        ).json()
        items = session.get(server.url + "/api/v1/credentials", params={"per_page": 200}).json()
        pairs = collections.Counter((c["hostname"], c["username"]) for c in items["items"])
        target = next(c for c in items["items"] if pairs[(c["hostname"], c["username"])] == 1)
        expected = session.post(
            f"{server.url}/api/v1/credentials/{target['id']}/reveal", headers=csrf
        ).json()["password"]
        env_vars = {
            **os.environ,
            "PORTAL_URL": server.url,
            "PORTAL_TOKEN": minted["token"],
            "PORTAL_CA": server.cert,
            "VCF_HOST": target["hostname"],
            "VCF_ACCOUNT": target["username"],
        }
        yield env_vars, expected


def test_the_readme_has_both_examples():
    assert {"curl", "python"} <= set(_examples())


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
def test_curl_example_prints_the_password_and_exports_csv(lab, tmp_path):
    env_vars, expected = lab
    script = "set -euo pipefail\n" + _examples()["curl"]
    done = subprocess.run(
        ["bash", "-c", script],
        env=env_vars,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n"
    exported = (tmp_path / "credentials.csv").read_text(encoding="utf-8-sig")
    assert exported.startswith("Environment,Host,User,Password")


def test_python_example_prints_the_password(lab, tmp_path):
    env_vars, expected = lab
    script = tmp_path / "lookup.py"
    script.write_text(_examples()["python"], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], env=env_vars, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n"
