"""The operator's path in a real browser against the real server: the export dialog, the
sign-in form, the wording of empty and expired states, the keyboard focus on Reveal and Copy
(issue 12).

Chromium must be installed at /usr/bin/chromium; the tests are skipped otherwise.
"""

from __future__ import annotations

import csv
import re
import time
from urllib.parse import quote

import pytest
from support import CHROMIUM, LAB_PASSWORD, Watcher, new_page, sign_in

ADMIN_PASSWORD = LAB_PASSWORD

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def test_export_reauthentication_stays_in_the_dialog(lab, admin_page, tmp_path):
    page, watcher = admin_page
    env_url = f"{lab.url}/environments/{lab.env_id}"
    page.goto(env_url + "?username=root")
    expect(page.locator("#table-status")).to_contain_text("credentials")
    lab.age_sessions(20)
    roots = lab.get(f"/api/v1/environments/{lab.env_id}/credentials", username="root")["total"]
    everything = lab.get(f"/api/v1/environments/{lab.env_id}/credentials")["total"]
    assert 0 < roots < everything

    page.click("#export-open")
    dialog = page.locator("#export-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#export-reauth")).to_be_visible()
    expect(page.locator("#export-confirm-password")).to_be_focused()

    # A wrong password: the error is shown in the dialog, which stays open on the same page.
    watcher.expect_console("status of 403")
    page.fill("#export-confirm-password", "not-my-password")
    page.click("#export-submit")
    expect(page.locator("#export-reauth-error")).to_have_text("That password is not correct.")
    expect(dialog).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/environments/{lab.env_id}\?username=root$"))
    expect(page.locator("#export-confirm-password")).to_have_value("")
    expect(page.locator("#export-confirm-password")).to_be_focused()

    # The dialog says how many rows the export holds, for the view and for everything.
    count = page.locator("#export-count")
    expect(count).to_have_text(f"The export will hold {roots} credentials.")
    dialog.locator("input[name=scope][value=all]").check()
    expect(count).to_have_text(f"The export will hold {everything} credentials.")
    dialog.locator("input[name=scope][value=view]").check()
    expect(count).to_have_text(f"The export will hold {roots} credentials.")

    # The right password: the download holds the rows announced; no password in any URL.
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.fill("#export-confirm-password", ADMIN_PASSWORD)
    with page.expect_download() as info:
        page.click("#export-submit")
    path = tmp_path / "export.csv"
    info.value.save_as(path)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == roots + 1
    assert not any(ADMIN_PASSWORD in url for url in urls)
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.getElementById('export-confirm-password').value") == ""


def test_sign_in_keeps_the_user_name_and_copy_all_says_what_it_copies(lab, browser):
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    # A refused sign-in keeps the user name, exactly and escaped, and never the password.
    hostile = 'nobody"><b id="injected">x</b>'
    watcher.expect_console("status of 401")
    sign_in(page, lab, hostile, "wrong-password-typed")
    expect(page.locator(".flash, [role=alert]").first).to_contain_text("Sign-in failed")
    expect(page.locator("#username")).to_have_value(hostile)
    expect(page.locator("#password")).to_have_value("")
    expect(page.locator("#password")).to_be_focused()
    expect(page.locator("#injected")).to_have_count(0)
    assert "wrong-password-typed" not in page.content()
    watcher.expect_console("status of 401")
    sign_in(page, lab, "admin", "wrong-password-typed")
    expect(page.locator("#username")).to_have_value("admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Environments")

    # "Copy all": its accessible name starts with its visible text and names what it copies.
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    button = page.locator("#credentials-body tr").first.locator("[data-action=copy-all]")
    expect(button).to_have_text("Copy all")
    expect(button).to_have_accessible_name(re.compile(r"^Copy all: host, user and password of \S"))
    watcher.check()
    context.close()


