"""Who saw what in the real browser against the running portal and the simulator: the history
lists who saw a password, the report lists what a person saw, and "Rotate all of these…" shows
the dry run, takes the typed count and follows the rotate action until the passwords change."""

from __future__ import annotations

import time

import pytest
from support import CHROMIUM, LAB_PASSWORD, Lab, Watcher, new_page, running_portal
from support import sign_in as sign_in_page

from portal.simulator import Simulator

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with (
        Simulator(credentials=40, seed=8, task_delay=0.2) as sim,
        running_portal(tmp_path_factory.mktemp("seen"), workers=2) as server,
    ):
        yield Lab(server, sim)


def _password(lab, cred_id, purpose=None) -> str:
    response = lab.session.post(
        f"{lab.url}/api/v1/credentials/{cred_id}/reveal",
        json={"purpose": purpose} if purpose else {},
        headers={"X-CSRFToken": lab.token},
    )
    assert response.status_code == 200, response.text
    return response.json()["password"]


def test_who_saw_what_then_rotate_all_of_these(lab, browser):
    items = lab.get(f"/api/v1/environments/{lab.env_id}/credentials", source="manager", per_page=2)[
        "items"
    ]
    olds = {items[0]["id"]: _password(lab, items[0]["id"])}
    olds[items[1]["id"]] = _password(lab, items[1]["id"], "copy")

    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in_page(page, lab, "admin", LAB_PASSWORD)
        page.goto(f"{lab.url}/environments/{lab.env_id}")
        row = page.locator(f"#credentials-body tr[data-id='{items[0]['id']}']")
        row.locator("[data-action=history]").click()
        seen_by = page.locator("#history-seen-list")
        expect(seen_by).to_contain_text("admin")
        expect(seen_by).to_contain_text("revealed")
        page.locator("#history-dialog [data-close-dialog]").click()

        page.goto(f"{lab.url}/audit/seen?person=admin")
        expect(page.locator("#seen-table tbody tr")).to_have_count(2)
        expect(page.locator("#seen-summary")).to_contain_text("1 reveal, 1 copy")
        page.click("#seen-rotate-open")
        expect(page.locator("#seen-rotate-plan tbody tr")).to_have_count(2)
        expect(page.locator("#seen-rotate-summary")).to_contain_text("2 credentials will get")
        page.click("#seen-rotate-submit")
        expect(page.locator("#seen-rotate-error")).to_contain_text("Type 2")
        page.fill("#seen-rotate-confirm", "2")
        page.click("#seen-rotate-submit")
        expect(page.locator("#seen-rotate-state")).to_contain_text("queued")
        expect(page.locator("#seen-rotate-state")).to_contain_text(
            "Every action has ended", timeout=60000
        )
        expect(page.locator("#seen-rotate-actions .badge")).to_have_text(["Success"])
        watcher.check()
    finally:
        context.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(_password(lab, cred_id) != old for cred_id, old in olds.items()):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the passwords did not change")
