"""Needs attention where an operator sees it: the real Gunicorn over HTTPS and the simulator.
An account SDDC Manager cannot reach (connectivityStatus ERROR, 9.1 connectivityErrorDetails)
and the expired passwords its expiry check reports are on the list and in the alerts, each
once, delivered to a real webhook; from the dashboard, one click to the list, and from an
entry to the Remediate dialog of its environment."""

from __future__ import annotations

import json
import time

import pytest
from receivers import webhook_receiver
from support import CHROMIUM

from portal.simulator.lifecycle import REMEDIATION_MESSAGE

pytestmark = pytest.mark.slow
KIND = "credential.needs_attention"
HCX = "sfo-m01-hcx01.sfo.rainpole.io"


def _add_webhook(lab, hook) -> None:
    form = {**hook.form(name="attention"), "events": [KIND], "csrf_token": lab.token}
    answer = lab.session.post(
        lab.url + "/settings/notifications/channels/new?kind=webhook",
        data=form,
        headers={"X-CSRFToken": lab.token},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text


def _check_expiry(lab) -> None:
    """Ask for an expiry check and wait until the scheduler's process has finished it."""
    before = lab.sql(
        "SELECT expiry_checked_at FROM endpoints WHERE environment_id = ? AND source = 'manager'",
        lab.env_id,
    )[0][0]
    answer = lab.session.post(
        f"{lab.url}/api/v1/environments/{lab.env_id}/expiry-check",
        json={},
        headers={"X-CSRFToken": lab.token},
    )
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = lab.sql(
            "SELECT expiry_checked_at FROM endpoints WHERE environment_id = ? "
            "AND source = 'manager'",
            lab.env_id,
        )[0][0]
        if after and after != before:
            return
        time.sleep(0.2)
    raise AssertionError("the expiry check did not run")


def _alerts(lab) -> list[dict]:
    rows = lab.sql("SELECT details FROM notification_outbox WHERE kind = ? ORDER BY id", KIND)
    return [json.loads(row[0]) for row in rows]


def _named(alerts: list[dict]) -> list[tuple[str, str, str]]:
    return [
        (f["hostname"], f["username"], f["kind"]) for alert in alerts for f in alert["findings"]
    ]


def _wait_for(condition, what: str, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"waited in vain for {what}")


def test_unreachable_and_expired_accounts_are_listed_and_announced_once(lab, tmp_path):
    with webhook_receiver(tmp_path) as hook:
        _add_webhook(lab, hook)
        lab.sim.inject_credential_fault(
            HCX, "fail", "EXPIRATION", message="Unable to connect to the HCX Manager"
        )
        _check_expiry(lab)

        listing = lab.get("/api/v1/attention", per_page=500)
        unreachable = [i for i in listing["items"] if i["kind"] == "connectivity"]
        assert sorted((i["hostname"], i["username"]) for i in unreachable) == [
            (HCX, "admin"),
            (HCX, "root"),
        ]
        assert all(i["message"] == "Unable to connect to the HCX Manager" for i in unreachable)
        assert all(i["remediation_message"] == REMEDIATION_MESSAGE for i in unreachable)
        assert all(i["actions"] == ["remediate", "rotate"] for i in unreachable)
        expired = [i for i in listing["items"] if i["kind"] == "expired"]
        assert expired, "the simulator's expiry check reports some passwords expired"
        assert all(i["expiry_status"] == "EXPIRED" for i in expired)

        # The alert of the new finding reaches the webhook.
        def delivered():
            return [
                d
                for d in hook.documents()
                if d["kind"] == KIND
                and any(f["kind"] == "connectivity" for f in d["details"]["findings"])
            ]

        [document] = _wait_for(delivered, "the alert at the webhook")
        assert "Unable to connect to the HCX Manager" in document["text"]
        assert document["details"]["environment"] == "sfo-m01"

        # Every finding on the list was announced, each once.
        named = _named(_alerts(lab))
        for item in listing["items"]:
            assert named.count((item["hostname"], item["username"], item["kind"])) == 1, item

        # Checked and synced again with nothing new: nothing announced again.
        _check_expiry(lab)
        lab.session.post(
            f"{lab.url}/api/v1/environments/{lab.env_id}/sync",
            json={"source": "manager"},
            headers={"X-CSRFToken": lab.token},
        )
        lab.wait_for(lab.env_id, "success")
        time.sleep(6)  # one more delivery pass
        assert _named(_alerts(lab)) == named
        assert len(delivered()) == 1
    lab.sim.clear_failures()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_from_the_dashboard_to_the_remediate_dialog(lab, admin_page):
    from playwright.sync_api import expect

    page, watcher = admin_page
    lab.sim.inject_credential_fault(HCX, "fail", "EXPIRATION", message="HCX refuses the password")
    _check_expiry(lab)
    page.goto(lab.url + "/")
    page.click("#attention-link")
    expect(page.locator("h1")).to_have_text("Needs attention")
    row = page.locator("#attention-table tbody tr[data-kind=connectivity]", has_text="root").first
    expect(row).to_contain_text(HCX)
    expect(row).to_contain_text("HCX refuses the password")
    expect(row).to_contain_text(REMEDIATION_MESSAGE)
    expect(row).to_contain_text("HCX Manager (HCX_MANAGER)")
    row.locator("a[data-act=remediate]").click()
    dialog = page.locator("#action-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#action-title")).to_have_text("Remediate a password")
    expect(page.locator("#action-plan tbody tr")).to_have_count(1)
    expect(page.locator("#action-plan tbody tr")).to_contain_text(HCX)
    expect(page.locator("#action-password-row")).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    lab.sim.clear_failures()
