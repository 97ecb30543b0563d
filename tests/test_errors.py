"""Error answers: a database locked by another process is a 503 with a clear message."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

import pytest

from portal.errors import BUSY_MESSAGE
from portal.models import Credential, Environment
from portal.platform.crypto import CREDENTIAL_PASSWORD, cipher
from portal.platform.extensions import db


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


@pytest.mark.own_database  # locks the database from another connection
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


@contextmanager
def database_gone(app, message: str = "disk I/O error"):
    """Every statement fails as on a database that has gone away, for the block."""
    from sqlalchemy import event

    def refuse(*_args, **_kwargs):
        raise sqlite3.OperationalError(message)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


@pytest.mark.parametrize("path", ["/", "/no-such-page", "/environments/1"])
def test_pages_answer_a_styled_503_when_the_database_is_gone(app, admin, path):
    with database_gone(app):
        answer = admin.client.get(path)
    assert answer.status_code == 503
    text = answer.get_data(as_text=True)
    assert "Temporarily unavailable" in text and "cannot be reached" in text
    assert "/static/css/portal.css" in text  # the portal's own page, not a bare error
    assert "OperationalError" not in text and "disk I/O" not in text
    assert answer.headers["Retry-After"]
    assert admin.client.get("/").status_code == 200  # back by itself


def test_the_api_answers_a_json_503_when_the_database_is_gone(app, admin):
    with database_gone(app):
        answer = admin.client.get("/api/v1/environments")
    assert answer.status_code == 503
    assert answer.json["error"].startswith("The database cannot be reached")
    assert "OperationalError" not in answer.get_data(as_text=True)


def test_health_names_no_exception_class(app, anon):
    with database_gone(app):
        health = anon.client.get("/healthz")
    assert health.status_code == 503
    assert health.json["database"] == "unreachable"
    assert "Error" not in health.get_data(as_text=True)


def test_a_signed_in_error_page_keeps_its_navigation_without_the_database(app, admin):
    admin.client.get("/")  # signed in: the next 404 knows who asks
    answer = admin.client.get("/no-such-page")
    assert answer.status_code == 404
    text = answer.get_data(as_text=True)
    assert "Signed in as" in text and "Back to the dashboard" in text


def test_an_unrenderable_error_page_still_answers_the_portal_page(app, anon, monkeypatch):
    from jinja2 import TemplateNotFound

    def missing(*_args, **_kwargs):
        raise TemplateNotFound("error.html")

    monkeypatch.setattr(app.jinja_env, "get_template", missing)
    answer = anon.client.get("/no-such-page")
    assert answer.status_code == 404
    assert "/static/css/portal.css" in answer.get_data(as_text=True)


def test_the_page_for_a_broken_template_still_has_a_language_and_landmarks(app, admin, monkeypatch):
    def broken(_name, *args, **kwargs):
        raise RuntimeError("the template folder is gone")

    with app.app_context():
        monkeypatch.setattr(app.jinja_env, "get_template", broken)
        from portal.errors import respond

        with app.test_request_context("/no-such-page"):
            text, code = respond(404, "There is no such page.")
    assert code == 404
    assert text.startswith('<!doctype html><html lang="en">')
    assert '<main id="main">' in text and "<h1>Not found</h1>" in text
    assert "There is no such page." in text and "RuntimeError" not in text
    assert "/static/css/portal.css" in text
