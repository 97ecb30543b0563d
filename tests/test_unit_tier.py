"""The unit tier's isolation (tests/conftest.py): what a request commits inside a test's
transaction is seen by the test and gone afterwards, from the database file too."""

from __future__ import annotations

import sqlite3

from sqlalchemy import select
from support import Portal, client_for, unit_transaction

from portal.models import AuditEvent, User
from portal.platform.extensions import db


def _audit_count(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(AuditEvent.id)).all())


def test_what_a_test_commits_is_rolled_back(_shared_app):
    app = _shared_app
    path = app.config["PORTAL_SETTINGS"].sqlite_path
    before = _audit_count(app)
    with unit_transaction(app):
        portal = Portal(client_for(app))
        assert portal.login("alice").status_code == 302  # commits a session and an audit line
        form = {"username": "zed", "role": "readonly", "password": "a unit tier probe 1"}
        assert portal.post("/users/", form).status_code == 302
        assert _audit_count(app) > before
        with app.app_context():
            assert db.session.scalar(select(User).where(User.username == "zed")) is not None
        app.config["PROBE"] = True
    assert _audit_count(app) == before
    assert "PROBE" not in app.config
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "zed")) is None
    with sqlite3.connect(path) as direct:
        assert direct.execute("SELECT count(*) FROM audit_events").fetchone()[0] == before
