"""Settings → Break-glass copy: the form, its refusals by line, the recent sign-in, "make a
copy now", and the last copy on the admins' dashboard."""

from __future__ import annotations

from datetime import timedelta

import pyrage
from sqlalchemy import select
from support import PASSWORD

from portal.models import UserSession
from portal.ops import break_glass_settings
from portal.platform import clock
from portal.platform.extensions import db

PAGE = "/settings/break-glass"


def _key() -> tuple[str, str]:
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def _form(recipients: str, folder: str = "", **extra) -> dict:
    return {
        "recipients": recipients,
        "folder": folder,
        "schedule_kind": "daily",
        "daily_at": "03:15",
        "every_hours": "24",
        "keep": "5",
        **extra,
    }


def _stored(app):
    with app.app_context():
        return break_glass_settings.load()


def test_the_page_says_nothing_is_copied_until_a_key_is_set(admin):
    page = admin.client.get(PAGE).get_data(as_text=True)
    assert "Break-glass copy" in page and "until a recipient is set" in page
    assert 'id="break-glass-copy-now" disabled' in page
    assert 'href="/settings/break-glass" aria-current="page"' in page


def test_an_admin_saves_keys_pasted_from_age_keygen(app, admin, tmp_path):
    _, first = _key()
    _, second = _key()
    pasted = f"# public key: {first}\n\n{second}\n"
    saved = admin.post(PAGE, _form(pasted, str(tmp_path / "bg")))
    assert saved.status_code == 302
    options = _stored(app)
    assert options.recipients == (first, second)
    folder = str(tmp_path / "bg")
    assert (options.schedule, options.keep, options.folder) == ("daily 03:15", 5, folder)
    page = admin.client.get(PAGE).get_data(as_text=True)
    assert first in page and 'value="03:15"' in page and "next" in page
    every = admin.post(PAGE, _form(second, schedule_kind="every", every_hours="6"))
    assert every.status_code == 302 and _stored(app).schedule == "every 6h"


def test_refusals_name_the_line_and_never_show_a_private_key(app, admin):
    secret, public = _key()
    refused = admin.post(PAGE, _form(f"{public}\n\n{secret}", keep="0"))
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "Line 3: This is a private key" in page
    assert "Keep from 1 to 365 copies." in page
    assert secret not in page and public in page
    assert _stored(app).recipients == ()


def test_a_change_needs_a_recent_sign_in_or_the_password(app, admin):
    _, public = _key()
    with app.app_context():
        for row in db.session.scalars(select(UserSession)):
            row.authenticated_at = clock.now() - timedelta(minutes=20)
        db.session.commit()
    refused = admin.post(PAGE, _form(public))
    assert refused.status_code == 302 and _stored(app).recipients == ()
    assert "Confirm your password" in admin.client.get(PAGE).get_data(as_text=True)
    confirmed = admin.post(PAGE, _form(public, confirm_password=PASSWORD))
    assert confirmed.status_code == 302 and _stored(app).recipients == (public,)


def test_a_copy_now_shows_on_the_page_and_the_admins_dashboard(app, admin, readonly, tmp_path):
    assert "No copy yet" not in readonly.client.get("/").get_data(as_text=True)
    dashboard = admin.client.get("/").get_data(as_text=True)
    assert "No copy yet" in dashboard and "no recipient" in dashboard
    _, public = _key()
    admin.post(PAGE, _form(public, str(tmp_path / "bg")))
    made = admin.post(f"{PAGE}/copies")
    assert made.status_code == 302
    page = admin.client.get(PAGE).get_data(as_text=True)
    assert "Copy written: vcf-break-glass-" in page and "0 passwords" in page
    assert 'id="break-glass-copies"' in page
    dashboard = admin.client.get("/").get_data(as_text=True)
    assert "vcf-break-glass-" in dashboard and "written" in dashboard
    assert "vcf-break-glass-" not in readonly.client.get("/").get_data(as_text=True)


def test_a_failed_copy_now_says_why(admin, tmp_path):
    _, public = _key()
    (tmp_path / "file").write_text("in the way")
    admin.post(PAGE, _form(public, str(tmp_path / "file" / "bg")))
    admin.post(f"{PAGE}/copies")
    page = admin.client.get(PAGE).get_data(as_text=True)
    assert "No copy was written" in page and "cannot be created" in page
    dashboard = admin.client.get("/").get_data(as_text=True)
    assert "failed" in dashboard and "cannot be created" in dashboard
