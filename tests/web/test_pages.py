"""HTML pages: who sees what, no inline script or style anywhere, hostile text escaped."""

from __future__ import annotations

import json
import re

import pytest

from portal.models import SOURCES, Credential
from portal.platform.crypto import CREDENTIAL_PASSWORD, cipher
from portal.platform.extensions import db
from portal.vault.credentials import MAX_STALE_DAYS, REVEAL_SECONDS, SEARCH_PAGE_SIZE, STALE_DAYS

HOSTILE = "<script>alert(1)</script>\"'\\\u202eexe"
# A JSON data block is never run, so the CSP allows it; any other script needs a src.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", re.I)
CLASSIC_SCRIPT = re.compile(r"<script(?![^>]*\btype=\"(?:module|application/json)\")[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<[^>]+\sstyle\s*=", re.I)
STYLE_TAG = re.compile(r"<style[\s>]", re.I)
PORTAL_CONFIG = re.compile(
    r'<script type="application/json" id="portal-config">(.*?)</script>', re.S
)
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["'](?:https?:)?//""", re.I)

ADMIN_MARKERS = (
    'id="add-environment"',
    'id="edit-environment"',
    "data-sync-source=",
    'id="definitions"',
    'href="/users/"',
    'href="/audit/"',
    ">Actions</th>",
)


def endpoint(**extra):
    body = {
        "host": "sddc.example.test",
        "port": 443,
        "username": "svc@vsphere.local",
        "password": "service-account-pass",
    }
    return {**body, **extra}


