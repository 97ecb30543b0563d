"""The audit log page: filters and CSV export."""

from __future__ import annotations

import csv
import io


def test_audit_filters_and_csv(app, admin, synced):
    assert admin.client.get("/audit/?action=sync&since=2000-01-01").status_code == 200
    assert admin.client.get("/audit/?since=yesterday").status_code == 400
    response = admin.client.get("/audit/export.csv?action=environment")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][0] == "time_utc" and rows[1][3] == "environment.create"


def test_extreme_or_bad_dates_answer_400_never_500(app, admin):
    for query in (
        "until=9999-12-31",
        "since=9999-12-31",
        "until=0001-01-01",
        "since=2026-02-30",
        "until=31/01/2026",
    ):
        for path in ("/audit/", "/audit/export.csv"):
            response = admin.client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert b"Bad request" in response.data


def test_date_range_keeps_whole_days_and_the_form_shows_the_filters(app, admin):
    page = admin.client.get("/audit/?actor=+alice+&action=auth&since=2000-01-01&until=9998-12-31")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'value="alice"' in text and 'value="2000-01-01"' in text
    assert 'value="9998-12-31"' in text and "auth.login" in text
    assert admin.client.get("/audit/?since=+&until=").status_code == 200


# --- who saw what ------------------------------------------------------------------------------


def _member(app, name, grants=()):
    from support import PASSWORD, Portal, client_for

    from portal.models import EnvironmentGrant, User
    from portal.platform.extensions import db
    from portal.platform.security import hash_password

    with app.app_context():
        user = User(username=name, role="member", password_hash=hash_password(PASSWORD))
        db.session.add(user)
        db.session.flush()
        for env_id, level in grants:
            db.session.add(EnvironmentGrant(environment_id=env_id, user_id=user.id, level=level))
        db.session.commit()
    portal = Portal(client_for(app))
    assert portal.login(name).status_code == 302
    return portal


def _first_credentials(app, env_id, n):
    from sqlalchemy import select

    from portal.models import Credential
    from portal.platform.extensions import db

    with app.app_context():
        query = select(Credential).where(Credential.environment_id == env_id)
        return [
            (c.id, c.hostname, c.username)
            for c in db.session.scalars(query.order_by(Credential.id).limit(n))
        ]


def _hostile(app, env_id):
    """A credential whose host or user name is a script, as a hostile SDDC Manager names it."""
    from sqlalchemy import or_, select

    from portal.models import Credential
    from portal.platform.extensions import db

    with app.app_context():
        return db.session.scalar(
            select(Credential.id).where(
                Credential.environment_id == env_id,
                or_(
                    Credential.hostname.contains("<script>"),
                    Credential.username.contains("<script>"),
                ),
            )
        )


def test_who_saw_what_page_and_csv(app, admin, readonly, synced):
    _, env = synced
    (a, host_a, _), (b, _, _) = _first_credentials(app, env["id"], 2)
    readonly.api("POST", f"/api/v1/credentials/{a}/reveal")
    readonly.api("POST", f"/api/v1/credentials/{b}/reveal", json={"purpose": "copy"})

    empty = admin.client.get("/audit/seen")
    assert empty.status_code == 200 and b'id="seen-table"' not in empty.data
    assert b'<option value="bob">' in empty.data  # the person picker
    page = admin.client.get("/audit/seen?person=bob&since=2000-01-01")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "bob</bdi> saw 2 passwords" in text
    assert "1 reveal, 1 copy, 0 former values and 0 exports" in text
    assert 'id="seen-rotate-open"' in text and 'data-person="bob"' in text
    assert "/audit/seen/export.csv?person=bob&amp;since=2000-01-01" in text
    from markupsafe import escape

    assert str(escape(host_a)) in text

    hostile = _hostile(app, env["id"])
    readonly.api("POST", f"/api/v1/credentials/{hostile}/reveal")
    text = admin.client.get("/audit/seen?person=bob").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text

    download = admin.client.get("/audit/seen/export.csv?person=bob&since=2000-01-01")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 4 and {row[6] for row in rows[1:]} == {"reveal", "copy"}
    assert "<script>alert(1)</script>" in {cell for row in rows for cell in row}  # a cell

    assert admin.client.get("/audit/seen?person=bob&since=yesterday").status_code == 400
    assert admin.client.get("/audit/seen/export.csv").status_code == 400
    assert readonly.client.get("/audit/seen?person=bob").status_code == 403
    assert readonly.client.get("/audit/seen/export.csv?person=bob").status_code == 403


def test_who_saw_what_for_auditors_and_managers(app, admin, readonly, synced):
    _, env = synced
    ((a, host_a, _),) = _first_credentials(app, env["id"], 1)
    readonly.api("POST", f"/api/v1/credentials/{a}/reveal")
    member = _member(app, "dave")
    assert member.client.get("/audit/seen?person=bob").status_code == 403

    carol = _member(app, "carol")
    from portal.models import User
    from portal.platform.extensions import db

    with app.app_context():
        db.session.scalar(db.select(User).where(User.username == "carol")).role = "auditor"
        db.session.commit()
    page = carol.client.get("/audit/seen?person=bob").get_data(as_text=True)
    assert "1 reveal" in page and 'id="seen-rotate-open"' not in page  # an auditor manages none
    assert ">Who saw what</a>" in page and ">Audit log</a>" in page

    manager = _member(app, "erin", [(env["id"], "manage")])
    page = manager.client.get("/audit/seen?person=bob").get_data(as_text=True)
    assert "1 reveal" in page and 'id="seen-rotate-open"' in page
    assert "seen-people" not in page and "Only the environments you manage" in page
    environment = manager.client.get(f"/environments/{env['id']}").get_data(as_text=True)
    assert 'data-audit="true"' in environment and 'id="history-seen"' in environment
    assert 'id="seen-report"' in environment

    viewer = _member(app, "frank", [(env["id"], "reveal")])
    environment = viewer.client.get(f"/environments/{env['id']}").get_data(as_text=True)
    assert 'data-audit="false"' in environment and 'id="history-seen"' not in environment
    environment = readonly.client.get(f"/environments/{env['id']}").get_data(as_text=True)
    assert 'data-audit="false"' in environment
