"""GET/PUT /api/v1/settings/break-glass and POST …/copies: admin only, a change needs a recent
sign-in, recipients refused one by one, a copy made now answers its file."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pyrage
import pytest
from sqlalchemy import select
from support import PASSWORD

from portal.models import AuditEvent, UserSession
from portal.platform import clock
from portal.platform.extensions import db

URL = "/api/v1/settings/break-glass"


def _key() -> tuple[pyrage.x25519.Identity, str]:
    identity = pyrage.x25519.Identity.generate()
    return identity, str(identity.to_public())


def _age_sessions(app, minutes: int = 20) -> None:
    with app.app_context():
        for row in db.session.scalars(select(UserSession)):
            row.authenticated_at = clock.now() - timedelta(minutes=minutes)
        db.session.commit()


def test_the_defaults_copy_nothing(admin):
    body = admin.client.get(URL).json
    assert body["recipients"] == [] and body["folder"] == ""
    assert (body["schedule"], body["keep"], body["active"]) == ("daily 02:00", 7, False)
    assert body["folder_in_use"].endswith("/break-glass")
    assert body["next_copy_at"] is None and body["last_copy"] is None
    assert body["handoff_program"] is None
    refused = admin.api("POST", f"{URL}/copies")
    assert refused.status_code == 409 and "recipient" in refused.json["error"]


def test_an_admin_sets_recipients_schedule_and_keep(app, admin, readonly, tmp_path):
    _, key = _key()
    body = {"recipients": [key], "folder": str(tmp_path / "bg"), "schedule": "every 6h", "keep": 3}
    assert readonly.api("PUT", URL, json=body).status_code == 403
    saved = admin.api("PUT", URL, json=body)
    assert saved.status_code == 200, saved.json
    assert {k: saved.json[k] for k in body} == body
    assert saved.json["active"] is True and saved.json["next_copy_at"] is not None
    kept = admin.api("PUT", URL, json={"keep": 5}).json
    assert (kept["recipients"], kept["keep"]) == ([key], 5)
    with app.app_context():
        details = db.session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "settings.break_glass")
        ).all()
    assert len(details) == 2 and key in details[0]


def test_recipients_and_fields_are_refused_by_name(admin):
    identity, key = _key()
    refused = admin.api(
        "PUT",
        URL,
        json={"recipients": [key, "age1qqqq", str(identity)], "schedule": "hourly"},
    )
    assert refused.status_code == 422
    details = refused.json["details"]
    assert set(details) == {"recipients.1", "recipients.2", "schedule"}
    assert "private key" in details["recipients.2"]
    assert str(identity) not in json.dumps(refused.json)
    assert admin.api("PUT", URL, json={"keep": "7"}).json["details"].keys() == {"keep"}
    assert admin.api("PUT", URL, json={"keep": 0}).status_code == 422
    assert admin.api("PUT", URL, json={"colour": "red"}).status_code == 422
    assert admin.client.get(URL).json["recipients"] == []


def test_a_change_needs_a_recent_sign_in_or_the_password(app, admin):
    _, key = _key()
    _age_sessions(app)
    refused = admin.api("PUT", URL, json={"recipients": [key]})
    assert refused.status_code == 403 and refused.json["details"] == {"needs": "recent_sign_in"}
    assert admin.client.get(URL).json["recipients"] == []
    confirmed = admin.api("PUT", URL, json={"recipients": [key], "confirm_password": PASSWORD})
    assert confirmed.status_code == 200 and confirmed.json["recipients"] == [key]


@pytest.mark.own_database  # the copy reads the credentials on connections of its own
def test_a_copy_made_now_answers_its_file(app, admin, tmp_path):
    identity, key = _key()
    folder = tmp_path / "bg"
    admin.api("PUT", URL, json={"recipients": [key], "folder": str(folder)})
    made = admin.api("POST", f"{URL}/copies")
    assert made.status_code == 201, made.json
    assert made.json["state"] == "success" and made.json["actor"] == "alice"
    assert made.json["count"] == 0  # an empty portal: the header only
    path = folder / made.json["file"]
    text = pyrage.decrypt(path.read_bytes(), [identity]).decode()
    header = next(csv.reader(io.StringIO(text)))
    assert header[:5] == ["Environment", "Kind", "Host", "User", "Password"]
    assert admin.client.get(URL).json["last_copy"] == made.json
    with app.app_context():
        record = db.session.scalar(
            select(AuditEvent).where(AuditEvent.action == "break_glass.copy")
        )
        assert (record.actor, record.target, record.outcome) == ("alice", path.name, "success")


@pytest.mark.own_database  # the copy reads the credentials on connections of its own
def test_a_failed_copy_answers_409_and_is_recorded(app, admin, tmp_path):
    _, key = _key()
    (tmp_path / "file").write_text("in the way")
    admin.api("PUT", URL, json={"recipients": [key], "folder": str(tmp_path / "file" / "bg")})
    failed = admin.api("POST", f"{URL}/copies")
    assert failed.status_code == 409 and "cannot be created" in failed.json["error"]
    last = admin.client.get(URL).json["last_copy"]
    assert last["state"] == "failed" and last["file"] is None
    with app.app_context():
        outcome = db.session.scalar(
            select(AuditEvent.outcome).where(AuditEvent.action == "break_glass.copy")
        )
    assert outcome == "failure"
