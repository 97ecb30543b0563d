"""Check-out and check-in through the running portal (Gunicorn over HTTPS, its scheduler and
dual-control job) against the simulator: a check-out blocks others and the holder reveals;
check-in rotates through SDDC Manager and the new password arrives with the sync, the old
one in the history tagged with the holder; expiry and an admin's take-back end a check-out
and rotate; a failed rotation is visible, alerted and retried until it succeeds; the README's
runbook checks out, reveals and checks in with a token of the reveal scope."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest
from support import (
    LAB_PASSWORD,
    ROOT,
    Lab,
    Watcher,
    axe_violations,
    new_page,
    running_portal,
    sign_in,
)

from portal.simulator import Simulator

OPERATOR_PASSWORD = "Checkout-operator-passphrase-8"  # noqa: S105 - test password
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```\w+\n(.*?)```", re.DOTALL)


class Person:
    """A signed-in person of the lab's portal: their session and CSRF token."""

    def __init__(self, lab: Lab, name: str, role: str):
        self.lab, self.name = lab, name
        temporary = f"{name}-Temporary-passphrase-41"
        made = lab.session.post(
            lab.url + "/users/",
            data={
                "csrf_token": lab.token,
                "username": name,
                "role": role,
                "password": temporary,
            },
            allow_redirects=False,
        )
        assert made.status_code == 302, made.text
        self.session = lab.server.session()
        assert lab.server.login(self.session, name, temporary).status_code == 302
        token = lab.server.csrf(self.session, "/change-password")
        changed = self.session.post(
            lab.url + "/change-password",
            data={
                "csrf_token": token,
                "current_password": temporary,
                "new_password": OPERATOR_PASSWORD,
                "confirm_password": OPERATOR_PASSWORD,
            },
            allow_redirects=False,
        )
        assert changed.status_code == 302, changed.text
        self.token = lab.server.csrf(self.session, "/")

    def call(self, method: str, path: str, json=None):
        return self.session.request(
            method, self.lab.url + path, json=json, headers={"X-CSRFToken": self.token}
        )


class Admin(Person):
    def __init__(self, lab: Lab):  # the lab's own session
        self.lab, self.name, self.session, self.token = lab, "admin", lab.session, lab.token


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with (
        Simulator(credentials=40, seed=31, task_delay=0.3) as sim,
        running_portal(
            tmp_path_factory.mktemp("checkout"),
            workers=2,
            env={"PORTAL_TEST_INTERVAL_SECONDS": "3"},
        ) as server,
    ):
        lab = Lab(server, sim)
        lab.bob = Person(lab, "bob", "readonly")
        lab.admin = Admin(lab)
        yield lab


def _credentials(lab) -> list[dict]:
    """One SDDC Manager credential per host (rotations on distinct resources)."""
    items = lab.get(
        f"/api/v1/environments/{lab.env_id}/credentials", per_page=500, source="manager"
    )["items"]
    by_host: dict[str, dict] = {}
    for item in items:
        by_host.setdefault(item["hostname"], item)
    return list(by_host.values())


def _reveal(person, cred_id):
    return person.call("POST", f"/api/v1/credentials/{cred_id}/reveal")


def _simulated(lab, item) -> str:
    """The password SDDC Manager (the simulator) holds now."""
    for entry in lab.sim.credentials_snapshot():
        resource = entry["resource"]
        if (
            resource["resourceName"] == item["hostname"]
            and entry["username"] == item["username"]
            and entry["credentialType"] == item["credential_type"]
        ):
            return entry["password"]
    raise AssertionError(f"{item['hostname']} is not in the simulator")


