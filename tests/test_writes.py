"""Background jobs write in short transactions (portal.platform.writes): the largest
transaction of a sync or an expiry check does not grow with the number of credentials, and
operators' writes (sign-in, Reveal) go through while those jobs run."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from sqlalchemy import func, select

from portal import sync
from portal.lifecycle import expiry_checks
from portal.models import Credential, Endpoint, SyncRun
from portal.platform import writes
from portal.platform.extensions import db
from portal.simulator import Simulator
from tests.support import PASSWORD, Portal, client_for, create_env, run_sync

# More than two slices, so that a job written as one transaction shows.
SIZE = writes.CHUNK_ROWS * 2 + 500
# A slice of changed credentials writes each credential, closes its last history entry and
# adds a new one.
LARGEST = writes.CHUNK_ROWS * 3 + 20


def _quick_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.1))


def _manager(env_id: int) -> Endpoint:
    return db.session.scalar(
        select(Endpoint).where(Endpoint.environment_id == env_id, Endpoint.source == "manager")
    )


def test_syncs_and_expiry_checks_write_in_slices_of_a_bounded_size(app, admin):
    with Simulator(credentials=SIZE, seed=3, task_delay=0.05) as sim:
        env = create_env(admin, sim)
        with writes.watch() as first:
            assert run_sync(app, admin, env["id"])["state"] == "success"
        sim.rotate(0.5)
        with writes.watch() as rotated:
            run = run_sync(app, admin, env["id"])
        assert run["counts"]["changed"] > writes.CHUNK_ROWS
        with app.app_context(), writes.watch() as checked:
            written = expiry_checks.check(_manager(env["id"]), sleep=_quick_sleep)
            dated = db.session.scalar(
                select(func.count()).where(Credential.expiry_date.is_not(None))
            )
    assert written == dated > writes.CHUNK_ROWS
    for job, seen, at_least in (
        ("first sync", first, 2 * SIZE),
        ("rotated re-sync", rotated, SIZE),
        ("expiry check", checked, written),
    ):
        assert sum(t.rows for t in seen.transactions) >= at_least, job
        assert seen.largest <= LARGEST, f"{job}: {seen.largest} rows in one transaction"


def test_commit_in_chunks_keeps_the_slices_before_a_failure(app):
    from portal.models import AuditEvent

    def write(part):
        if part[0] >= 20:
            raise RuntimeError("the third slice fails")
        for n in part:
            db.session.add(
                AuditEvent(actor="test", action="test.slice", target=str(n), outcome="success")
            )
        return len(part)

    with app.app_context():
        before = db.session.scalar(select(func.count(AuditEvent.id)))
        try:
            writes.commit_in_chunks(list(range(30)), write, size=10)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the failure was swallowed")
        after = db.session.scalar(select(func.count(AuditEvent.id)))
    assert after - before == 20


@pytest.mark.slow  # thousands of credentials
def test_sign_in_and_reveal_answer_while_an_expiry_check_writes(app, admin):
    # Operators' writes may wait 0.5 s at most here: a job that held the write lock for the
    # whole of its work (as the expiry check once did) makes them answer 503.
    app.config["SQLITE_WEB_BUSY_TIMEOUT_MS"] = 500
    settings = app.config["PORTAL_SETTINGS"]
    app.config["PORTAL_SETTINGS"] = dataclasses.replace(settings, reveals_per_minute=100_000)
    with Simulator(credentials=SIZE * 2, seed=4, task_delay=0.05) as sim:
        env = create_env(admin, sim)
        run_sync(app, admin, env["id"])
        page = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?per_page=50")
        credential_ids = [item["id"] for item in page.json["items"]]
        with app.app_context():
            # Every date changes, so that every row is written again.
            db.session.execute(Credential.__table__.update().values(expiry_date=None))
            db.session.commit()
        done = threading.Event()
        failures: list = []

        def check() -> None:
            try:
                with app.app_context():
                    for _ in range(3):
                        expiry_checks.check(_manager(env["id"]), sleep=_quick_sleep)
                        db.session.execute(Credential.__table__.update().values(expiry_date=None))
                        db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                failures.append(exc)
            finally:
                done.set()

        job = threading.Thread(target=check)
        job.start()
        answers = []
        while not done.is_set():
            visitor = Portal(client_for(app))
            answers.append(("sign-in", visitor.login("bob", PASSWORD).status_code))
            for cred_id in credential_ids[:5]:
                reveal = admin.api("POST", f"/api/v1/credentials/{cred_id}/reveal")
                answers.append(("reveal", reveal.status_code))
        job.join()
    assert not failures
    assert len(answers) > 20
    refused = [answer for answer in answers if answer[1] not in (200, 302)]
    assert not refused, refused[:5]


def test_a_sync_that_is_no_longer_its_own_stops_writing(app, admin):
    from tests.support import fetched

    with Simulator(credentials=10, seed=1) as sim:
        env = create_env(admin, sim)
    with app.app_context():
        run = sync.request_sync(env["id"], "manager", "manual", "alice")

        def fetch(_settings):
            # Another process fails the run as interrupted while this one fetches.
            db.session.execute(
                SyncRun.__table__.update()
                .where(SyncRun.id == run.id)
                .values(state="failed", error="Interrupted: test")
            )
            db.session.commit()
            return fetched(writes.CHUNK_ROWS + 10)

        ended = sync.execute_run(run.id, fetch=fetch)
        assert ended.state == "failed" and ended.error == "Interrupted: test"
        assert db.session.scalar(select(func.count(Credential.id))) == 0
