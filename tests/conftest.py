"""Shared fixtures: a portal on a real SQLite file in tmp_path, and users for each role.

Helpers (make_app, Portal, create_env, running_portal, ...) live in support.py.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
from support import PASSWORD, Portal, client_for, create_env, make_app, run_sync

from portal.models import User
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password
from portal.simulator import Simulator

E2E_DIR = Path(__file__).resolve().parent / "e2e"


# Fixtures that need the machine's PostgreSQL server: their tests are `slow`.
POSTGRES_FIXTURES = {"pg_url"}


def pytest_collection_modifyitems(items):
    """Tests under tests/e2e/ start servers or a browser, tests on PostgreSQL need its server:
    mark them for --fast to leave out."""
    for item in items:
        if E2E_DIR in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.e2e)
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_process_unless_marked(request, monkeypatch):
    """The fast tier starts no process: a test that starts one (a command, slapd, a mount)
    must be marked `slow` (or be an e2e test), and fails here otherwise."""
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("slow"):
        return

    def refuse(self, args, *more, **options):
        raise AssertionError(
            f"{request.node.nodeid} starts a process ({args!r}): mark it pytest.mark.slow"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(autouse=True)
def _reset_clock():
    clock.offset = clock.timedelta(0)
    yield
    clock.offset = clock.timedelta(0)


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        for name, role in (("alice", "admin"), ("bob", "readonly")):
            db.session.add(User(username=name, role=role, password_hash=hash_password(PASSWORD)))
        admin = db.session.scalar(db.select(User).where(User.username == "admin"))
        admin.must_change_password = False
        admin.password_hash = hash_password(PASSWORD)
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def anon(app):
    return Portal(client_for(app))


@pytest.fixture
def admin(app):
    portal = Portal(client_for(app))
    assert portal.login("alice").status_code == 302
    return portal


@pytest.fixture
def readonly(app):
    portal = Portal(client_for(app))
    assert portal.login("bob").status_code == 302
    return portal


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url():
    """A new, empty PostgreSQL database on 127.0.0.1:5432, dropped afterwards."""
    import psycopg2

    try:
        conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}")
    conn.autocommit = True
    name = f"portal_test_{secrets.token_hex(4)}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture
def sim():
    """The VCF simulator over HTTPS on loopback, with 300 credentials."""
    with Simulator(credentials=300, seed=7, timeout_delay=3.0) as simulator:
        yield simulator


@pytest.fixture
def synced(app, admin):
    with Simulator(credentials=120, seed=5, hostile=True) as sim:
        env = create_env(admin, sim)
        run_sync(app, admin, env["id"])
        yield sim, env
