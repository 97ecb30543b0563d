"""Fixtures of the browser tests of the operator's path: a Lab (the real server and the
simulator, synced), headless Chromium, and a page signed in as the admin."""

from __future__ import annotations

import pytest
from support import (
    CHROMIUM,
    LAB_PASSWORD,
    Lab,
    Watcher,
    launch_chromium,
    new_page,
    running_portal,
    sign_in,
)

from portal.simulator import Simulator


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with (
        Simulator(credentials=120, seed=3) as sim,
        running_portal(tmp_path_factory.mktemp("operator-path"), workers=2) as server,
    ):
        yield Lab(server, sim)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def admin_page(lab, browser):
    from playwright.sync_api import expect

    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    sign_in(page, lab, "admin", LAB_PASSWORD)
    expect(page.locator("h1")).to_have_text("Environments")
    yield page, watcher
    watcher.check()
    context.close()
