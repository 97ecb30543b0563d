"""Shared fixtures: a portal on a real SQLite file in tmp_path, and users for each role."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import pytest

from portal import clock, create_app
from portal.bootstrap import initialize
from portal.config import load_settings
from portal.extensions import db
from portal.models import User
from portal.security import hash_password

BASE_URL = "https://localhost"
PASSWORD = "correct horse battery"  # noqa: S105 - test fixture password
FAST_HASH = "pbkdf2:sha256:1000"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def make_app(tmp_path, **env):
    """A fully initialised portal on its own data directory."""
    environ = {
        "PORTAL_DATA_DIR": str(tmp_path / "data"),
        "PORTAL_LOG_DIR": str(tmp_path / "logs"),
        "PORTAL_SCHEDULER": "off",
        **env,
    }
    app = create_app({"TESTING": True, "PASSWORD_HASH_METHOD": FAST_HASH}, load_settings(environ))
    initialize(app)
    return app


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


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@dataclass
class Portal:
    """A browser-like test client: HTTPS base URL, same-origin Referer, CSRF-aware."""

    client: object

    def csrf(self) -> str:
        page = self.client.get("/login")
        match = CSRF_META.search(page.get_data(as_text=True))
        if match is None:
            page = self.client.get("/change-password")
            match = CSRF_META.search(page.get_data(as_text=True))
        return match.group(1)

    def login(self, username: str, password: str = PASSWORD, **extra):
        token = self.csrf()
        data = {"username": username, "password": password, "csrf_token": token, **extra}
        return self.client.post("/login", data=data)

    def post(self, url: str, data: dict | None = None, **kwargs):
        data = {"csrf_token": self.csrf_token_for_session(), **(data or {})}
        return self.client.post(url, data=data, **kwargs)

    def csrf_token_for_session(self) -> str:
        page = self.client.get("/healthz")  # cheap request to keep the cookie jar warm
        del page
        html = self.client.get("/change-password").get_data(as_text=True)
        match = CSRF_META.search(html)
        if match is None:
            html = self.client.get("/login").get_data(as_text=True)
            match = CSRF_META.search(html)
        return match.group(1)

    def api(self, method: str, url: str, json=None, **kwargs):
        headers = {"X-CSRFToken": self.csrf_token_for_session(), **kwargs.pop("headers", {})}
        return self.client.open(url, method=method, json=json, headers=headers, **kwargs)


def _client(app):
    client = app.test_client()
    client.environ_base.update(
        {"wsgi.url_scheme": "https", "HTTP_HOST": "localhost", "HTTP_REFERER": BASE_URL + "/"}
    )
    return client


@pytest.fixture
def anon(app):
    return Portal(_client(app))


@pytest.fixture
def admin(app):
    portal = Portal(_client(app))
    assert portal.login("alice").status_code == 302
    return portal


@pytest.fixture
def readonly(app):
    portal = Portal(_client(app))
    assert portal.login("bob").status_code == 302
    return portal


@pytest.fixture
def pg_url():
    """A PostgreSQL database of its own on 127.0.0.1:5432, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2")
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