@pytest.fixture
def env_id(admin):
    response = admin.api(
        "POST",
        "/api/v1/environments",
        json={"name": HOSTILE, "description": HOSTILE + " desc", "manager": endpoint()},
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def pages_for(env_id):
    return [
        "/",
        f"/environments/{env_id}",
        f"/environments/{env_id}/edit",
        "/environments/new",
        "/scheduler",
        "/users/",
        "/audit/",
        "/change-password",
    ]


def assert_clean(html: str, where: str) -> None:
    assert not INLINE_SCRIPT.search(html), f"inline <script> on {where}"
    assert not CLASSIC_SCRIPT.search(html), f"classic (non-module) <script> on {where}"
    assert not INLINE_HANDLER.search(html), f"inline event handler on {where}"
    assert not INLINE_STYLE.search(html), f"style attribute on {where}"
    assert not STYLE_TAG.search(html), f"<style> element on {where}"
    assert not EXTERNAL.search(html), f"another origin referenced on {where}"
    assert "<script>alert(1)" not in html, f"unescaped hostile text on {where}"


def test_admin_sees_every_page_clean(admin, env_id):
    for path in pages_for(env_id):
        response = admin.client.get(path)
        assert response.status_code == 200, path
        assert_clean(response.get_data(as_text=True), path)


def test_login_and_error_pages_clean(anon, admin):
    assert_clean(anon.client.get("/login").get_data(as_text=True), "/login")
    missing = admin.client.get("/environments/999999")
    assert missing.status_code == 404
    html = missing.get_data(as_text=True)
    assert "Not found" in html and "Back to the dashboard" in html
    assert_clean(html, "404")


def test_readonly_sees_no_admin_controls(readonly, env_id):
    for path in ("/", f"/environments/{env_id}", "/scheduler"):
        response = readonly.client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert_clean(html, path)
        for marker in ADMIN_MARKERS:
            assert marker not in html, f"{marker} shown to read-only user on {path}"
        assert 'data-admin="false"' in html
    for path in (
        "/environments/new",
        f"/environments/{env_id}/edit",
        "/users/",
        "/audit/",
    ):
        assert readonly.client.get(path).status_code == 403, path


def test_admin_sees_admin_controls(admin, env_id):
    home = admin.client.get("/").get_data(as_text=True)
    assert 'id="add-environment"' in home and 'id="definitions"' in home
    view = admin.client.get(f"/environments/{env_id}").get_data(as_text=True)
    assert 'id="edit-environment"' in view and 'data-sync-source="manager"' in view
    assert ">Actions</th>" in admin.client.get("/scheduler").get_data(as_text=True)


def test_every_page_shows_who_is_signed_in(readonly, admin, env_id):
    html = readonly.client.get("/scheduler").get_data(as_text=True)
    assert "bob" in html and "readonly" in html and "Sign out" in html
    html = admin.client.get(f"/environments/{env_id}").get_data(as_text=True)
    assert "alice" in html and ">admin<" in html


def test_anonymous_is_sent_to_sign_in_with_next(anon, env_id):
    response = anon.client.get(f"/environments/{env_id}?hostname=esx")
    assert response.status_code == 302
    assert "/login?next=" in response.headers["Location"]


def test_hostile_names_render_escaped(admin, env_id):
    for path in (f"/environments/{env_id}", f"/environments/{env_id}/edit"):
        html = admin.client.get(path).get_data(as_text=True)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert "<script>alert" not in html


def test_environment_page_has_no_password(app, admin, env_id):
    secret = "Sup3r-Secret-Value!"
    with app.app_context():
        db.session.add(
            Credential(
                environment_id=env_id,
                source="manager",
                hostname="esx01.example.test",
                username="root",
                credential_type="SSH",
                password_enc=cipher().encrypt(secret, CREDENTIAL_PASSWORD),
            )
        )
        db.session.commit()
    for path in (f"/environments/{env_id}", f"/environments/{env_id}/edit", "/"):
        html = admin.client.get(path).get_data(as_text=True)
        assert secret not in html and "service-account-pass" not in html


def portal_config_of(html: str) -> dict:
    """The #portal-config JSON block the page scripts read their settings from."""
    match = PORTAL_CONFIG.search(html)
    assert match is not None, "no #portal-config block"
    return json.loads(match.group(1))


def test_reveal_seconds_and_search_page_size_passed_in_every_page_config(admin, env_id):
    for path in pages_for(env_id):
        config = portal_config_of(admin.client.get(path).get_data(as_text=True))
        assert config["revealSeconds"] == REVEAL_SECONDS == 30, path
        assert config["searchPageSize"] == SEARCH_PAGE_SIZE, path
        assert config["sources"] == list(SOURCES), path


def test_environment_id_and_password_age_bounds_passed_as_data(admin, env_id):
    html = admin.client.get(f"/environments/{env_id}").get_data(as_text=True)
    assert f'data-environment-id="{env_id}"' in html
    assert f'min="1" max="{MAX_STALE_DAYS}" value="{STALE_DAYS}"' in html
    assert 'data-empty="SDDC Manager reports no expiring or expired password."' in html


def test_audit_page_escapes_targets_and_keeps_filters(app, admin, env_id):
    with app.app_context():
        cred = Credential(
            environment_id=env_id,
            source="manager",
            hostname="<img src=x onerror=alert(1)>",
            username='"quoted"',
            credential_type="SSH",
            password_enc=cipher().encrypt("pw-123456789", CREDENTIAL_PASSWORD),
        )
        db.session.add(cred)
        db.session.commit()
        cred_id = cred.id
    assert admin.api("POST", f"/api/v1/credentials/{cred_id}/reveal", json={}).status_code == 200
    html = admin.client.get("/audit/?action=credential.reveal&since=2000-01-01").get_data(
        as_text=True
    )
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert_clean(html, "/audit/")
    assert 'value="2000-01-01"' in html
    assert "/audit/export.csv?" in html and "action=credential.reveal" in html


def test_static_assets_are_served(anon):
    for path in (
        "/static/css/portal.css",
        "/static/js/portal.js",
        "/static/js/dashboard.js",
        "/static/js/environment.js",
        "/static/js/credentials.js",
        "/static/js/envform.js",
        "/static/js/scheduler.js",
        "/static/js/export.js",
        "/static/js/age.js",
        "/static/img/favicon.svg",
    ):
        response = anon.client.get(path)
        assert response.status_code == 200, path
        response.close()


def test_scripts_never_use_inner_html():
    from pathlib import Path

    for script in (Path(__file__).resolve().parents[2] / "static" / "js").glob("*.js"):
        text = script.read_text()
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, f"{banned} in {script.name}"


def test_direction_overrides_and_nul_are_shown_escaped(admin):
    name = "\u202eexe.lab\x00x"
    response = admin.api("POST", "/api/v1/environments", json={"name": name, "manager": endpoint()})
    assert response.status_code == 201, response.json
    html = admin.client.get(f"/environments/{response.json['id']}").get_data(as_text=True)
    assert "\\u202eexe.lab\\x00x" in html
    assert "\u202e" not in html and "\x00" not in html
