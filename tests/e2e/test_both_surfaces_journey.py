"""Reading both surfaces, where an operator sees it: the real Gunicorn over HTTPS and the
simulator's VCF 9.1 estate (VCF Installer and fleet management). The installer's value of an
account fleet management rotated is flagged stale in the search and on the "needs attention"
list; an operator updates a management appliance's password from the environment page through
fleet password management, and the portal holds the new value once the workflow succeeded; a
failed workflow changes nothing stored."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import CHROMIUM, endpoint_body

pytestmark = pytest.mark.slow


AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe.min.js"


def _axe(page, state: str) -> list[str]:
    """axe-core on the page as it is (as tests/e2e/test_accessibility.py runs it)."""
    page.wait_for_load_state("load")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .flatMap((v) => v.nodes.map((n) => v.impact + " " + v.id + ": "
              + n.target.join(" ") + " " + n.failureSummary.replace(/\\s+/g, " ")))"""
    )
    return [f"{state}: {line}" for line in found]


def _bodies(sim) -> dict:
    installer = {
        **endpoint_body(sim),
        "username": sim.installer_username,
        "password": sim.installer_password,
    }
    fleet = {**installer, "locker_password": sim.fleet_root_password}
    return {"installer": installer, "fleet": fleet}


@pytest.fixture(scope="module")
def vcf9(lab):
    """An environment read from the installer and fleet management, both synced."""
    env_id = lab.create("sfo-vcf9", **_bodies(lab.sim))
    for source in ("installer", "fleet"):
        _sync(lab, env_id, source)
    return env_id


def _post(lab, path, body) -> dict:
    answer = lab.session.post(lab.url + path, json=body, headers={"X-CSRFToken": lab.token})
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def _sync(lab, env_id, source) -> None:
    run = _post(lab, f"/api/v1/environments/{env_id}/sync", {"source": source})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = lab.get(f"/api/v1/sync-runs/{run['id']}")["state"]
        if state in ("success", "partial", "failed"):
            assert state != "failed"
            return
        time.sleep(0.3)
    raise AssertionError("the sync did not end")


def _fleet_item(lab, env_id, fqdn, username) -> dict:
    items = lab.get(
        f"/api/v1/environments/{env_id}/credentials",
        source="fleet",
        hostname=fqdn,
        username=username,
        per_page=50,
    )["items"]
    [item] = [i for i in items if i["hostname"] == fqdn and i["username"] == username]
    return item


def _password(lab, cred_id) -> str:
    return _post(lab, f"/api/v1/credentials/{cred_id}/reveal", {})["password"]


def _wait_action(lab, action_id) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        action = lab.get(f"/api/v1/credential-actions/{action_id}")
        if action["state"] in ("success", "partial", "failed", "cancelled"):
            return action
        time.sleep(0.3)
    raise AssertionError(f"action {action_id} did not end")


def test_the_installers_stale_value_is_flagged(lab, vcf9):
    [alias] = lab.sim.fleet_rotate(1)
    account = next(a for a in lab.sim.fleet_accounts() if a.alias == alias)
    _sync(lab, vcf9, "fleet")
    found = lab.get("/api/v1/credentials", q=account.fqdn, per_page=100)["items"]
    mine = {i["source"]: i for i in found if i["username"] == account.username}
    assert mine["installer"]["stale"] is True and mine["installer"]["differs_from"] == ["fleet"]
    assert mine["fleet"]["stale"] is False
    stale = lab.get("/api/v1/attention", kind="stale_spec", environment_id=vcf9)["items"]
    assert [(i["hostname"], i["username"]) for i in stale] == [(account.fqdn, account.username)]
    # Fleet management's own expired and unknown accounts are on the list too.
    listed = lab.get("/api/v1/attention", environment_id=vcf9, per_page=500)["items"]
    kinds = {i["kind"] for i in listed if i["source"] == "fleet"}
    assert kinds == {"expired", "expiry_unknown"}


def test_a_failed_workflow_changes_nothing(lab, vcf9):
    account = next(a for a in lab.sim.fleet_accounts() if a.username == "root")
    item = _fleet_item(lab, vcf9, account.fqdn, account.username)
    before = _password(lab, item["id"])
    lab.sim.fleet_fail_workflows(1, "The appliance is in maintenance")
    queued = _post(
        lab,
        "/api/v1/credentials/actions",
        {"operation": "update", "credential_ids": [item["id"]], "password": "Never-Stored-91!"},
    )
    action = _wait_action(lab, queued["id"])
    assert action["state"] == "failed" and action["operation"] == "fleet_update"
    assert action["items"][0]["error"] == "The appliance is in maintenance"
    assert _password(lab, item["id"]) == before
    assert next(a for a in lab.sim.fleet_accounts() if a.key == account.key).password == before


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_an_operator_updates_a_management_appliance_through_fleet_management(lab, vcf9, admin_page):
    from playwright.sync_api import expect

    page, _ = admin_page
    account = next(a for a in lab.sim.fleet_accounts() if a.appliance == "VCF_AUTOMATION")
    item = _fleet_item(lab, vcf9, account.fqdn, account.username)
    before = _password(lab, item["id"])

    page.goto(
        f"{lab.url}/environments/{vcf9}?source=fleet&hostname={account.fqdn}"
        f"&username={account.username}"
    )
    row = page.locator(f"#credentials-body tr[data-id='{item['id']}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("VCF Automation")
    violations = _axe(page, "environment with fleet management")
    row.locator("button[data-action=fleet-update]").click()
    expect(page.locator("#action-dialog")).to_be_visible()
    expect(page.locator("#action-plan tbody tr")).to_have_count(1)
    expect(page.locator("#action-plan tbody tr")).to_contain_text(account.fqdn)
    expect(page.locator("#action-generate")).to_be_checked()  # the portal makes a strong one
    violations += _axe(page, "fleet update dialog")
    page.click("#action-submit")
    expect(page.locator("#action-state")).to_contain_text("Done", timeout=30000)
    page.keyboard.press("Escape")

    after = _password(lab, item["id"])
    assert after != before
    assert next(a for a in lab.sim.fleet_accounts() if a.key == account.key).password == after
    history = lab.get(f"/api/v1/credentials/{item['id']}/history")["items"]
    assert history[0]["changed_by"] == "FLEET_UPDATE" and history[0]["current"]

    # Where the operator searches: the installer's copy now holds the old value, flagged.
    found = lab.get("/api/v1/credentials", q=account.fqdn, per_page=100)["items"]
    [copy] = [i for i in found if i["source"] == "installer" and i["username"] == "admin"]
    assert copy["stale"] is True
    page.goto(lab.url + "/")
    page.fill("#global-search", account.fqdn)
    installer_row = page.locator(f"#search-results tbody tr[data-id='{copy['id']}']")
    expect(installer_row).to_contain_text("Stale")
    expect(installer_row).to_contain_text("holds the current password")
    violations += _axe(page, "dashboard search with a stale copy")
    page.goto(f"{lab.url}/attention?environment_id={vcf9}")
    expect(page.locator("#attention-table tbody tr[data-kind=stale_spec]").first).to_be_visible()
    violations += _axe(page, "needs attention with stale copies")
    assert violations == []
