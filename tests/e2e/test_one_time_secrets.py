"""Secrets shown once can be kept: the new API token, the authenticator key and the
recovery codes have Copy; the codes also Download and Print, and never break mid-code."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from support import CHROMIUM, LAB_PASSWORD, Watcher, new_page, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def _clipboard(page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def test_one_time_secrets_copy_download_and_print(lab, browser):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in(page, lab, "admin", LAB_PASSWORD)
        page.goto(lab.url + "/account/tokens")
        page.fill("#token-name", "kept")
        page.click("form:has(#token-name) button[type=submit]")
        expect(page.locator("#new-token")).to_be_visible()
        page.wait_for_load_state()
        token = page.locator("#new-token").inner_text()
        page.click("button[data-copy=new-token]")
        assert _clipboard(page) == token and token.startswith("vcfp_")

        # Revoking asks first: Cancel keeps the token, Revoke ends it.
        mine = "section[aria-labelledby=mine-title] button:has-text('Revoke kept')"
        revoke = page.locator(mine)
        revoke.click()
        expect(page.locator("dialog[open]")).to_contain_text("stop working at once")
        page.locator("dialog[open] button:has-text('Cancel')").click()
        expect(revoke).to_have_count(1)
        revoke.click()
        page.locator("dialog[open] button:has-text('Revoke')").click()
        expect(revoke).to_have_count(0)

        page.goto(lab.url + "/account/security")
        page.fill("#password-totp", LAB_PASSWORD)
        page.locator("#password-totp").press("Enter")
        expect(page.locator("#totp-key")).to_be_visible()
        page.wait_for_load_state()  # the page's scripts have run
        key = page.locator("#totp-key").inner_text()
        page.click("button[data-copy=totp-key]")
        assert _clipboard(page) == key
        page.fill("#code", pyotp.TOTP(key.replace(" ", "")).now())
        page.locator("#code").press("Enter")
        expect(page.locator("#recovery-codes li")).to_have_count(10)
        page.wait_for_load_state()
        codes = [c.strip() for c in page.locator("#recovery-codes li").all_inner_texts()]

        page.click("button[data-copy=recovery-codes]")
        assert _clipboard(page).splitlines() == codes
        with page.expect_download() as download:
            page.click("button[data-download=recovery-codes]")
        saved = download.value
        assert saved.suggested_filename == "vcf-portal-recovery-codes-admin.txt"
        assert Path(saved.path()).read_text(encoding="utf-8").splitlines() == codes
        # (A statement block: an expression that ends in a function would be called.)
        page.evaluate("() => { window.printed = 0; window.print = () => { window.printed++; }; }")
        page.click("button[data-print]")
        assert page.evaluate("window.printed") == 1

        # On a phone: every code on one line of its own, none broken in the middle.
        for width in (390, 1366):
            page.set_viewport_size({"width": width, "height": 844})
            lines = page.locator("#recovery-codes code").evaluate_all(
                "codes => codes.map(c => c.getClientRects().length)"
            )
            assert lines == [1] * 10, (width, lines)
        watcher.check()
    finally:
        context.close()
        # The admin signs in without a factor in the other tests of this module.
        lab.sql(
            "UPDATE users SET totp_secret_enc = NULL, totp_last_step = NULL "
            "WHERE username = 'admin'"
        )
        lab.sql("DELETE FROM recovery_codes")
