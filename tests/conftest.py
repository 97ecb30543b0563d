"""Shared fixtures: a portal on a real SQLite file in tmp_path, and users for each role.

Helpers (make_app, Portal, create_env, running_portal, ...) live in support.py.
"""

from __future__ import annotations

import gc
import secrets
import subprocess
from pathlib import Path

import pytest
from support import (
    PASSWORD,
    Portal,
    client_for,
    create_env,
    make_app,
    run_sync,
    unit_transaction,
)

from portal.models import User
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password
from portal.simulator import Simulator

E2E_DIR = Path(__file__).resolve().parent / "e2e"


# The unit tier: tests in these folders and files get `unit_app` as `app` (see there). Tests
# that run threads on connections of their own (parallel sign-ins), export, or check the
# database's health stay on a portal of their own.
TESTS = Path(__file__).resolve().parent
UNIT_PATHS = [
    TESTS / "api",
    *(
        TESTS / "web" / f"test_{name}.py"
        for name in (
            "audit",
            "auth",
            "groups_and_access",
            "metrics",
            "pages",
            "preferences",
            "second_factor",
            "settings",
            "sign_in_settings",
            "tokens_page",
        )
    ),
    *(
        TESTS / f"test_{name}.py"
        for name in (
            "access",
            "channel_forms",
            "credentials",
            "errors",
            "grants",
            "http",
            "recent_sign_in",
            "refusals",
            "urls",
            "users",
        )
    ),
]

# Fixtures that need the machine's PostgreSQL server: their tests are `slow`.
POSTGRES_FIXTURES = {"pg_url"}


def pytest_collection_modifyitems(items):
    """Tests under tests/e2e/ start servers or a browser, tests on PostgreSQL need its server:
    mark them for --fast to leave out."""
    for item in items:
        if E2E_DIR in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.e2e)
        path = Path(item.fspath).resolve()
        if any(place == path or place in path.parents for place in UNIT_PATHS):
            item.add_marker(pytest.mark.unit)
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_sessionstart(session):
    """The tests allocate much and keep little: the collector's default (a young-generation
    pass every 700 allocations, over every module and fixture imported) costs a sixth of the
    fast tier's processor time. What is loaded now is set aside for good, and young objects
    are collected every 50,000 allocations instead (reference counting still frees most at
    once)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


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
def portal_app(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        _seed_users()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _seed_users() -> None:
    for name, role in (("alice", "admin"), ("bob", "readonly")):
        db.session.add(User(username=name, role=role, password_hash=hash_password(PASSWORD)))
    admin = db.session.scalar(db.select(User).where(User.username == "admin"))
    admin.must_change_password = False
    admin.password_hash = hash_password(PASSWORD)
    db.session.commit()


@pytest.fixture(scope="session")
def _shared_app(tmp_path_factory):
    """One portal per test worker for the unit tier (see `unit_app`)."""
    app = make_app(tmp_path_factory.mktemp("unit"))
    with app.app_context():
        _seed_users()
    return app


@pytest.fixture
def unit_app(_shared_app):
    """The unit tier: the worker's one portal, each test inside a transaction rolled back at
    its end (`unit_transaction`), so what a test writes is gone for the next one and no test
    pays for a new portal.

    For tests on one connection: not for syncs, exports, backups, the scheduler, threads or
    anything that opens connections of its own (mark those `own_database`: they get
    `portal_app`)."""
    with unit_transaction(_shared_app) as app:
        yield app


@pytest.fixture
def app(request, tmp_path):
    """A portal for the test: its own data directory (`portal_app`), or the unit tier's
    shared one where the folder's conftest chooses it and the test is not `own_database`."""
    node = request.node
    if node.get_closest_marker("unit") and not node.get_closest_marker("own_database"):
        return request.getfixturevalue("unit_app")
    return request.getfixturevalue("portal_app")


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
