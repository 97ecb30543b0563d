"""Directory sign-in in headless Chromium against the running portal (Gunicorn over HTTPS): a
user of a real OpenLDAP directory on the sign-in form, and a user of a real OpenID Provider
through "Sign in with …", each seeing only the environment their group was granted, and the
OIDC user losing it when the provider takes them out of the group."""

from __future__ import annotations

import re

import pytest
from ldap_server import slapd_binary, start_slapd
from oidc_server import node_missing, start_oidc_provider
from support import (
    CHROMIUM,
    Lab,
    launch_chromium,
    ldap_settings_body,
    oidc_settings_body,
    running_portal,
    sign_in,
)

from portal.simulator import Simulator

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed"),
    pytest.mark.skipif(node_missing() is not None, reason="Node.js is not installed"),
]
LDAP_PASSWORD = "Lara-directory-pass-9"  # noqa: S105 - a test account's password
OP_PASSWORD = "Omar-provider-pass-7"  # noqa: S105 - a test account's password


def _omar(groups: list[str]) -> dict:
    return {
        "omar": {
            "password": OP_PASSWORD,
            "email": "omar@example.test",
            "name": "Omar",
            "groups": groups,
        }
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    base = tmp_path_factory.mktemp("directory")
    with (
        Simulator(credentials=40, seed=11) as sim,
        running_portal(base / "portal", workers=2) as server,
        start_slapd(base / "slapd") as slapd,
    ):
        lab = Lab(server, sim)
        provider = start_oidc_provider(
            base / "op", [lab.url + "/login/oidc/callback"], _omar(["sso-ops-sfo", "ops-sfo"])
        )
        try:
            slapd.add_user("lara", LDAP_PASSWORD, cn="Lara Ops")
            slapd.add_group("ops-sfo", ["lara"])
            headers = {"X-CSRFToken": lab.token}

            def call(method: str, path: str, body) -> dict:
                response = lab.session.request(method, lab.url + path, json=body, headers=headers)
                assert response.status_code in (200, 201), response.text
                return response.json()

            call("PUT", "/api/v1/settings/ldap", ldap_settings_body(slapd))
            call("PUT", "/api/v1/settings/oidc", oidc_settings_body(provider))
            call("POST", "/api/v1/groups", {"name": "ops-sfo", "source": "ldap"})
            call("POST", "/api/v1/groups", {"name": "sso-ops-sfo", "source": "oidc"})
            call(
                "PUT",
                f"/api/v1/environments/{lab.env_id}/grants",
                [
                    {"subject": "group:ops-sfo", "level": "reveal"},
                    {"subject": "group:sso-ops-sfo", "level": "view"},
                ],
            )
            with sync_api.sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                yield lab, slapd, provider, browser
                browser.close()
        finally:
            provider.stop()


def _page(browser):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20000)
    return context, page


def _oidc_sign_in(page, lab):
    page.goto(lab.url + "/login")
    page.get_by_role("link", name="Sign in with Example SSO").click()
    page.wait_for_url(re.compile(r"/interaction/"))
    page.fill("input[name=login]", "omar")
    page.fill("input[name=password]", OP_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lab.url + "/")


def test_an_ldap_user_signs_in_and_sees_their_environment(setup):
    from playwright.sync_api import expect

    lab, _slapd, _provider, browser = setup
    context, page = _page(browser)
    sign_in(page, lab, "lara", LDAP_PASSWORD)
    expect(page.locator("h1")).to_have_text("Environments")
    expect(page.locator("main")).to_contain_text("sfo-m01")
    expect(page.locator("main")).not_to_contain_text("lax-m01")
    response = page.goto(f"{lab.url}/environments/{lab.broken_id}")
    assert response.status == 404
    rows = lab.sql("SELECT source, role FROM users WHERE username = ?", "lara")
    assert rows == [("ldap", "member")]
    context.close()


def test_an_oidc_user_signs_in_and_loses_access_with_the_group(setup):
    from playwright.sync_api import expect

    lab, _slapd, provider, browser = setup
    context, page = _page(browser)
    _oidc_sign_in(page, lab)
    expect(page.locator("h1")).to_have_text("Environments")
    expect(page.locator("main")).to_contain_text("sfo-m01")
    expect(page.locator("main")).not_to_contain_text("lax-m01")
    context.close()

    provider.set_accounts(_omar(["another-team"]))
    context, page = _page(browser)
    _oidc_sign_in(page, lab)
    expect(page.locator("h1")).to_have_text("Environments")
    expect(page.locator("main")).not_to_contain_text("sfo-m01")
    response = page.goto(f"{lab.url}/environments/{lab.env_id}")
    assert response.status == 404
    audit = lab.sql(
        "SELECT details FROM audit_events WHERE action = 'auth.login' AND target = 'omar' "
        "ORDER BY id"
    )
    # Only the provider's own group counts: "ops-sfo" is an LDAP group here.
    assert '"source": "oidc"' in audit[0][0] and '"groups": "sso-ops-sfo"' in audit[0][0]
    assert '"groups": "(none)"' in audit[-1][0]
    context.close()
