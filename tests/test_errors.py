"""Error answers: a database locked by another process is a 503 with a clear message."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

import pytest

from portal.crypto import CREDENTIAL_PASSWORD, cipher
from portal.errors import BUSY_MESSAGE
from portal.extensions import db
from portal.models import Credential, Environment


@contextmanager
def write_locked(app):
    """Another process's write transaction on the SQLite file, held for the block."""
    conn = sqlite3.connect(app.config["PORTAL_SETTINGS"].sqlite_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def credential_id(app):
    with app.app_context():
        env = Environment(name="locked lab")
        db.session.add(env)
        db.session.flush()
        cred = Credential(
            environment_id=env.id,
            source="manager",
            hostname="esx01.example.test",
            username="root",
            credential_type="SSH",
            password_enc=cipher().encrypt("pw-123456789", CREDENTIAL_PASSWORD),
        )
        db.session.add(cred)
        db.session.commit()
        return cred.id


def test_locked_database_answers_503_quickly(app, anon, admin, credential_id):
    app.config["SQLITE_WEB_BUSY_TIMEOUT_MS"] = 300
    csrf = admin.csrf_token_for_session()
    login_csrf = anon.csrf()
    with write_locked(app):
        started = time.monotonic()
        health = anon.client.get("/healthz")
        assert health.status_code == 503
        assert health.json["database"] == "busy" and health.json["failing"] == ["database"]

        signin = anon.client.post(
            "/login",
            data={"username": "alice", "password": "wrong password", "csrf_token": login_csrf},
        )
        assert signin.status_code == 503
        assert BUSY_MESSAGE in signin.get_data(as_text=True)
        assert signin.headers["Retry-After"]

        reveal = admin.client.post(
            f"/api/v1/credentials/{credential_id}/reveal",
            json={},
            headers={"X-CSRFToken": csrf},
        )
        assert reveal.status_code == 503
        assert reveal.json == {"error": BUSY_MESSAGE, "details": {}}
        assert time.monotonic() - started < 8
    assert anon.client.get("/healthz").status_code == 200
    assert admin.api("POST", f"/api/v1/credentials/{credential_id}/reveal", json={}).json == {
        "password": "pw-123456789"
    }
