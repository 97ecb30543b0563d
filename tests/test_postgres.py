"""The same models, migrations and sync on PostgreSQL (127.0.0.1:5432 on these machines)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading

from support import (
    PASSWORD,
    ROOT,
    Portal,
    client_for,
    create_env,
    fleet_body,
    free_port,
    make_app,
    run_sync,
)

from portal.models import Endpoint, User
from portal.platform.extensions import db
from portal.platform.security import hash_password
from portal.simulator import Simulator


def test_portal_on_postgresql(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    make_app(tmp_path, DATABASE_URL=pg_url)  # a second start changes nothing
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 1
        db.session.add(User(username="alice", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    admin = Portal(client_for(app))
    assert admin.login("alice").status_code == 302
    with Simulator(credentials=150, seed=4) as sim:
        env = create_env(admin, sim)
        assert run_sync(app, admin, env["id"])["counts"]["new"] == 150
        sim.rotate(0.2)
        run = run_sync(app, admin, env["id"])
        assert run["counts"]["changed"] == 30
        first_run = admin.api("POST", f"/api/v1/environments/{env['id']}/sync", json={}).json
        second = admin.api("POST", f"/api/v1/environments/{env['id']}/sync", json={}).json
        assert first_run["id"] == second["id"]
    page = admin.client.get(f"/api/v1/environments/{env['id']}/credentials?q=esx&sort=-username")
    assert page.status_code == 200 and page.json["total"] > 0
    assert admin.api("DELETE", f"/api/v1/environments/{env['id']}").status_code == 204
    with app.app_context():
        db.engine.dispose()


def test_first_start_on_postgresql_prints_the_sign_in_hint(tmp_path, pg_url):
    env = {
        "PATH": "/usr/bin:/bin",
        "PORTAL_DATA_DIR": str(tmp_path / "data"),
        "PORTAL_LOG_DIR": str(tmp_path / "logs"),
        "PORTAL_SCHEDULER": "off",
        "DATABASE_URL": pg_url,
    }
    command = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import app"]
    first = subprocess.run([*command, str(ROOT)], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "sign in as 'admin' with the password 'admin'" in first.stderr
    again = subprocess.run([*command, str(ROOT)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "sign in as" not in again.stderr


class Outage:
    """A TCP forwarder on loopback in front of PostgreSQL that can be cut and restored: the
    portal sees the database server go away and come back, as in a real outage."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)):
        self.target = target
        self.port = free_port()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def url(self, pg_url: str) -> str:
        return pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}")

    def restore(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def test_a_database_outage_answers_503_and_recovers_by_itself(tmp_path, pg_url):
    outage = Outage()
    outage.restore()
    app = make_app(tmp_path, DATABASE_URL=outage.url(pg_url))
    with app.app_context():
        db.session.add(User(username="alice", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    admin, anon = Portal(client_for(app)), Portal(client_for(app))
    assert admin.login("alice").status_code == 302
    assert admin.client.get("/api/v1/environments").status_code == 200
    outage.cut()
    try:
        api = admin.client.get("/api/v1/environments")
        assert api.status_code == 503 and api.json["error"].startswith("The database cannot")
        page = admin.client.get("/")
        assert page.status_code == 503 and "portal.css" in page.get_data(as_text=True)
        health = anon.client.get("/healthz")
        assert health.status_code == 503 and health.json["database"] == "unreachable"
        for answer in (api, page, health):
            assert "psycopg2" not in answer.get_data(as_text=True)
            assert "OperationalError" not in answer.get_data(as_text=True)
    finally:
        outage.restore()
    assert admin.client.get("/api/v1/environments").status_code == 200
    assert anon.client.get("/healthz").status_code == 200
    outage.cut()
    with app.app_context():
        db.engine.dispose()


def test_a_large_first_sync_refreshes_the_planner_statistics(tmp_path, pg_url):
    import psycopg2
    from support import fetched

    from portal import sync
    from portal.models import Environment
    from portal.platform.crypto import ENDPOINT_PASSWORD, cipher

    app = make_app(tmp_path, DATABASE_URL=pg_url)
    with app.app_context():
        env = Environment(name="statistics")
        db.session.add(env)
        db.session.commit()
        run = sync.request_sync(env.id, "manager", "manual", "alice")
        db.session.add(
            Endpoint(
                environment_id=env.id,
                source="manager",
                host="127.0.0.1",
                username="svc-portal@vsphere.local",
                password_enc=cipher().encrypt("unused: the fetch is the test's", ENDPOINT_PASSWORD),
            )
        )
        db.session.commit()
        done = sync.execute_run(run.id, fetch=lambda _settings: fetched(sync.ANALYZE_AFTER_NEW))
        assert done.state == "success"
        db.engine.dispose()
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables"
                " WHERE relname IN ('credentials', 'password_history') ORDER BY relname"
            )
            assert cur.fetchall() == [("credentials", True), ("password_history", True)]
    finally:
        conn.close()


def test_two_check_outs_at_once_exactly_one_wins(tmp_path, pg_url, monkeypatch):
    """Two people check out the same credential at the same moment, each in a request and a
    transaction of its own: both pass the look for an active check-out, the partial unique
    index lets one insert and refuses the other (409 naming the winner), on PostgreSQL."""
    from portal.control import checkouts

    app = make_app(tmp_path, DATABASE_URL=pg_url)
    with app.app_context():
        for name, role in (("alice", "admin"), ("bob", "readonly")):
            db.session.add(User(username=name, role=role, password_hash=hash_password(PASSWORD)))
        db.session.commit()
    people = {}
    for name in ("alice", "bob"):
        people[name] = Portal(client_for(app))
        assert people[name].login(name).status_code == 302
    with Simulator(credentials=20, seed=8) as sim:
        env = create_env(people["alice"], sim)
        run_sync(app, people["alice"], env["id"])
    page = people["alice"].client.get(f"/api/v1/environments/{env['id']}/credentials").json
    cred_ids = [item["id"] for item in page["items"][:3]]

    both_looked = threading.Barrier(2, timeout=10)
    looked = checkouts.active
    first_look = threading.local()

    def look_together(cred_id):
        found = looked(cred_id)
        if threading.current_thread().name.startswith("checkout-") and not getattr(
            first_look, "done", False
        ):
            first_look.done = True
            both_looked.wait()  # neither has inserted yet: only the index can decide
        return found

    monkeypatch.setattr(checkouts, "active", look_together)
    for cred_id in cred_ids:
        both_looked.reset()
        answers: dict[str, object] = {}

        def check_out(name, cred_id=cred_id, answers=answers):
            body = {"minutes": 30, "reason": f"{name} at once"}
            response = people[name].api(
                "POST", f"/api/v1/credentials/{cred_id}/checkout", json=body
            )
            answers[name] = (response.status_code, response.get_json())

        threads = [
            threading.Thread(target=check_out, args=(name,), name=f"checkout-{name}")
            for name in ("alice", "bob")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        codes = sorted(code for code, _ in answers.values())
        assert codes == [201, 409], answers
        winner = next(name for name, (code, _) in answers.items() if code == 201)
        loser = next(body for code, body in answers.values() if code == 409)
        assert loser["details"]["held_by"] == winner
    with app.app_context():
        from portal.models import CredentialCheckout

        rows = db.session.scalars(db.select(CredentialCheckout)).all()
        assert sorted(r.credential_id for r in rows) == sorted(cred_ids)
        db.engine.dispose()


def test_check_in_rotates_through_sddc_manager_on_postgresql(tmp_path, pg_url):
    """The rotation queue on PostgreSQL (its rows locked with SKIP LOCKED): a check-in queues
    the rotate action, SDDC Manager rotates, the sync brings the new password, the mark goes;
    a second pass meanwhile (the job) queues nothing more."""
    import time

    from portal import sync
    from portal.control import jobs, rotation_due
    from portal.lifecycle import action_runs
    from portal.models import Credential, CredentialAction

    app = make_app(tmp_path, DATABASE_URL=pg_url)
    with app.app_context():
        db.session.add(User(username="alice", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    alice = Portal(client_for(app))
    assert alice.login("alice").status_code == 302
    with Simulator(credentials=20, seed=9, task_delay=0.05) as sim:
        env = create_env(alice, sim)
        run_sync(app, alice, env["id"])
        page = alice.client.get(f"/api/v1/environments/{env['id']}/credentials").json
        cred_id = page["items"][0]["id"]
        seen = alice.api("POST", f"/api/v1/credentials/{cred_id}/reveal").json["password"]
        out = alice.api(
            "POST", f"/api/v1/credentials/{cred_id}/checkout", json={"minutes": 5, "reason": "pg"}
        ).json
        back = alice.api("POST", f"/api/v1/checkouts/{out['id']}/checkin").json
        assert back["rotation"] == "queued"
        with app.app_context():
            assert rotation_due.run()["queued"] == 0  # already under way
            db.session.commit()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with app.app_context():
                jobs.checkouts_and_rotations(app)
                action_runs.advance()
                sync.process_queue()
                cred = db.session.get(Credential, cred_id)
                done = cred.rotation_due_since is None
                db.session.remove()
            if done:
                break
            time.sleep(0.05)
        now = alice.api("POST", f"/api/v1/credentials/{cred_id}/reveal").json["password"]
        assert done and now != seen
    with app.app_context():
        assert len(db.session.scalars(db.select(CredentialAction)).all()) == 1
        db.engine.dispose()


def _admin_on(tmp_path, pg_url):
    """A portal on PostgreSQL with an admin signed in."""
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    with app.app_context():
        db.session.add(User(username="alice", role="admin", password_hash=hash_password(PASSWORD)))
        db.session.commit()
    admin = Portal(client_for(app))
    assert admin.login("alice").status_code == 302
    return app, admin


def test_fleet_management_on_postgresql(tmp_path, pg_url):
    """The fleet endpoint's columns (the locker password, the API detected), its sync, the
    environment list's query and key rotation, on PostgreSQL."""
    from sqlalchemy import select

    from portal.models import Credential
    from portal.ops import maintenance
    from portal.platform.crypto import LOCKER_PASSWORD, cipher

    app, admin = _admin_on(tmp_path, pg_url)
    try:
        with Simulator(credentials=40, seed=6, installer_version="9.0") as sim:
            created = admin.api(
                "POST",
                "/api/v1/environments",
                json={"name": "vcf9", "fleet": fleet_body(sim)},
            )
            assert created.status_code == 201, created.json
            env_id = created.json["id"]
            run = run_sync(app, admin, env_id, "fleet")
            assert run["state"] == "success" and run["counts"]["new"] == len(sim.fleet_accounts())
            sim.fleet_rotate(1)
            maintenance.rotate_key(app)  # the locker password follows the new key
            assert run_sync(app, admin, env_id, "fleet")["counts"]["changed"] == 1
            root = sim.fleet_root_password
        listed = admin.client.get("/api/v1/environments").json["items"][0]
        assert listed["fleet"]["locker_password_set"] is True
        assert listed["fleet"]["api_detected"] == "VCF 9.0 fleet management locker"
        with app.app_context():
            endpoint = db.session.scalar(select(Endpoint).where(Endpoint.source == "fleet"))
            assert cipher().decrypt(endpoint.locker_password_enc, LOCKER_PASSWORD) == root
            sources = set(db.session.scalars(select(Credential.source)))
            assert sources == {"fleet"}
    finally:
        with app.app_context():
            db.engine.dispose()


def test_fleet_strings_longer_than_their_columns_on_postgresql(tmp_path, pg_url):
    """A server's type or status longer than its column is clipped; a key longer than its
    column fails the sync cleanly, with nothing stored changed (PostgreSQL refuses what
    SQLite keeps)."""
    from sqlalchemy import func, select

    from portal.models import Credential

    app, admin = _admin_on(tmp_path, pg_url)
    long_key = {"on": False}
    try:
        with Simulator(credentials=30, seed=6, installer_version="9.1") as sim:
            surface = sim._fleet
            original = surface._query

            def long_strings(query, body):
                status, answer = original(query, body)
                for row in answer["vcfPasswordAccounts"]:
                    row["appliance"] = "VCF_" + "X" * 100
                    row["status"] = "EXPIRING_" + "S" * 50
                    if long_key["on"]:
                        row["passwordAccountKey"] = "k" * 200 + row["passwordAccountKey"]
                return status, answer

            surface._query = long_strings
            created = admin.api(
                "POST", "/api/v1/environments", json={"name": "v", "fleet": fleet_body(sim)}
            )
            assert created.status_code == 201, created.json
            env_id = created.json["id"]
            run = run_sync(app, admin, env_id, "fleet")
            assert run["state"] == "success", run
            with app.app_context():
                rows = db.session.execute(
                    select(Credential.resource_type, Credential.expiry_status)
                ).all()
            assert rows and all(r == ("VCF_" + "X" * 60, "EXPIRING_" + "S" * 23) for r in rows)
            long_key["on"] = True
            run = run_sync(app, admin, env_id, "fleet")
            assert run["state"] == "failed", run
            assert "a fleet account's remote id is longer" in run["error"]
            assert "longer than the 128 characters the portal keeps" in run["error"]
            assert run["counts"]["absent"] == 0
            with app.app_context():
                assert db.session.scalar(
                    select(func.count()).select_from(Credential).where(Credential.present)
                ) == len(rows)
    finally:
        with app.app_context():
            db.engine.dispose()
