"""A large estate through the real portal (Gunicorn over HTTPS, SQLite): 15,000 credentials
synced from the simulator, then SDDC Manager's expiry check of every one of them, while an
operator signs in, searches and reveals. Every answer is a success."""

from __future__ import annotations

import sqlite3
import time

import pytest
from support import LAB_PASSWORD, endpoint_body, first_admin, running_portal

from portal.simulator import Simulator

pytestmark = pytest.mark.e2e

SIZE = 15_000


def _expiry_done(data_dir, env_id: int) -> bool:
    with sqlite3.connect(data_dir / "vcf_credentials.db") as conn:
        row = conn.execute(
            "SELECT expiry_checked_at FROM endpoints WHERE environment_id = ? AND source = ?",
            (env_id, "manager"),
        ).fetchone()
    return bool(row and row[0])


def test_a_large_sync_and_its_expiry_check_leave_operators_answered(tmp_path):
    env = {"PORTAL_REVEALS_PER_MINUTE": "100000"}
    with (
        Simulator(credentials=SIZE, seed=11, task_delay=2.0) as sim,
        running_portal(tmp_path, workers=2, env=env) as server,
    ):
        admin, token = first_admin(server, LAB_PASSWORD)
        created = admin.post(
            server.url + "/api/v1/environments",
            json={"name": "large", "manager": endpoint_body(sim)},
            headers={"X-CSRFToken": token},
        )
        assert created.status_code == 201, created.text
        env_id = created.json()["id"]
        answers: list[tuple[str, int]] = []
        reveal_ids: list[int] = []

        def operate() -> None:
            operator = server.session()
            answers.append(("sign-in", server.login(operator, "admin", LAB_PASSWORD).status_code))
            csrf = server.csrf(operator, "/")
            search = operator.get(server.url + "/api/v1/credentials", params={"q": "esx"})
            answers.append(("search", search.status_code))
            if not reveal_ids and search.status_code == 200:
                reveal_ids.extend(item["id"] for item in search.json()["items"][:3])
            for cred_id in reveal_ids:
                reveal = operator.post(
                    f"{server.url}/api/v1/credentials/{cred_id}/reveal",
                    json={},
                    headers={"X-CSRFToken": csrf},
                )
                answers.append(("reveal", reveal.status_code))

        deadline = time.monotonic() + 600
        while not _expiry_done(tmp_path / "data", env_id):  # the sync, then the expiry check
            assert time.monotonic() < deadline, "no expiry check within 10 minutes"
            operate()
        for _ in range(3):
            operate()
        status = admin.get(f"{server.url}/api/v1/environments/{env_id}").json()["status"]
        assert status["manager"]["state"] == "success"
        page = admin.get(f"{server.url}/api/v1/environments/{env_id}/credentials?per_page=1")
        assert page.json()["total"] == SIZE
        with sqlite3.connect(tmp_path / "data" / "vcf_credentials.db") as conn:
            dated = conn.execute(
                "SELECT count(*) FROM credentials WHERE expiry_date IS NOT NULL"
            ).fetchone()[0]
    assert dated > SIZE * 0.9
    assert ("reveal", 200) in answers
    failed = [answer for answer in answers if answer[1] >= 500]
    assert not failed, failed[:10]
    assert {code for _, code in answers} <= {200, 302}