def _wait(what, check, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _rotated(lab, person, item, old: str) -> str:
    """Wait until SDDC Manager has a new password, the portal's sync brought it, and the
    credential no longer needs rotation; the new password."""
    _wait("SDDC Manager's rotation", lambda: _simulated(lab, item) != old)

    def arrived():
        response = _reveal(person, item["id"])
        assert response.status_code == 200, response.text
        new = response.json()["password"]
        due = [i["credential_id"] for i in lab.get("/api/v1/needs-rotation")["items"]]
        return new if new != old and item["id"] not in due else None

    new = _wait("the new password in the portal", arrived)
    assert new == _simulated(lab, item)
    return new


def test_checkout_blocks_others_and_checkin_rotates_with_the_holder_in_history(lab):
    item = _credentials(lab)[0]
    out = lab.bob.call(
        "POST", f"/api/v1/credentials/{item['id']}/checkout", {"minutes": 30, "reason": "CHG-7"}
    )
    assert out.status_code == 201, out.text
    checkout = out.json()

    refused = _reveal(lab.admin, item["id"])
    assert refused.status_code == 403, refused.text
    details = refused.json()["details"]
    assert details["needs"] == ["checkout"]
    assert details["held_by"] == "bob" and details["until"] == checkout["due_at"]
    taken = lab.admin.call(
        "POST", f"/api/v1/credentials/{item['id']}/checkout", {"minutes": 30, "reason": "mine"}
    )
    assert taken.status_code == 409 and taken.json()["details"]["held_by"] == "bob"

    seen = _reveal(lab.bob, item["id"])
    assert seen.status_code == 200
    seen = seen.json()["password"]
    assert seen == _simulated(lab, item)

    back = lab.bob.call("POST", f"/api/v1/checkouts/{checkout['id']}/checkin")
    assert back.status_code == 200, back.text
    assert back.json()["rotation"] == "queued"
    new = _rotated(lab, lab.admin, item, seen)
    assert new != seen

    history = lab.get(f"/api/v1/credentials/{item['id']}/history")["items"]
    former = next(h for h in history if not h["current"])
    assert [(h["holder"], h["end_reason"]) for h in former["held_by"]] == [("bob", "checkin")]
    assert next(h for h in history if h["current"])["held_by"] == []
    ended = lab.get("/api/v1/checkouts", state="ended", credential_id=item["id"])["items"]
    action = lab.get(f"/api/v1/credential-actions/{ended[0]['action_id']}")
    assert action["operation"] == "rotate" and action["state"] == "success"


def test_expiry_and_take_back_end_a_checkout_and_rotate(lab):
    expiring, taken = _credentials(lab)[1:3]
    olds = {}
    for item in (expiring, taken):
        olds[item["id"]] = _simulated(lab, item)
        out = lab.bob.call(
            "POST", f"/api/v1/credentials/{item['id']}/checkout", {"minutes": 5, "reason": "x"}
        )
        assert out.status_code == 201, out.text
        item["checkout"] = out.json()["id"]
    # Time runs out (the check-out's end moved into the past); the job ends it and rotates.
    lab.sql(
        "UPDATE credential_checkouts SET due_at = datetime('now', '-1 minute') WHERE id = ?",
        expiring["checkout"],
    )
    back = lab.admin.call(
        "POST", f"/api/v1/checkouts/{taken['checkout']}/take-back", {"reason": "incident closed"}
    )
    assert back.status_code == 200, back.text
    assert back.json()["end_reason"] == "taken_back" and back.json()["ended_by"] == "admin"
    assert lab.bob.call("POST", f"/api/v1/checkouts/{taken['checkout']}/checkin").status_code == 409
    for item in (expiring, taken):
        _rotated(lab, lab.admin, item, olds[item["id"]])
    ends = {
        c["id"]: c["end_reason"]
        for c in lab.get("/api/v1/checkouts", state="ended")["items"]
        if c["id"] in (expiring["checkout"], taken["checkout"])
    }
    assert ends == {expiring["checkout"]: "expired", taken["checkout"]: "taken_back"}


def test_a_failed_rotation_is_visible_alerted_and_retried_until_it_succeeds(lab, browser):
    item = _credentials(lab)[3]
    old = _simulated(lab, item)
    lab.sim.inject_credential_fault(
        item["hostname"], "fail", "ROTATE", message="Unable to reach host over SSH", count=1
    )
    out = lab.bob.call(
        "POST", f"/api/v1/credentials/{item['id']}/checkout", {"minutes": 30, "reason": "x"}
    ).json()
    assert lab.bob.call("POST", f"/api/v1/checkouts/{out['id']}/checkin").status_code == 200

    def failed():
        due = lab.get("/api/v1/needs-rotation", environment_id=lab.env_id)["items"]
        mine = [i for i in due if i["credential_id"] == item["id"]]
        return mine[0] if mine and mine[0]["attempts"] == 1 else None

    shown = _wait("the failed rotation", failed)
    assert "Unable to reach host over SSH" in shown["error"]
    assert shown["action_state"] == "failed"
    row = next(
        i
        for i in lab.get(f"/api/v1/environments/{lab.env_id}/credentials", per_page=500)["items"]
        if i["id"] == item["id"]
    )
    assert row["needs_rotation"]["attempts"] == 1
    alerts = lab.sql(
        "SELECT subject, body FROM notification_outbox WHERE kind = 'checkout.rotation_failed'"
    )
    assert len(alerts) == 1 and "Unable to reach host over SSH" in alerts[0][1]
    assert old not in alerts[0][0] + alerts[0][1]
    assert _simulated(lab, item) == old  # the password bob saw still works: still owed
    # On the environment page: the row and the card of owed rotations say so.
    expect = pytest.importorskip("playwright.sync_api").expect
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in(page, lab, "admin", LAB_PASSWORD)
        expect(page.locator("h1")).to_have_text("Environments")
        page.goto(f"{lab.url}/environments/{lab.env_id}?hostname={item['hostname']}")
        row = page.locator(f"#credentials-body tr[data-id='{item['id']}']")
        expect(row.locator(".checkout-badges")).to_contain_text("Rotation failed")
        expect(row.locator(".checkout-badges")).to_contain_text("Unable to reach host over SSH")
        expect(page.locator("#checkouts-owed")).to_contain_text("Unable to reach host over SSH")
        assert axe_violations(page, "a failed rotation") == []
        watcher.check()
    finally:
        context.close()
    # The back-off (a minute after the first failure) has passed: tried again, it succeeds.
    lab.sql(
        "UPDATE credential_actions SET finished_at = datetime('now', '-2 minutes') WHERE id = ?",
        shown["action_id"],
    )
    _rotated(lab, lab.admin, item, old)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
def test_the_readme_runbook_checks_out_reveals_and_checks_in_with_a_reveal_token(lab, tmp_path):
    item = _credentials(lab)[4]
    old = _simulated(lab, item)
    minted = lab.bob.call(
        "POST", "/api/v1/me/tokens", {"name": "runbook", "scope": "reveal", "expires_in_days": 1}
    )
    assert minted.status_code == 201, minted.text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    script = "set -euo pipefail\n" + dict(EXAMPLE.findall(readme))["checkout"]
    done = subprocess.run(
        ["bash", "-c", script],
        env={
            **os.environ,
            "PORTAL_URL": lab.url,
            "PORTAL_TOKEN": minted.json()["token"],
            "PORTAL_CA": lab.server.cert,
            "VCF_HOST": item["hostname"],
            "VCF_ACCOUNT": item["username"],
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    revealed, checked_in = done.stdout.splitlines()
    assert checked_in in ("checked in, rotation queued", "checked in, rotation waiting")
    ended = lab.get("/api/v1/checkouts", state="ended", credential_id=item["id"])["items"]
    assert [(c["holder"], c["end_reason"]) for c in ended] == [("bob", "checkin")]
    # What the runbook saw was SDDC Manager's password, which then stops working.
    assert revealed == old
    _rotated(lab, lab.admin, item, old)
    assert LAB_PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_check_out_and_in_from_the_credential_row_in_the_browser(lab, browser, scheme):
    """The operator's journey with the keyboard: Check out… on the environment's row, the
    dialog (time and reason), the announcement, the row's holder badge, the environment's
    card, then the dashboard search's row, Check in and its announcement; axe finds nothing
    in each state, light and dark."""
    expect = pytest.importorskip("playwright.sync_api").expect
    item = _credentials(lab)[6 if scheme == "dark" else 5]
    old = _simulated(lab, item)
    found: list[str] = []
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher, color_scheme=scheme)
    try:
        sign_in(page, lab, "bob", OPERATOR_PASSWORD)
        expect(page.locator("h1")).to_have_text("Environments")
        page.goto(f"{lab.url}/environments/{lab.env_id}?hostname={item['hostname']}")
        row = page.locator(f"#credentials-body tr[data-id='{item['id']}']")
        start = row.locator("[data-action=checkout]")
        expect(start).to_have_accessible_name(f"Check out {item['hostname']} / {item['username']}")
        start.focus()
        page.keyboard.press("Enter")
        dialog = page.locator("dialog.checkout-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#checkout-reason")).to_be_focused()
        found += axe_violations(page, "check-out dialog")
        # A reason is required: the field says so, and keeps the focus.
        watcher.expect_console("status of 422")
        page.fill("#checkout-reason", "   ")
        dialog.locator("button[type=submit]").click()
        expect(page.locator("#checkout-reason-error")).not_to_be_empty()
        expect(page.locator("#checkout-reason")).to_have_attribute("aria-invalid", "true")
        page.fill("#checkout-reason", "CHG-42 reboot the host")
        dialog.locator("button[type=submit]").click()
        expect(dialog).to_have_count(0)
        expect(page.locator("#toasts")).to_contain_text(f"Checked out {item['hostname']}")
        expect(row.locator(".checkout-badges")).to_contain_text("Checked out by you until")
        expect(page.locator("#checkouts-card")).to_be_visible()
        expect(page.locator("#checkouts-active")).to_contain_text("bob")
        found += axe_violations(page, "checked out")

        # The dashboard's search shows it too, and checks it in.
        page.goto(f"{lab.url}/?q={item['hostname']}")
        found_row = page.locator(f"#search-results tr[data-id='{item['id']}']")
        expect(found_row).to_contain_text("Checked out by you until")
        found += axe_violations(page, "checked out, dashboard search")
        back = found_row.locator("[data-action=checkin]")
        expect(back).to_have_accessible_name(f"Check in {item['hostname']} / {item['username']}")
        back.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#toasts")).to_contain_text(f"Checked in {item['hostname']}")
        expect(found_row.locator("[data-action=checkout]")).to_be_visible()
        found += axe_violations(page, "checked in")
        watcher.check()
    finally:
        context.close()
    assert found == [], "\n".join(found)
    _rotated(lab, lab.admin, item, old)


def test_an_admin_takes_a_check_out_back_from_the_row(lab, browser):
    expect = pytest.importorskip("playwright.sync_api").expect
    item = _credentials(lab)[7]
    old = _simulated(lab, item)
    out = lab.bob.call(
        "POST", f"/api/v1/credentials/{item['id']}/checkout", {"minutes": 60, "reason": "x"}
    ).json()
    watcher = Watcher(lab.url)
    context, page = new_page(browser, lab, watcher)
    try:
        sign_in(page, lab, "admin", LAB_PASSWORD)
        expect(page.locator("h1")).to_have_text("Environments")
        page.goto(f"{lab.url}/environments/{lab.env_id}?hostname={item['hostname']}")
        row = page.locator(f"#credentials-body tr[data-id='{item['id']}']")
        expect(row.locator(".checkout-badges")).to_contain_text("Checked out by bob until")
        expect(row.locator("[data-action=reveal]")).to_have_count(0)  # bob's alone
        row.locator("[data-action=take-back]").click()
        confirm = page.get_by_role("dialog", name="Take back the check-out?")
        expect(confirm).to_contain_text("bob holds")
        assert axe_violations(page, "take back, confirm") == []
        confirm.get_by_role("button", name="Take back").click()
        expect(page.locator("#toasts")).to_contain_text(
            f"Took back the check-out of {item['hostname']}"
        )
        expect(row.locator("[data-action=checkout]")).to_be_visible()
        watcher.check()
    finally:
        context.close()
    ended = lab.get("/api/v1/checkouts", state="ended", credential_id=item["id"])["items"]
    assert [(c["id"], c["end_reason"], c["ended_by"]) for c in ended] == [
        (out["id"], "taken_back", "admin")
    ]
    _rotated(lab, lab.admin, item, old)
