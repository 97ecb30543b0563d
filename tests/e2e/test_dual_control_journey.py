"""Dual control through the running portal (Gunicorn over HTTPS) against the simulator:
a policy marks ESXi root sensitive; every path that shows a password refuses or withholds it
without approval (reveal, copy, a former value, an export, a token), audited; in real
Chromium the requester asks for access, the approver finds the request one click from the
top bar and approves it with the keyboard, the requester reveals; the window closes on
revoke; a break-glass window is closed by the scheduler's job, which marks the credential
rotation due. axe-core finds nothing on the new pages and dialog."""

from __future__ import annotations

import csv
import io
import time

import pytest
from support import CHROMIUM, LAB_PASSWORD, Lab, Watcher, new_page, running_portal, sign_in

from portal.simulator import Simulator

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
    pytest.mark.slow,
]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

REQUESTER = "olga"
REQUESTER_PASSWORD = "Olga-requester-passphrase-7"  # noqa: S105 - test password


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with (
        Simulator(credentials=40, seed=11) as sim,
        running_portal(tmp_path_factory.mktemp("dual-control"), workers=2) as server,
    ):
        lab = Lab(server, sim)
        made = lab.session.post(
            lab.url + "/users/",
            data={
                "csrf_token": lab.token,
                "username": REQUESTER,
                "role": "readonly",
                "password": REQUESTER_PASSWORD,
            },
            allow_redirects=False,
        )
        assert made.status_code in (200, 302), made.text
        lab.sql("UPDATE users SET must_change_password = 0 WHERE username = ?", REQUESTER)
        rules = {"rules": [{"resource_type": "ESXI", "username": "root", "requires": ["approval"]}]}
        answer = lab.session.put(
            f"{lab.url}/api/v1/environments/{lab.env_id}/policies",
            json=rules,
            headers={"X-CSRFToken": lab.token},
        )
        assert answer.status_code == 200, answer.text
        yield lab


def _requester(lab):
    session = lab.server.session()
    lab.server.login(session, REQUESTER, REQUESTER_PASSWORD)
    return session, lab.server.csrf(session, "/")


def _root(lab) -> dict:
    items = lab.get(
        f"/api/v1/environments/{lab.env_id}/credentials",
        resource_type="ESXI",
        username="root",
        source="manager",
    )["items"]
    assert items and items[0]["requires"] == ["approval"]
    return items[0]


