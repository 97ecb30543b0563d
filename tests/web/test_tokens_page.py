"""The API tokens page: create (shown once), list with last use, revoke; admins see all."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select
from support import PASSWORD

from portal.models import UserSession
from portal.platform import clock
from portal.platform.extensions import db

NEW_TOKEN = re.compile(r'<code class="secret-key" id="new-token">(vcfp_[A-Za-z0-9_-]+)</code>')


def test_create_list_and_revoke_a_token_in_the_page(app, readonly, admin):
    made = readonly.post(
        "/account/tokens",
        data={"name": "powershell", "scope": "reveal", "days": "30", "networks": "10.0.0.0/8"},
    )
    assert made.status_code == 201
    value = NEW_TOKEN.search(made.get_data(as_text=True)).group(1)
    page = readonly.client.get("/account/tokens").get_data(as_text=True)
    assert "powershell" in page and "10.0.0.0/8" in page and value not in page
    everyone = admin.client.get("/account/tokens").get_data(as_text=True)
    assert "Every user" in everyone and "powershell" in everyone
    token_id = re.search(r"/account/tokens/(\d+)/revoke", page).group(1)
    assert readonly.post(f"/account/tokens/{token_id}/revoke").status_code == 302
    after = readonly.client.get("/account/tokens").get_data(as_text=True)
    assert "Token powershell revoked." in after and "Revoke powershell" not in after


def test_bad_values_are_shown_by_their_field(readonly):
    bad = readonly.post(
        "/account/tokens", data={"name": "x", "scope": "read", "days": "400", "networks": "nope"}
    )
    assert bad.status_code == 400 and "1 to 365 days" in bad.get_data(as_text=True)
    bad = readonly.post(
        "/account/tokens", data={"name": "x", "scope": "read", "days": "7", "networks": "nope"}
    )
    assert bad.status_code == 400 and "is not an IP address" in bad.get_data(as_text=True)


def test_an_old_sign_in_needs_the_password(app, readonly):
    with app.app_context():
        for row in db.session.scalars(select(UserSession)):
            row.authenticated_at = clock.now() - timedelta(minutes=20)
        db.session.commit()
    form = {"name": "late", "scope": "read", "days": "7"}
    assert readonly.post("/account/tokens", data=form).status_code == 403
    done = readonly.post("/account/tokens", data={**form, "confirm_password": PASSWORD})
    assert done.status_code == 201


def test_one_cannot_revoke_anothers_token_unless_admin(readonly, admin):
    admin.post("/account/tokens", data={"name": "admin-one", "scope": "read", "days": "7"})
    page = admin.client.get("/account/tokens").get_data(as_text=True)
    token_id = re.search(r"/account/tokens/(\d+)/revoke", page).group(1)
    assert readonly.post(f"/account/tokens/{token_id}/revoke").status_code == 404
