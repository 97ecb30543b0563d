"""The audit trail through the running portal (Gunicorn over HTTPS, its scheduler): an
operator's reveal reaches a real rsyslogd over TLS within seconds, in chain order, and
`flask --app app audit verify` finds the log intact, then names a record edited in the
database."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from receivers import certificates, rsyslog_receiver
from support import ROOT, endpoint_body, first_admin, running_portal

from portal.simulator import Simulator

ADMIN_PASSWORD = "Audit-trail-admin-passphrase-7"  # noqa: S105 - test password
JSON_TEXT = re.compile(r"\] (\{.*\})$")


def _flask(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "PORTAL_DATA_DIR": str(data_dir),
        "PORTAL_LOG_DIR": str(data_dir.parent / "logs"),
        "PORTAL_SSL_DIR": str(data_dir.parent / "ssl"),
    }
    flask = Path(sys.executable).parent / "flask"
    return subprocess.run(  # noqa: S603 - our own command
        [str(flask), "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_reveal_is_forwarded_and_the_log_verifies(tmp_path):
    with (
        Simulator(credentials=40, seed=11) as sim,
        rsyslog_receiver(tmp_path) as receiver,
        running_portal(tmp_path / "portal", workers=2) as server,
    ):
        session, token = first_admin(server, ADMIN_PASSWORD)
        csrf = {"X-CSRFToken": token}
        added = session.post(
            server.url + "/api/v1/settings/audit-forwarding/destinations",
            json={
                "kind": "syslog-tls",
                "address": receiver.address,
                "ca_pem": certificates().ca_pem,
            },
            headers=csrf,
        )
        assert added.status_code == 201, added.text
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
        item = session.get(server.url + "/api/v1/credentials").json()["items"][0]
        revealed = session.post(
            f"{server.url}/api/v1/credentials/{item['id']}/reveal", headers=csrf
        ).json()["password"]
        deadline = time.monotonic() + 30
        documents: list[dict] = []
        while time.monotonic() < deadline:
            documents = [
                json.loads(match[1])
                for line in receiver.lines()
                if (match := JSON_TEXT.search(line)) is not None
            ]
            if any(doc.get("action") == "credential.reveal" for doc in documents):
                break
            time.sleep(0.2)
        reveal = next(doc for doc in documents if doc.get("action") == "credential.reveal")
        assert reveal["actor"] == "admin" and reveal["ip"] == "127.0.0.1"
        seqs = [doc["seq"] for doc in documents if doc["type"] == "audit"]
        assert seqs == list(range(1, len(seqs) + 1))
        assert revealed not in "\n".join(receiver.lines())
        listed = session.get(server.url + "/api/v1/settings/audit-forwarding/destinations").json()[
            "items"
        ]
        assert listed[0]["last_error"] is None

        data = tmp_path / "portal" / "data"
        intact = _flask(data, "audit", "verify")
        assert intact.returncode == 0, intact.stderr
        assert "intact:" in intact.stdout
        with sqlite3.connect(data / "vcf_credentials.db") as conn:
            conn.execute(
                "UPDATE audit_events SET actor = 'somebody else' WHERE action = ?",
                ("credential.reveal",),
            )
        broken = _flask(data, "audit", "verify")
        assert broken.returncode == 1
        assert f"record {reveal['id']} " in broken.stderr and "was changed" in broken.stderr