def test_every_password_path_refuses_without_approval_and_is_audited(lab):
    session, token = _requester(lab)
    root = _root(lab)
    headers = {"X-CSRFToken": token}
    base = f"{lab.url}/api/v1/credentials/{root['id']}"
    for purpose in ("reveal", "copy"):
        refused = session.post(base + "/reveal", json={"purpose": purpose}, headers=headers)
        assert refused.status_code == 403 and refused.json()["details"]["needs"] == ["approval"]
    history = session.get(base + "/history").json()
    assert history["needs"] == ["approval"]
    former = session.post(f"{base}/history/{history['items'][0]['id']}/reveal", headers=headers)
    assert former.status_code == 403 and former.json()["details"]["needs"] == ["approval"]
    export = session.post(
        f"{lab.url}/api/v1/environments/{lab.env_id}/export",
        json={"format": "csv"},
        headers=headers,
    )
    assert export.status_code == 200 and int(export.headers["X-Passwords-Withheld"]) >= 1
    rows = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    withheld = [r for r in rows[1:] if r[-1]]
    assert withheld and all(r[2] == "root" and r[3] == "" for r in withheld)
    made = session.post(
        f"{lab.url}/api/v1/me/tokens",
        json={"name": "runbook", "scope": "reveal", "expires_in_days": 1},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    script = lab.server.session()
    by_token = script.post(
        base + "/reveal", headers={"Authorization": f"Bearer {made.json()['token']}"}
    )
    assert by_token.status_code == 403 and by_token.json()["details"]["needs"] == ["approval"]
    counts = dict(
        lab.sql(
            "SELECT action, COUNT(*) FROM audit_events WHERE actor = ? AND outcome = 'denied' "
            "GROUP BY action",
            REQUESTER,
        )
    )
    assert counts["credential.reveal.refused"] == 2  # the session and the token
    assert counts["credential.copy.refused"] == 1
    assert counts["credential.history_reveal.refused"] == 1
    assert counts["credential.export.withheld"] == 1


def _axe(page) -> list[str]:
    from pathlib import Path

    script = (Path(__file__).resolve().parent.parent / "vendor" / "axe.min.js").read_text()
    page.wait_for_load_state("load")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(script)
    return page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .flatMap((v) => v.nodes.map((n) => v.impact + " " + v.id + ": "
              + n.target.join(" ")))"""
    )


def test_requester_and_approver_in_the_browser(lab, browser):
    root = _root(lab)
    found: list[str] = []
    watcher = Watcher(lab.url)
    asker, page = new_page(browser, lab, watcher)
    approver, admin = new_page(browser, lab, watcher)
    try:
        sign_in(page, lab, REQUESTER, REQUESTER_PASSWORD)
        expect(page.locator("h1")).to_have_text("Environments")
        page.goto(f"{lab.url}/environments/{lab.env_id}?resource_type=ESXI&username=root")
        row = page.locator(f"#credentials-body tr[data-id='{root['id']}']")
        expect(row.locator(".control-badges")).to_contain_text("Needs approval")
        expect(row.locator("[data-action=reveal]")).to_have_count(0)
        ask = row.locator("[data-action=request]")
        ask.focus()
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Ask for access")
        expect(dialog).to_be_visible()
        expect(page.locator("#access-reason")).to_be_focused()
        found += [f"request dialog: {v}" for v in _axe(page)]
        page.keyboard.type("Replace a failed disk on the host")
        page.fill("#access-minutes", "20")
        page.fill("#access-ticket", "CHG-1001")
        page.locator("#access-ticket").press("Enter")
        expect(dialog).to_have_count(0)
        expect(page.locator("#toasts")).to_contain_text("Access requested")
        expect(row.locator(".control-badges")).to_contain_text("Requested")
        expect(
            page.locator(f"#credentials-body tr[data-id='{root['id']}'] [data-action=request]")
        ).to_be_focused()

        sign_in(admin, lab, "admin", LAB_PASSWORD)
        link = admin.locator("#inbox-link")
        expect(link).to_contain_text("1")
        link.click()
        expect(admin.locator("#inbox tbody tr")).to_have_count(1)
        expect(admin.locator("#requests-status")).to_have_text("1 request waits for your decision.")
        expect(admin.locator("#inbox")).to_contain_text("CHG-1001")
        found += [f"inbox: {v}" for v in _axe(admin)]
        approve = admin.locator("#inbox button[data-step=approve]")
        approve.focus()
        admin.keyboard.press("Enter")
        expect(admin.locator("#requests-status")).to_contain_text(
            f"Approved: the window is open for {REQUESTER}, 20 minutes."
        )
        expect(admin.locator("#open-windows tbody tr")).to_have_count(1)
        found += [f"inbox after approval: {v}" for v in _axe(admin)]

        page.reload()
        row = page.locator(f"#credentials-body tr[data-id='{root['id']}']")
        expect(row.locator(".control-badges")).to_contain_text("Access open")
        row.locator("[data-action=reveal]").click()
        expect(row.locator(".secret")).to_be_visible()
        page.goto(f"{lab.url}/access-requests")
        expect(page.locator("#mine tbody tr")).to_have_count(1)
        expect(page.locator("#mine")).to_contain_text("Approved")
        found += [f"requester's requests: {v}" for v in _axe(page)]

        # The approver revokes: the requester is refused again at once.
        admin.locator("#open-windows button[data-step=revoke]").click()
        expect(admin.locator("#requests-status")).to_contain_text("Ended:")
        session, token = _requester(lab)
        refused = session.post(
            f"{lab.url}/api/v1/credentials/{root['id']}/reveal",
            json={},
            headers={"X-CSRFToken": token},
        )
        assert refused.status_code == 403
        # Asked again, and denied with a reason typed in the dialog, by keyboard.
        again = session.post(
            f"{lab.url}/api/v1/credentials/{root['id']}/access-requests",
            json={"reason": "once more", "minutes": 10},
            headers={"X-CSRFToken": token},
        )
        assert again.status_code == 201, again.text
        admin.click("#requests-refresh")
        deny = admin.locator("#inbox button[data-step=deny]")
        deny.focus()
        admin.keyboard.press("Enter")
        expect(admin.locator("#deny-reason")).to_be_focused()
        found += [f"deny dialog: {v}" for v in _axe(admin)]
        admin.keyboard.type("Use the maintenance window")
        admin.get_by_role("button", name="Deny", exact=True).click()
        expect(admin.locator("#requests-status")).to_contain_text("Denied:")
        mine = session.get(f"{lab.url}/api/v1/access-requests?mine=true").json()["items"]
        assert mine[0]["state"] == "denied"
        assert mine[0]["decision_reason"] == "Use the maintenance window"
        watcher.check()
    finally:
        asker.close()
        approver.close()
    rows = lab.sql(
        "SELECT actor, details FROM audit_events WHERE action = 'access.approve' ORDER BY id"
    )
    assert rows and rows[-1][0] == "admin" and f'"requester": "{REQUESTER}"' in rows[-1][1]
    assert found == [], "\n".join(found)


def test_break_glass_is_closed_by_the_job_and_owes_a_rotation(lab):
    session, token = _requester(lab)
    root = _root(lab)
    opened = session.post(
        f"{lab.url}/api/v1/credentials/{root['id']}/access-requests",
        json={"reason": "outage, approvers unreachable", "minutes": 5, "break_glass": True},
        headers={"X-CSRFToken": token},
    )
    assert opened.status_code == 201, opened.text
    req = opened.json()
    assert req["kind"] == "break_glass" and req["open"]
    shown = session.post(
        f"{lab.url}/api/v1/credentials/{root['id']}/reveal",
        json={},
        headers={"X-CSRFToken": token},
    )
    assert shown.status_code == 200 and shown.json()["password"]
    alerted = lab.sql("SELECT details FROM notification_outbox WHERE kind = 'access.break_glass'")
    assert alerted and '"admin"' in alerted[0][0]
    # The window's time is up: the scheduler's job (every 30 s) closes it.
    lab.sql(
        "UPDATE access_requests SET closes_at = datetime('now', '-1 second') WHERE id = ?",
        req["id"],
    )
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        state = lab.sql("SELECT state, closed_reason FROM access_requests WHERE id = ?", req["id"])
        if state[0][0] == "closed":
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the break-glass window was not closed: {state}")
    due = lab.sql(
        "SELECT rotation_due_since, rotation_due_reason FROM credentials WHERE id = ?", root["id"]
    )
    assert due[0][0] is not None and due[0][1] == "break_glass"
    listed = lab.get(f"/api/v1/credentials/{root['id']}/history")
    assert listed["requires"] == ["approval"]
    item = lab.get(
        f"/api/v1/environments/{lab.env_id}/credentials", username="root", resource_type="ESXI"
    )["items"]
    assert any(i["id"] == root["id"] and i["rotation_due"] for i in item)
