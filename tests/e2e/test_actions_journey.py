"""Acting on credentials in the real browser against the running portal and the simulator:
rotate one, rotate five (typed confirmation), update with a given password, a failure on one
resource shown with SDDC Manager's message, and the dashboard's count of expiring passwords.
"""

from __future__ import annotations

import re
import time

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
        Simulator(credentials=80, seed=12, task_delay=0.3) as sim,
        running_portal(tmp_path_factory.mktemp("actions"), workers=2) as server,
    ):
        yield Lab(server, sim)


@pytest.fixture
def page(lab, browser):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    sign_in_page(page, lab, "admin", LAB_PASSWORD)
    expect(page.locator("h1")).to_have_text("Environments")
    yield page
    watcher.check()
    context.close()


def _password(lab, cred_id) -> str:
    response = lab.session.post(
        f"{lab.url}/api/v1/credentials/{cred_id}/reveal", headers={"X-CSRFToken": lab.token}
    )
    assert response.status_code == 200, response.text
    return response.json()["password"]


def _wait_changed(lab, cred_id, old, timeout=30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _password(lab, cred_id)
        if now != old:
            return now
        time.sleep(0.3)
    raise AssertionError(f"credential {cred_id} kept its password")


def _select(page, count: int) -> list[str]:
    boxes = page.locator("#credentials-body input.select-row")
    expect(boxes.first).to_be_visible()
    ids = []
    for index in range(count):
        box = boxes.nth(index)
        box.check()
        ids.append(box.get_attribute("data-id"))
    return ids


def _open_environment(page, lab):
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    expect(page.locator("#credentials-body tr").first).to_be_visible()


def test_rotate_one_then_five_with_typed_confirmation(lab, page):
    _open_environment(page, lab)
    [one] = _select(page, 1)
    before = _password(lab, one)
    expect(page.locator("#actions-count")).to_have_text("1 credential selected.")
    page.click("[data-action-open=rotate]")
    dialog = page.locator("#action-dialog")
    expect(dialog.locator("#action-plan tbody tr")).to_have_count(1)
    expect(dialog.locator("#action-confirm-row")).to_be_hidden()
    dialog.locator("#action-submit").click()
    expect(dialog.locator("#action-state")).to_contain_text("Done: 1 of 1 succeeded", timeout=30000)
    _wait_changed(lab, one, before)
    dialog.locator("[data-close-dialog]").click()

    ids = _select(page, 5)
    befores = {cred_id: _password(lab, cred_id) for cred_id in ids}
    page.click("[data-action-open=rotate]")
    expect(dialog.locator("#action-plan tbody tr")).to_have_count(5)
    dialog.locator("#action-submit").click()
    expect(dialog.locator("#action-error")).to_contain_text("Type 5 to confirm")
    dialog.locator("#action-confirm").fill("5")
    dialog.locator("#action-submit").click()
    expect(dialog.locator("#action-state")).to_contain_text("Done: 5 of 5 succeeded", timeout=30000)
    for cred_id in ids:
        _wait_changed(lab, cred_id, befores[cred_id])


def test_update_with_a_given_password(lab, page):
    _open_environment(page, lab)
    [cred_id] = _select(page, 1)
    page.click("[data-action-open=update]")
    dialog = page.locator("#action-dialog")
    dialog.locator("#action-generate").uncheck()
    dialog.locator("#action-password").fill("Given-By-Operator-31!")
    dialog.locator("#action-submit").click()
    expect(dialog.locator("#action-state")).to_contain_text("succeeded", timeout=30000)
    deadline = time.monotonic() + 30
    while _password(lab, cred_id) != "Given-By-Operator-31!" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _password(lab, cred_id) == "Given-By-Operator-31!"
    assert "Given-By-Operator-31!" not in page.content()


def test_a_failure_on_one_resource_shows_sddc_managers_message(lab, page):
    _open_environment(page, lab)
    boxes = page.locator("#credentials-body input.select-row")
    expect(boxes.first).to_be_visible()
    first_row = page.locator("#credentials-body tr").first
    host = first_row.locator("td").first.inner_text().splitlines()[0].strip()
    # Only the rotation: an expiry check after an earlier test's sync must not use it up.
    lab.sim.inject_credential_fault(
        host, "fail", "ROTATE", message="Host unreachable over SSH", count=1
    )
    boxes.first.check()
    page.click("[data-action-open=rotate]")
    dialog = page.locator("#action-dialog")
    dialog.locator("#action-submit").click()
    expect(dialog.locator("#action-state")).to_contain_text("Failed", timeout=30000)
    expect(dialog.locator("#action-items")).to_contain_text("Host unreachable over SSH")
    # Which password works on the failed host: the previous one, which the portal still shows.
    expect(dialog.locator("#action-items thead")).to_contain_text("Password that works now")
    expect(dialog.locator("#action-items tbody td.password-now")).to_contain_text(
        "The previous one, which SDDC Manager and the portal still hold"
    )
    expect(dialog.locator("#action-retry")).to_be_visible()
    dialog.locator("#action-retry").click()
    expect(dialog.locator("#action-state")).to_contain_text("succeeded", timeout=30000)


def test_the_dashboard_counts_passwords_that_expire_soon(lab, page):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        checked = lab.sql(
            "SELECT expiry_checked_at FROM endpoints WHERE environment_id = ?", lab.env_id
        )
        if checked and checked[0][0]:
            break
        time.sleep(0.5)
    page.goto(lab.url + "/")
    notice = page.locator("#expiring-notice")
    expect(notice).to_contain_text("within 14 days")
    notice.locator("a").first.click()
    expect(page.locator("#f-expiring_within")).to_have_value("14")
    expect(page.locator("#credentials-body tr").first).to_be_visible()


def test_remediate_and_the_auto_rotate_policy(lab, page):
    _open_environment(page, lab)
    ids = _select(page, 2)
    remediate = page.locator("[data-action-open=remediate]")
    expect(remediate).to_be_disabled()  # one account at a time
    page.click("#actions-clear")
    [cred_id] = _select(page, 1)
    page.click("[data-action-open=remediate]")
    dialog = page.locator("#action-dialog")
    expect(dialog.locator("#action-password-label")).to_contain_text("already set on the component")
    dialog.locator("#action-password").fill("Changed-On-The-Host-9!")
    dialog.locator("#action-submit").click()
    expect(dialog.locator("#action-state")).to_contain_text("succeeded", timeout=30000)
    deadline = time.monotonic() + 30
    while _password(lab, cred_id) != "Changed-On-The-Host-9!" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _password(lab, cred_id) == "Changed-On-The-Host-9!"
    dialog.locator("[data-close-dialog]").click()

    _select(page, 2)
    page.click("[data-action-open=auto_rotate]")
    dialog.locator("#action-auto-days").fill("45")
    dialog.locator("#action-confirm").fill("2")
    dialog.locator("#action-submit").click()
    expect(dialog.locator("#action-state")).to_contain_text("Done: 2 of 2", timeout=30000)
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline:
        rows = lab.sql(
            "SELECT auto_rotate_days FROM credentials WHERE id IN (?, ?)", int(ids[0]), int(ids[1])
        )
        if all(row[0] == 45 for row in rows):
            break
        time.sleep(0.3)
    assert [row[0] for row in rows] == [45, 45]


def _focused(page) -> dict:
    return page.evaluate(
        """() => { const a = document.activeElement;
            return {id: a.id, tag: a.tagName, classes: a.className || "",
                    action: (a.dataset && a.dataset.actionOpen) || ""}; }"""
    )


def test_rotate_by_keyboard_takes_few_keys_and_keeps_the_focus(lab, page):
    _open_environment(page, lab)
    host = page.locator("#credentials-body tr td.col-host bdi").first.inner_text()
    page.focus("#f-q")
    page.keyboard.type(host)
    # The whole name in the URL: an earlier keystroke's search must not redraw the rows later.
    expect(page).to_have_url(re.compile(r"q=" + re.escape(host) + r"(&|$)"))
    expect(page.locator("#credentials-table")).to_have_attribute("aria-busy", "false")
    keys = []

    def press(key: str) -> dict:
        keys.append(key)
        page.keyboard.press(key)
        return _focused(page)

    # The row's checkbox is its first Tab stop, right after the column headers.
    for _ in range(6):
        if "select-row" in press("Tab")["classes"]:
            break
    assert "select-row" in _focused(page)["classes"], keys
    press("Space")
    expect(page.locator("#actions-count")).to_have_text("1 credential selected.")
    # The actions bar is the next stop back, one stop for all of its buttons: Rotate… first.
    for _ in range(3):
        if press("Shift+Tab")["action"] == "rotate":
            break
    assert _focused(page)["action"] == "rotate", keys
    assert press("ArrowRight")["action"] == "update"
    assert press("ArrowLeft")["action"] == "rotate"
    press("Enter")
    dialog = page.locator("#action-dialog")
    expect(dialog.locator("#action-plan tbody tr")).to_have_count(1)
    for _ in range(4):
        if press("Tab")["id"] == "action-submit":
            break
    press("Enter")
    # The form goes away: the progress has the focus, not the page's body.
    expect(dialog.locator("#action-state")).to_be_focused()
    expect(dialog.locator("#action-state")).to_contain_text("Done: 1 of 1", timeout=30000)
    assert len(keys) <= 14, keys  # was 34 with the checkbox last in its row
    press("Escape")
    expect(dialog).not_to_be_visible()
    # The bar went with the selection: the focus is on the table the action changed.
    expect(page.locator("#credentials-table")).to_be_focused()
