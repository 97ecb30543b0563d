"""Absolute URLs come from PORTAL_EXTERNAL_URL or a host name of the portal's own, never from
a Host header a client made up (the OpenID Connect redirect_uri)."""

from __future__ import annotations

import pytest
from support import make_app
from werkzeug.exceptions import BadRequest

from portal.platform.config import ConfigError, load_settings
from portal.platform.urls import external_url


@pytest.mark.parametrize(
    "value",
    ["http://portal.example", "https://", "https://p.example/sub", "https://u@p.example", "x"],
)
def test_a_bad_external_url_names_the_variable(value):
    with pytest.raises(ConfigError, match="PORTAL_EXTERNAL_URL"):
        load_settings({"PORTAL_EXTERNAL_URL": value})


def test_the_external_url_is_kept_in_one_form():
    settings = load_settings({"PORTAL_EXTERNAL_URL": "https://VCF-Portal.example.com:8443/"})
    assert settings.external_url == "https://vcf-portal.example.com:8443"
    assert load_settings({}).external_url is None


def test_a_made_up_host_never_names_the_callback(app):
    with app.test_request_context("/", base_url="https://evil.example"):
        with pytest.raises(BadRequest, match="PORTAL_EXTERNAL_URL"):
            external_url("auth.oidc_callback")
    for host in ("localhost", "127.0.0.1", "127.0.0.1:8443"):
        with app.test_request_context("/", base_url=f"https://{host}"):
            assert external_url("auth.oidc_callback") == f"https://{host}/login/oidc/callback"


def test_the_external_url_wins_over_any_host(tmp_path):
    app = make_app(tmp_path, PORTAL_EXTERNAL_URL="https://vcf-portal.example.com:8443")
    for host in ("evil.example", "localhost"):
        with app.test_request_context("/", base_url=f"https://{host}"):
            assert (
                external_url("auth.oidc_callback")
                == "https://vcf-portal.example.com:8443/login/oidc/callback"
            )


def test_the_settings_page_shows_no_made_up_host(app, admin):
    # The admin's own session, in a request that names another host.
    cookie = admin.client.get_cookie("portal_session")
    page = app.test_client(use_cookies=False).get(
        "/settings/sign-in",
        base_url="https://evil.example",
        headers={"Cookie": f"portal_session={cookie.value}"},
    )
    assert page.status_code == 200, page.location
    text = page.get_data(as_text=True)
    assert [line for line in text.splitlines() if "evil.example" in line] == []
    assert "set PORTAL_EXTERNAL_URL" in text
    page = admin.client.get("/settings/sign-in")
    assert "://localhost/login/oidc/callback</code>" in page.get_data(as_text=True)