def test_empty_and_expired_states_say_why(lab, admin_page):
    page, _ = admin_page
    # A source whose last sync failed says so, with the reason, instead of "Sync the environment".
    reason = lab.broken_status["last_error"]
    assert reason
    page.goto(f"{lab.url}/environments/{lab.broken_id}")
    empty = page.locator("#credentials-body td.empty")
    expect(empty).to_contain_text("No credentials: the last sync from SDDC Manager failed: ")
    expect(empty).to_contain_text(reason.rstrip("."))
    expect(empty).not_to_contain_text("No credentials yet")

    # An expiry date in the past reads "Expired", whatever SDDC Manager flagged last.
    items = lab.get(f"/api/v1/environments/{lab.env_id}/credentials", per_page=500)["items"]
    flagged, active = items[0], items[1]
    for item, status in ((flagged, "EXPIRING"), (active, "ACTIVE")):
        item["expiry_date"] = "2025-09-23T09:13:46.512Z"
        lab.sql(
            "UPDATE credentials SET expiry_date = ?, expiry_status = ? WHERE id = ?",
            item["expiry_date"],
            status,
            item["id"],
        )
    for item in (flagged, active):
        assert item["expiry_date"] < time.strftime("%Y-%m-%d", time.gmtime())
        page.goto(
            f"{lab.url}/environments/{lab.env_id}?hostname={quote(item['hostname'])}"
            f"&username={quote(item['username'])}&credential_type={item['credential_type']}"
        )
        expect(page.locator("#credentials-body tr")).to_have_count(1)
        expiry = page.locator("#credentials-body tr td.col-expiry")
        expect(expiry).to_have_text(f"Expired {item['expiry_date'][:10]}")
    page.click("#tab-age")
    # SDDC Manager flagged it EXPIRING; its date has passed: the age view says Expired too.
    row = page.locator("#age-expiring tr", has_text=flagged["hostname"]).filter(
        has_text=flagged["username"]
    )
    expect(row.locator(".badge").first).to_have_text("Expired")


def _no_attribute_holds(page, text: str) -> None:
    """Fail when any attribute of any element of the page contains `text`."""
    found = page.evaluate(
        """(text) => Array.from(document.querySelectorAll("*")).flatMap(
            (node) => Array.from(node.attributes).filter((a) => a.value.includes(text))
                .map((a) => node.tagName + "[" + a.name + "]"))""",
        text,
    )
    assert found == []


def test_focus_stays_on_reveal_and_copy(lab, admin_page):
    page, _ = admin_page
    item = lab.get(f"/api/v1/environments/{lab.env_id}/credentials", username="root")["items"][0]
    page.goto(
        f"{lab.url}/environments/{lab.env_id}?hostname={quote(item['hostname'])}"
        f"&username={quote(item['username'])}&credential_type={item['credential_type']}"
    )
    row = page.locator("#credentials-body tr")
    expect(row).to_have_count(1)

    # Enter on Reveal: the password appears in a polite live region, the button stays focused
    # and says it is pressed; a second Enter hides the password again.
    reveal = row.locator("[data-action=reveal]")
    expect(reveal).to_have_attribute("aria-pressed", "false")
    reveal.focus()
    page.keyboard.press("Enter")
    out = row.locator(".secret-out")
    expect(out).to_have_attribute("aria-live", "polite")
    expect(out.locator(".secret")).to_have_count(1)
    password = out.locator(".secret").inner_text()
    assert password
    expect(reveal).to_be_focused()
    expect(reveal).to_have_attribute("aria-pressed", "true")
    expect(reveal).to_have_accessible_name(re.compile(r"^Reveal password of "))
    _no_attribute_holds(page, password)
    page.keyboard.press("Enter")
    expect(out.locator(".secret")).to_have_count(0)
    expect(reveal).to_be_focused()
    expect(reveal).to_have_attribute("aria-pressed", "false")

    # Enter on Copy and on Copy all: focus stays, the toast (a polite status) says what happened.
    for action, said in (("copy", "Password copied"), ("copy-all", "Host, user and password")):
        button = row.locator(f"[data-action={action}]")
        button.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#toasts .toast").last).to_contain_text(said)
        expect(button).to_be_focused()
    expect(page.locator("#toasts")).to_have_attribute("aria-live", "polite")

    # The password history: the same for a former or current value in the dialog.
    row.locator("[data-action=history]").focus()
    page.keyboard.press("Enter")
    entry = page.locator("#history-dialog tr.history-entry").first
    button = entry.locator("button[aria-pressed]")
    expect(button).to_have_attribute("aria-pressed", "false")
    button.focus()
    page.keyboard.press("Enter")
    expect(entry.locator(".secret-out[aria-live=polite] .secret")).to_have_count(1)
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-pressed", "true")
    _no_attribute_holds(page, entry.locator(".secret").inner_text())
    page.keyboard.press("Enter")
    expect(entry.locator(".secret")).to_have_count(0)
    expect(button).to_be_focused()
    expect(button).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Escape")


CREDENTIALS_URL = re.compile(r"/api/v1/environments/\d+/credentials(\?|$)")


