"""axe-core on every page and dialog state of the portal, light and dark: no violation of any
impact (issue 12).

axe-core is vendored for this test only (tests/vendor/axe.min.js, never served by the
portal) and evaluated in the page by the browser's DevTools protocol, so the portal's
Content-Security-Policy stays as it is. Chromium must be installed at /usr/bin/chromium.
"""

from __future__ import annotations

import pyotp
import pytest
from support import CHROMIUM, LAB_PASSWORD, Watcher, axe_violations, new_page, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

_violations = axe_violations


def _settle(page, ready: str) -> None:
    page.wait_for_selector(ready)
    page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_on_any_page_or_dialog(lab, browser, scheme):
    found: list[str] = []
    watcher = Watcher(lab.url)

    # Signed out: the sign-in page, and a refused sign-in.
    context, page = new_page(browser, lab, watcher, color_scheme=scheme)
    page.goto(lab.url + "/login")
    found += _violations(page, "sign-in")
    watcher.expect_console("status of 401")
    sign_in(page, lab, "admin", "not-the-password")
    expect(page.locator(".flash")).to_be_visible()
    found += _violations(page, "sign-in refused")
    context.close()

    context, page = new_page(browser, lab, watcher, color_scheme=scheme)
    sign_in(page, lab, "admin", LAB_PASSWORD)
    expect(page.locator("h1")).to_have_text("Environments")
    env = f"/environments/{lab.env_id}"
    pages = [
        ("dashboard", "/", "#environments .env-card"),
        ("environment", env, "#credentials-body tr[data-id]"),
        ("environment failed", f"/environments/{lab.broken_id}", "#credentials-body td.empty"),
        ("environment edit", env + "/edit", "#envform"),
        ("environment new", "/environments/new", "#envform"),
        ("scheduler", "/scheduler", "#jobs-body tr"),
        ("needs attention", "/attention", "#attention-table tbody tr[data-kind]"),
        ("users", "/users/", "#users-table"),
        ("audit", "/audit/", "#audit-table"),
        ("who saw what", "/audit/seen?person=admin", "#seen-table"),
        ("settings certificate", "/settings/certificate", "dl.kv"),
        ("settings logs", "/settings/logs", "main h1"),
        ("settings about", "/settings/about", "dl.kv"),
        ("preferences", "/preferences", "#preferences-form"),
        ("account security", "/account/security", "#passkey-register"),
        ("account tokens", "/account/tokens", "main form"),
        ("settings security", "/settings/security", "main form"),
        ("settings sign-in", "/settings/sign-in", "#ldap-urls"),
        ("settings notifications", "/settings/notifications", "main h1"),
        ("settings audit forwarding", "/settings/audit-forwarding", "main form"),
        (
            "notification channel new",
            "/settings/notifications/channels/new?kind=email",
            "main form",
        ),
        ("webhook channel new", "/settings/notifications/channels/new?kind=webhook", "main form"),
        ("settings break-glass", "/settings/break-glass", "#break-glass-form"),
        ("settings sensitive credentials", "/settings/policies", "#policy-rules"),
        ("environment sensitive credentials", env + "/policies", "#policy-rules"),
        ("access requests", "/access-requests", "#mine"),
        ("change password", "/change-password", "main form"),
        ("404", "/no-such-page", "main h1"),
    ]
    for name, path, ready in pages:
        if name == "404":
            watcher.expect_console("status of 404")
        page.goto(lab.url + path)
        _settle(page, ready)
        found += _violations(page, name)

    # The dashboard in its list layout, with search results and a password revealed.
    page.goto(lab.url + "/")
    _settle(page, "#environments .env-card")
    page.click("#view-list")
    page.fill("#global-search", "esx")
    row = page.locator("#search-results tbody tr").first
    row.locator("[data-action=reveal]").click()
    expect(row.locator(".secret")).to_be_visible()
    found += _violations(page, "dashboard list, search, reveal")
    page.click("#view-cards")

    # The dialogs of the dashboard: export, export with passwords.
    page.click("#export-open")
    expect(page.locator("#export-dialog")).to_be_visible()
    found += _violations(page, "dashboard export dialog")
    page.keyboard.press("Escape")
    page.click("#definitions-export-secret")
    expect(page.locator("#definitions-dialog")).to_be_visible()
    found += _violations(page, "definitions dialog")
    page.keyboard.press("Escape")

    # The environment page: a password revealed, the history dialog, a confirm dialog, and
    # the export dialog asking for the password again, with a wrong one refused.
    page.goto(lab.url + env)
    _settle(page, "#credentials-body tr[data-id]")
    first = page.locator("#credentials-body tr").first
    first.locator("[data-action=reveal]").click()
    expect(first.locator(".secret")).to_be_visible()
    found += _violations(page, "environment reveal")
    first.locator(".readable-open").click()
    expect(page.locator("#readable-dialog")).to_be_visible()
    found += _violations(page, "readable view of a password")
    page.keyboard.press("Escape")
    page.click("#more-filters")
    found += _violations(page, "environment more filters")
    first.locator("[data-action=history]").click()
    entry = page.locator("#history-dialog tr.history-entry").first
    entry.locator("button[aria-pressed]").click()
    expect(entry.locator(".secret")).to_be_visible()
    found += _violations(page, "history dialog")
    page.keyboard.press("Escape")
    page.click("#tab-age")
    _settle(page, "#age-chart .bar-row")
    found += _violations(page, "password age")
    # The answer comes when the dialog closes: not awaited here.
    page.evaluate(
        "() => { import('/static/js/portal.js').then((m) => m.confirmDialog("
        "'Purge credential?', 'Delete it and its history.', 'Purge')); }"
    )
    expect(page.get_by_role("dialog")).to_be_visible()
    found += _violations(page, "confirm dialog")
    page.keyboard.press("Escape")
    lab.age_sessions(20)
    page.click("#export-open")
    expect(page.locator("#export-reauth")).to_be_visible()
    found += _violations(page, "export re-authentication")
    watcher.expect_console("status of 403")
    page.fill("#export-confirm-password", "not-my-password")
    page.click("#export-submit")
    expect(page.locator("#export-reauth-error")).not_to_be_empty()
    found += _violations(page, "export re-authentication refused")
    page.keyboard.press("Escape")

    # On a phone: the stacked rows of the search results and of the credentials table.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(lab.url + "/")
    _settle(page, "#environments .env-card")
    page.fill("#global-search", "esx")
    expect(page.locator("#search-results tbody tr").first).to_be_visible()
    found += _violations(page, "dashboard search, phone")
    page.goto(lab.url + env)
    _settle(page, "#credentials-body tr[data-id]")
    found += _violations(page, "environment, phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    # The users page with a user's actions open.
    page.goto(lab.url + "/users/")
    _settle(page, "#users-table")
    for details in page.locator("#users-table details").all():
        details.evaluate("(node) => { node.open = true; }")
    found += _violations(page, "users actions")

    # Groups on the users page: one created (with a member) and its actions open; then the
    # environment's Access tab with a grant to it.
    group = "axe-" + scheme
    page.fill("#new-group-name", group)
    page.fill("#reauth-group-create", LAB_PASSWORD)
    page.click("#add-group button[type=submit]")
    _settle(page, "#groups-table")
    row = page.locator("#groups-table tbody tr", has_text=group)
    row.locator("details").evaluate("(node) => { node.open = true; }")
    add = row.locator("form").filter(has=page.locator("select[name=username]"))
    add.locator("input[name=confirm_password]").fill(LAB_PASSWORD)
    add.locator("button[type=submit]").click()
    _settle(page, "#groups-table form.inline-form")
    for details in page.locator("#groups-table details").all():
        details.evaluate("(node) => { node.open = true; }")
    found += _violations(page, "users groups")
    page.goto(lab.url + env + "#access")
    _settle(page, "#panel-access:not([hidden])")
    found += _violations(page, "environment access, no grant")
    page.select_option("#access-new-subject", "group:" + group)
    page.select_option("#access-new-level", "reveal")
    page.click("#access-form button[type=submit]")
    _settle(page, "#access-table")
    found += _violations(page, "environment access, a grant")

    # Acting on credentials: the selection bar, the dry run, the progress of a rotation.
    lab.age_sessions(0)
    page.goto(lab.url + env)
    _settle(page, "#credentials-body tr[data-id]")
    boxes = page.locator("#credentials-body input.select-row")
    boxes.nth(0).check()
    boxes.nth(1).check()
    found += _violations(page, "environment selection")
    page.click("[data-action-open=rotate]")
    expect(page.locator("#action-plan tbody tr")).to_have_count(2)
    found += _violations(page, "action dry run")
    page.fill("#action-confirm", "2")
    page.click("#action-submit")
    expect(page.locator("#action-state")).to_contain_text("Done", timeout=30000)
    found += _violations(page, "action progress")
    page.keyboard.press("Escape")

    # A token shown once; then an authenticator app set up, its recovery codes, and the
    # second step of the next sign-in.
    page.goto(lab.url + "/account/tokens")
    page.fill("#token-name", "axe " + scheme)
    page.click("form:has(#token-name) button[type=submit]")
    expect(page.locator("#new-token")).to_be_visible()
    found += _violations(page, "token created")
    page.goto(lab.url + "/account/security")
    page.fill("#password-totp", LAB_PASSWORD)
    page.locator("#password-totp").press("Enter")
    expect(page.locator(".qr svg")).to_be_visible()
    found += _violations(page, "authenticator set-up")
    secret = page.locator(".secret-key").inner_text().replace(" ", "")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.locator("#code").press("Enter")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    found += _violations(page, "recovery codes")
    page.click("header button:has-text('Sign out')")
    sign_in(page, lab, "admin", LAB_PASSWORD)
    expect(page.locator("h1")).to_have_text("Second factor")
    found += _violations(page, "second step of sign-in")
    context.close()
    # The admin signs in without a factor again in the other tests of this module.
    lab.sql(
        "UPDATE users SET totp_secret_enc = NULL, totp_last_step = NULL WHERE username = 'admin'"
    )
    lab.sql("DELETE FROM recovery_codes")
    assert found == [], "\n".join(found)
