"""A VCF 9 estate in the real server and a real browser: SDDC Manager, the VCF Installer and
VCF Operations fleet management synced by Gunicorn's scheduler from the simulator over HTTPS;
a management appliance's password revealed from the dashboard's search, the environment page
saying which fleet API answered, and the environment form's locker decryption password.

Chromium must be installed at /usr/bin/chromium; the tests are skipped otherwise.
"""

from __future__ import annotations

import time

import pytest
from support import (
    CHROMIUM,
    LAB_PASSWORD,
    Watcher,
    endpoint_body,
    first_admin,
    launch_chromium,
    new_page,
    running_portal,
    sign_in,
)

from portal.simulator import Simulator

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


class Estate:
    """The running portal with one VCF 9.1 environment read from its three surfaces."""

    def __init__(self, server, sim):
        self.server, self.sim, self.url = server, sim, server.url
        self.session, self.token = first_admin(server, LAB_PASSWORD)
        fleet = endpoint_body(
            sim,
            username=sim.installer_username,
            password=sim.installer_password,
            locker_password=sim.fleet_root_password,
        )
        created = self.session.post(
            self.url + "/api/v1/environments",
            json={
                "name": "sfo-vcf01",
                "manager": endpoint_body(sim),
                "installer": endpoint_body(
                    sim,
                    username=sim.installer_username,
                    password=sim.installer_password,
                    sync_enabled=True,
                ),
                "fleet": fleet,
            },
            headers={"X-CSRFToken": self.token},
        )
        assert created.status_code == 201, created.text
        self.env_id = created.json()["id"]
        self.status = self.wait_for_sync()

    def wait_for_sync(self) -> dict:
        deadline = time.monotonic() + 90
        body: dict = {}
        while time.monotonic() < deadline:
            body = self.session.get(f"{self.url}/api/v1/environments/{self.env_id}").json()
            states = {s: v["state"] for s, v in body["status"].items() if not v["active_run"]}
            if states == {"manager": "success", "installer": "success", "fleet": "success"}:
                return body
            time.sleep(0.5)
        raise AssertionError(f"the estate did not sync: {body.get('status')}")


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with (
        Simulator(credentials=60, seed=9, installer_version="9.1") as sim,
        running_portal(tmp_path_factory.mktemp("fleet"), workers=2) as server,
    ):
        yield Estate(server, sim)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(estate, browser):
    watcher = Watcher(estate.url)
    context, page = new_page(browser, estate, watcher)
    sign_in(page, estate, "admin", LAB_PASSWORD)
    expect(page.locator("h1")).to_have_text("Environments")
    yield page
    watcher.check()
    context.close()


def test_a_management_appliance_password_revealed_from_the_dashboard_search(estate, page):
    sim = estate.sim
    spec = sim.installer_spec()
    automation = spec["vcfAutomationSpec"]["hostname"]
    account = next(a for a in sim.fleet_accounts() if a.fqdn == automation)
    page.fill("#global-search", automation.split(".")[0])
    rows = page.locator("#search-results tr", has_text=automation)
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_contain_text("VCF Automation")
    expect(row.locator(".col-source")).to_contain_text("VCF Operations fleet management")
    row.locator("[data-action=reveal]").click()
    secret = row.locator(".secret-out .secret")
    expect(secret).to_have_text(account.password)
    # never in an attribute of the page
    assert account.password not in page.evaluate(
        "() => Array.from(document.querySelectorAll('*')).flatMap(e => "
        "Array.from(e.attributes).map(a => a.value)).join(' ')"
    )
    # an expired management appliance's status is on its row too
    expired = next(a for a in sim.fleet_accounts() if a.fqdn.endswith("vcfops01b.sfo.rainpole.io"))
    page.fill("#global-search", expired.fqdn.split(".")[0])
    row = page.locator("#search-results tr", has_text=expired.fqdn).first
    expect(row).to_contain_text("VCF Operations · Expired")
    # and the dashboard's notice counts it
    expect(page.locator("#expiring-notice")).to_contain_text("already expired")


def test_the_environment_page_says_which_api_answered(estate, page):
    page.goto(f"{estate.url}/environments/{estate.env_id}")
    card = page.locator(".source-card[data-source=fleet]")
    expect(card.locator(".source-name")).to_have_text("VCF Operations fleet management")
    expect(card.locator(".fact-api")).to_have_text("VCF 9.1 fleet password management")
    page.goto(f"{estate.url}/environments/{estate.env_id}?source=fleet")
    body = page.locator("#credentials-body")
    expect(body.locator("tr")).to_have_count(len(estate.sim.fleet_accounts()))
    expect(body).to_contain_text("Cloud proxy")
    expect(body).to_contain_text("CLOUD_PROXY")
    # each account's fleet status: expiring, expired, and one fleet management could not check
    for state in ("Expiring", "Expired", "Unknown"):
        expect(body.locator(".col-expiry .badge", has_text=state).first).to_be_visible()


def test_the_form_keeps_the_locker_password_write_only(estate, page):
    page.goto(f"{estate.url}/environments/{estate.env_id}/edit")
    locker = page.locator("#fleet-locker_password")
    expect(locker).to_have_attribute("type", "password")
    expect(locker).to_have_value("")
    expect(locker).to_have_attribute("placeholder", "unchanged")
    assert estate.sim.fleet_root_password not in page.content()
