"""One operator journey in a real browser against the real server (Gunicorn over HTTPS).

Chromium must be installed at /usr/bin/chromium; the test is skipped otherwise. It fails on any
console error, uncaught page error, CSP violation or request to another origin.
"""

from __future__ import annotations

import csv
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from support import CHROMIUM, Watcher, launch_chromium, new_page, running_portal, sign_in

from portal.simulator import Simulator
from portal.vault.credentials import REVEAL_SECONDS, SEARCH_PAGE_SIZE

ADMIN_PASSWORD = "Journey-admin-passphrase-1"  # noqa: S105 - test password
VIEWER_PASSWORD = "Journey-viewer-passphrase-1"  # noqa: S105 - test password
FORMULA_HOST = "=cmd|' /C calc'!A0"
HOSTILE_USER = "<script>alert(1)</script>"
RTL_HOST = "\u202eexe.cod.rainpole.io"  # a right-to-left override would show "oi.eloponiar.doc.exe"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def sim():
    with Simulator(credentials=300, seed=1, hostile=True) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    with running_portal(tmp_path_factory.mktemp("browser"), workers=2) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def change_password(page, current, new):
    expect(page).to_have_url(re.compile(r"/change-password"))
    page.fill("#current_password", current)
    page.fill("#new_password", new)
    page.fill("#confirm_password", new)
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Environments")


def last_run_id(page, source="manager") -> str:
    """The id of the run shown in a source's progress slot ("" when none)."""
    progress = page.locator(f"#progress-{source} .progress")
    return progress.get_attribute("data-run-id") if progress.count() else ""


def sync_now(page, source="manager") -> str:
    """Press "Sync now", follow the live progress to its end; return the final text."""
    before = last_run_id(page, source)
    page.click(f"[data-sync-source={source}]")
    return wait_for_run(page, source, before)


def wait_for_run(page, source="manager", not_run_id="") -> str:
    """Wait for a run other than `not_run_id` to reach its end; return its text."""
    done = page.locator(
        f"#progress-{source} .progress[data-run-phase=done]:not([data-run-id='{not_run_id}'])"
    )
    expect(done).to_be_visible(timeout=60000)
    expect(done).to_have_attribute("data-run-state", re.compile("success|partial"))
    return done.inner_text()


def assert_module_scripts_only(page) -> None:
    """Every script of the page is an ES module or a JSON data block; at least one module."""
    kinds = page.evaluate("Array.from(document.scripts, (s) => s.type)")
    assert "module" in kinds, kinds
    assert set(kinds) <= {"module", "application/json"}, kinds


