"""When the session ends while an operator works, the sign-in page says so and brings them
back to their search, in the real browser."""

from __future__ import annotations

import pytest
from support import CHROMIUM, LAB_PASSWORD, Watcher, new_page, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def test_an_ended_session_says_so_and_keeps_the_search(lab, browser):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in(page, lab, "admin", LAB_PASSWORD)
        page.fill("#global-search", "esx")
        expect(page.locator("#search-status")).to_contain_text("match")
        assert "q=esx" in page.url  # the search is in the address

        context.clear_cookies()  # the session ends (idle timeout, sign-out elsewhere)
        page.fill("#global-search", "esx0")  # the next search meets 401
        expect(page.locator("#sign-in-to-continue")).to_be_visible()
        page.fill("#username", "admin")
        page.fill("#password", LAB_PASSWORD)
        page.locator("#password").press("Enter")
        expect(page.locator("#global-search")).to_have_value("esx0")
        expect(page.locator("#search-status")).to_contain_text("match")
    finally:
        context.close()
