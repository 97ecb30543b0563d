"""Rotate expiring… plans every expiring password, beyond one page of the list, in the real
browser (it stopped at 200 while the dashboard counted more)."""

from __future__ import annotations

import pytest
from support import (
    CHROMIUM,
    LAB_PASSWORD,
    Lab,
    Watcher,
    new_page,
    running_portal,
)
from support import sign_in as sign_in_page

from portal.simulator import Simulator

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with (
        Simulator(credentials=900, seed=5) as sim,
        running_portal(tmp_path_factory.mktemp("expiring"), workers=2) as server,
    ):
        yield Lab(server, sim)


def test_rotate_expiring_plans_beyond_the_first_page(lab, browser):
    lab.wait_for_expiry(lab.env_id)
    listed = lab.get(
        f"/api/v1/environments/{lab.env_id}/credentials",
        expiring_within=3650,
        source="manager",
        status="present",
        per_page=1,
    )
    expiring = listed["total"]
    assert expiring > 200, expiring  # more than one page of the list

    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in_page(page, lab, "admin", LAB_PASSWORD)
        page.goto(f"{lab.url}/environments/{lab.env_id}")
        page.click("#rotate-expiring")
        page.fill("#action-days", "3650")
        page.click("#action-days-apply")
        planned = min(expiring, 500)
        expect(page.locator("#action-plan tbody tr")).to_have_count(planned, timeout=30000)
        if expiring > 500:
            expect(page.locator("#action-more")).to_contain_text(f"{expiring - 500} more")
        else:
            expect(page.locator("#action-more")).to_be_hidden()
        expect(page.locator("#action-confirm-label")).to_have_text(f"Type {planned} to confirm")
        watcher.check()
    finally:
        context.close()