def test_a_failed_page_load_clears_the_rows_and_offers_retry(lab, admin_page):
    page, watcher = admin_page
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    rows = page.locator("#credentials-body tr")
    expect(rows).to_have_count(50)
    banner = page.locator("#table-error")
    expect(banner).to_be_hidden()

    # A server error once: the old rows go, a banner says why and offers Retry.
    failures = [500]

    def fail_once(route):
        if failures:
            failures.pop()
            route.fulfill(status=500, json={"error": "Internal server error"})
        else:
            route.continue_()

    watcher.expect_console("status of 500")
    page.route(CREDENTIALS_URL, fail_once)
    page.click("#more-filters")
    page.fill("#f-username", "root")
    expect(banner).to_be_visible()
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_contain_text("Could not load this page of credentials: Internal server error")
    expect(page.locator("#credentials-body [data-action]")).to_have_count(0)
    expect(page.locator("#table-status")).to_have_text("Could not load credentials.")
    retry = banner.get_by_role("button", name="Retry")
    retry.focus()
    page.keyboard.press("Enter")
    expect(banner).to_be_hidden()
    expect(page.locator("#table-status")).to_contain_text("credentials")
    users = page.locator("#credentials-body tr td:nth-child(2)").all_inner_texts()
    assert users and all("root" in user for user in users)
    page.unroute(CREDENTIALS_URL)

    # The network fails: the same, and Retry loads the page that failed.
    page.fill("#f-username", "")
    expect(page.locator("#table-status")).to_contain_text("Showing 1–50 of")
    # Every request the page sends meanwhile fails the same way: the browser logs each one.
    watcher.tolerate_console("net::ERR_FAILED")
    page.route(CREDENTIALS_URL, lambda route: route.abort())
    page.locator('#pager-top [data-page="next"]').click()
    expect(banner).to_contain_text("the portal could not be reached")
    expect(page.locator("#credentials-body [data-action]")).to_have_count(0)
    page.unroute(CREDENTIALS_URL)
    # A reload of the table started by the page itself (a sync that ends) may already have
    # replaced the banner: Retry is pressed when it is still there, in one step in the page.
    page.evaluate("document.querySelector('#table-error button')?.click()")
    expect(banner).to_be_hidden()
    expect(page.locator("#table-status")).to_contain_text("Showing 51–100 of")
    expect(rows).to_have_count(50)


def test_straight_to_the_row_at_1366x768(lab, admin_page):
    page, _ = admin_page
    page.set_viewport_size({"width": 1366, "height": 768})
    item = lab.get(f"/api/v1/environments/{lab.env_id}/credentials", resource_type="ESXI")["items"][
        0
    ]
    page.goto(f"{lab.url}/environments/{lab.env_id}")
    rows = page.locator("#credentials-body tr")
    expect(rows).to_have_count(50)

    # The search field has the focus, and the first row is on screen without scrolling.
    search = page.locator("#f-q")
    expect(search).to_be_focused()
    assert page.evaluate("window.scrollY") == 0
    box = rows.first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 768, box

    # A host name typed, then at most 3 Tabs reach the Reveal of its first row (4 for those
    # who act on credentials: the row's checkbox comes first).
    page.keyboard.type(item["hostname"])
    expect(page).to_have_url(re.compile(r"q=" + re.escape(quote(item["hostname"]))))
    expect(page.locator("#table-status")).to_contain_text("credentials")
    # Every row shown names the host (waits for the filtered rows to replace the others).
    hosts = page.locator("#credentials-body tr td.col-host bdi")
    expect(hosts.filter(has_not_text=item["hostname"])).to_have_count(0)
    expect(hosts.first).to_contain_text(item["hostname"])
    reveal = rows.first.locator("[data-action=reveal]")
    limit = 4 if rows.first.locator("input.select-row").count() else 3
    presses = 0
    while presses < limit and not reveal.evaluate("node => node === document.activeElement"):
        page.keyboard.press("Tab")
        presses += 1
    expect(reveal).to_be_focused()
    print(f"Tab presses from the search field to Reveal: {presses}")

    # The rarely used filters are one press away, and open by themselves when one is in use.
    more = page.locator("#more-filters")
    expect(more).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#f-domain")).to_be_hidden()
    more.click()
    expect(more).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#f-domain")).to_be_visible()
    page.goto(f"{lab.url}/environments/{lab.env_id}?credential_type=SSH")
    expect(page.locator("#f-credential_type")).to_be_visible()
    expect(page.locator("#f-credential_type")).to_have_value("SSH")

    # The column headers still sort, from the keyboard too: arrows move between them.
    sort = page.locator("th[data-sort=hostname] button")
    sort.focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("th[data-sort=username] button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("th[data-sort=username]")).to_have_attribute("aria-sort", "ascending")