def clipboard(page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def find(snapshot, **match):
    for element in snapshot:
        values = {
            "hostname": element["resource"]["resourceName"],
            "username": element["username"],
            "credential_type": element["credentialType"],
        }
        if all(values[k] == v for k, v in match.items()):
            return element, values
    raise AssertionError(f"no simulator credential with {match}")


def test_operator_journey(portal, sim, browser, tmp_path):
    watcher = Watcher(portal.url)
    context, page = new_page(browser, portal, watcher)

    # First sign-in as admin/admin: the default password must be changed at once.
    page.goto(portal.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/"))
    assert_module_scripts_only(page)
    sign_in(page, portal, "admin", "admin")
    change_password(page, "admin", ADMIN_PASSWORD)
    expect(page.locator(".who")).to_contain_text("admin")

    # Add an environment: a failing test connection, then a passing one, then pin and save.
    page.click("#add-environment")
    expect(page).to_have_url(re.compile(r"/environments/new$"))
    page.fill("#name", "sfo-m01")
    page.fill("#description", "Management domain")
    page.fill("#manager-host", sim.host)
    page.fill("#manager-port", str(sim.port))
    page.fill("#manager-username", sim.admin_username)
    page.fill("#manager-password", "wrong-password")
    page.check("input[name=manager-tls][value=ca]")
    page.fill("#manager-ca_pem", sim.ca_pem)
    test_button = page.locator("fieldset[data-source=manager] [data-test-connection]")
    test_button.click()
    result = page.locator("fieldset[data-source=manager] [data-test-result] .result")
    expect(result).to_have_attribute("data-ok", "false")
    expect(result).to_contain_text("Connection failed")
    page.fill("#manager-password", sim.admin_password)
    test_button.click()
    expect(result).to_have_attribute("data-ok", "true")
    expect(result).to_contain_text(sim.certificate_sha256)
    result.locator("button[data-pin]").click()
    expect(page.locator("input[name=manager-tls][value=pin]")).to_be_checked()
    expect(page.locator("#manager-pinned_sha256")).to_have_value(sim.certificate_sha256)
    # An invalid interval comes back as an inline error next to its field (the one expected
    # console error: the browser logs the 422 response).
    watcher.expect_console("status of 422")
    page.fill("#manager-sync_interval_minutes", "2")
    page.click("#save")
    expect(page.locator("#manager-sync_interval_minutes-error")).to_be_visible()
    expect(page.locator("#manager-sync_interval_minutes")).to_have_attribute(
        "aria-describedby", re.compile("manager-sync_interval_minutes-error")
    )
    page.fill("#manager-sync_interval_minutes", "60")
    page.click("#save")
    expect(page).to_have_url(re.compile(r"/environments/\d+$"))
    env_url = page.url

    # The first sync was queued on creation; then "Sync now" shows live progress to done.
    assert "new" in wait_for_run(page)
    expect(page.locator(".source-card .fact-count")).not_to_have_text("0")
    text = sync_now(page)
    assert "unchanged" in text and "new" in text, text

    # Filter and sort: the URL reflects the view and restores it.
    page.click("#more-filters")
    page.fill("#f-username", "root")
    expect(page).to_have_url(re.compile(r"username=root"))
    expect(page.locator("#credentials-table")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#table-status")).to_contain_text("credentials")
    users = page.locator("#credentials-body tr td:nth-child(2)").all_inner_texts()
    assert users and all("root" in u for u in users)
    page.click("th[data-sort=hostname] button")
    expect(page.locator("th[data-sort=hostname]")).to_have_attribute("aria-sort", "descending")
    expect(page).to_have_url(re.compile(r"sort=-hostname"))
    expect(page.locator("#credentials-table")).to_have_attribute("aria-busy", "false")
    hosts = page.locator("#credentials-body tr td:nth-child(1) bdi").all_inner_texts()
    # The page shows invisible characters escaped ("\u202e"): sorted as stored, unescaped.
    hosts = [re.sub(r"\\u([0-9a-f]{4})", lambda m: chr(int(m[1], 16)), h) for h in hosts]
    assert hosts == sorted(hosts, reverse=True) or len(set(hosts)) < len(hosts)
    page.select_option("#f-per_page", "100")
    expect(page).to_have_url(re.compile(r"per_page=100"))
    query = parse_qs(urlsplit(page.url).query)
    assert query["username"] == ["root"] and query["sort"] == ["-hostname"]
    page.goto(page.url)
    expect(page.locator("#f-username")).to_have_value("root")
    expect(page.locator("#f-per_page")).to_have_value("100")
    expect(page.locator("th[data-sort=hostname]")).to_have_attribute("aria-sort", "descending")

    # A right-to-left override in a host name is shown as an escape, not obeyed.
    find(sim.credentials_snapshot(), hostname=RTL_HOST)
    page.goto(f"{env_url}?hostname={_q(RTL_HOST)}")
    hosts = page.locator("#credentials-body tr td.col-host bdi")
    expect(hosts.first).to_have_text("\\u202eexe.cod.rainpole.io")
    assert all("\u202e" not in host for host in hosts.all_inner_texts())

    # Every page loads its code as ES modules only, and none of them logs an error.
    for path in ("/", env_url, env_url + "/edit", "/environments/new", "/scheduler", "/audit/"):
        page.goto(portal.url + path if path.startswith("/") else path)
        page.wait_for_load_state("networkidle")
        assert_module_scripts_only(page)

    # Reveal, then the password leaves the page after 30 s.
    snapshot = sim.credentials_snapshot()
    target, values = find(snapshot, username=HOSTILE_USER)
    params = f"hostname={_q(values['hostname'])}&username={_q(HOSTILE_USER)}"
    params += f"&credential_type={values['credential_type']}"
    page.goto(f"{env_url}?{params}")
    row = page.locator("#credentials-body tr").first
    expect(page.locator("#credentials-body tr")).to_have_count(1)
    expect(row.locator("td").nth(1)).to_have_text(HOSTILE_USER)
    row.locator("[data-action=reveal]").click()
    secret = row.locator(".secret")
    expect(secret).to_have_text(target["password"])
    expect(row.locator(".secret-hint")).to_have_text(f"Hides in {REVEAL_SECONDS} s")
    page.clock.fast_forward("00:31")
    expect(row.locator(".secret")).to_have_count(0)

    # Copy (not shown), and Copy all with the exact hostile host and user strings.
    row.locator("[data-action=copy]").click()
    expect(page.locator(".toast").last).to_contain_text("copied")
    assert clipboard(page) == target["password"]
    expect(row.locator(".secret")).to_have_count(0)
    row.locator("[data-action=copy-all]").click()
    expect(page.locator(".toast").last).to_contain_text("Host, user and password")
    expected = f"{values['hostname']}\n{HOSTILE_USER}\n{target['password']}"
    assert clipboard(page) == expected
    page.clock.fast_forward("00:31")
    page.wait_for_function("navigator.clipboard.readText().then(t => t === '')")

    # Rotate upstream, sync, and the history dialog shows both values.
    sim.rotate(1.0)
    page.goto(env_url)
    expect(page.locator("#progress-manager .progress")).to_have_count(1)
    assert "changed" in sync_now(page)
    new_password = find(sim.credentials_snapshot(), username=HOSTILE_USER)[0]["password"]
    page.goto(f"{env_url}?{params}")
    row = page.locator("#credentials-body tr").first
    row.locator("[data-action=history]").click()
    dialog = page.locator("#history-dialog")
    expect(dialog).to_be_visible()
    entries = dialog.locator("tr.history-entry")
    expect(entries).to_have_count(2)
    entries.nth(1).locator("button").click()
    expect(entries.nth(1).locator(".secret")).to_have_text(target["password"])
    entries.nth(0).locator("button").click()
    expect(entries.nth(0).locator(".secret")).to_have_text(new_password)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(dialog.locator(".secret")).to_have_count(0)

    # Password age tab.
    page.click("#tab-age")
    expect(page.locator("#age-chart .bar-row")).to_have_count(5)
    expect(page.locator("#age-expiring")).not_to_be_empty()

    # The dashboard and the scheduler queue and follow a sync the same way.
    env_id = env_url.rsplit("/", 1)[1]
    page.goto(portal.url + "/")
    with page.expect_response(lambda r: "/api/v1/credentials?" in r.url) as searched:
        page.fill("#global-search", "esx")
    assert parse_qs(urlsplit(searched.value.url).query)["per_page"] == [str(SEARCH_PAGE_SIZE)]
    expect(page.locator("#search-status")).to_contain_text("match")
    page.click(f"button[data-sync='{env_id}']")
    done = page.locator(f"#progress-{env_id}-manager .progress[data-run-phase=done]")
    expect(done).to_have_attribute("data-run-state", re.compile("success|partial"), timeout=60000)
    expect(page.locator(f"button[data-sync='{env_id}']")).to_be_enabled()
    page.goto(portal.url + "/scheduler")
    run_now = page.locator("#jobs-body button[data-action=run]")
    run_now.click()
    expect(page.locator(".toast").last).to_contain_text("SDDC Manager: Done", timeout=60000)
    expect(run_now).to_be_enabled()
    expect(page.locator(f"#outcome-{env_id}-manager .hint")).to_contain_text("Done")

    # Exports: CSV and Excel of everything, formulas neutralised.
    page.goto(env_url)
    csv_rows = export(page, tmp_path, "csv")
    assert csv_rows[0][:4] == ["Environment", "Host", "User", "Password"]
    check_neutralised(csv_rows)
    openpyxl = pytest.importorskip("openpyxl")
    xlsx_path = tmp_path / "export.xlsx"
    export(page, tmp_path, "xlsx", save_as=xlsx_path)
    sheet = openpyxl.load_workbook(xlsx_path).active
    xlsx_rows = [[str(c or "") for c in r] for r in sheet.iter_rows(values_only=True)]
    check_neutralised(xlsx_rows, exact_passwords=True)

    # The audit log shows the reveal, the copy and the export.
    page.goto(portal.url + "/audit/")
    audit = page.locator("#audit-table")
    for action in ("credential.reveal", "credential.copy", "credential.export"):
        expect(audit).to_contain_text(action)
    page.fill("#audit-action", "credential.export")
    page.click("form[role=search] button[type=submit]")
    expect(page.locator("#audit-table tbody tr")).to_have_count(2)

    # A read-only user, created on the Users page, sees no admin control.
    page.goto(portal.url + "/users/")
    page.fill("#new-username", "viewer")
    page.select_option("#new-role", "readonly")
    page.fill("#new-password", VIEWER_PASSWORD)
    page.click("#add-user button[type=submit]")
    expect(page.locator("#users-table")).to_contain_text("viewer")
    page.click(".who button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login"))

    sign_in(page, portal, "viewer", VIEWER_PASSWORD)
    change_password(page, VIEWER_PASSWORD, VIEWER_PASSWORD + "-new")
    expect(page.locator(".env-card, #environments table")).to_have_count(1)
    for selector in ("#add-environment", "button[data-sync]", "#definitions", "a[href$='/edit']"):
        expect(page.locator(selector)).to_have_count(0)
    expect(page.locator("nav a[href='/users/']")).to_have_count(0)
    page.goto(env_url)
    expect(page.locator("#credentials-body tr").first).to_be_visible()
    for selector in ("#edit-environment", "[data-sync-source]", "[data-action=purge]"):
        expect(page.locator(selector)).to_have_count(0)
    page.goto(portal.url + "/scheduler")
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    expect(page.locator("#jobs-body button")).to_have_count(0)

    # Sign out ends the session: the environment page asks for sign-in again.
    page.click(".who button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(env_url)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    watcher.check()
    context.close()


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def export(page, tmp_path, fmt, save_as=None):
    page.click("#export-open")
    dialog = page.locator("#export-dialog")
    expect(dialog).to_be_visible()
    # Signed in moments ago: no password prompt.
    expect(page.locator("#export-reauth")).to_be_hidden()
    dialog.locator(f"input[name=format][value={fmt}]").check()
    dialog.locator("input[name=scope][value=all]").check()
    with page.expect_download() as info:
        page.click("#export-submit")
    download = info.value
    assert re.match(r"vcf-credentials_sfo-m01_\d{8}T\d{6}Z\." + fmt, download.suggested_filename)
    path = save_as or tmp_path / f"export.{fmt}"
    download.save_as(path)
    if fmt == "csv":
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return list(csv.reader(handle))
    return None


def check_neutralised(rows, exact_passwords=False):
    # Excel cells are typed text, so passwords (column 4) stay exact there; names from SDDC
    # Manager are neutralised in both formats.
    cells = [
        cell
        for row in rows[1:]
        for index, cell in enumerate(row)
        if not (exact_passwords and index == 3)
    ]
    assert len(rows) > 100
    assert "'" + FORMULA_HOST in cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
