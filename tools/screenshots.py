"""Screenshots of the main pages, light and dark, for the documentation.

Starts the portal (./start_https.sh) on a scratch data directory and the VCF simulator, signs
in, adds two environments (one healthy, from SDDC Manager and the VCF Installer; one failing),
syncs, and writes docs/screenshots/<page>-<light|dark>.png at 1280x800, and the dashboard (with
a search and a revealed password) and the environment page at 1366x768 (a laptop) and 390x844
(a phone): <page>-<1366|390>-<light|dark>.png. The healthy environment also reads VCF Operations
fleet management (two appliance accounts rotated since bring-up: stale installer copies, on
*Needs attention*), a global rule makes ESXi roots need approval and vCenter roots a
check-out, and a second operator has asked for an ESXi root (the admin's inbox).

    .venv/bin/python tools/screenshots.py [--out DIR] [--phone]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from portal.simulator import Simulator  # noqa: E402
from tests.support import endpoint_body, launch_chromium, running_portal  # noqa: E402

PASSWORD = "Screenshot-admin-passphrase"  # noqa: S105 - throwaway local instance
WRONG_PASSWORD = "expired-service-password"  # noqa: S105 - makes one environment fail
NIGHT_SHIFT_PASSWORD = "Night-shift-own-passphrase"  # noqa: S105 - the same
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# The sizes of the operator's screens (issue 12): a laptop and a phone.
SIZES = ({"width": 1366, "height": 768}, PHONE)
SEARCH = "m01-esx01"


def api(page, method: str, url: str, body=None):
    """Call the portal API from the signed-in page (cookie and CSRF header included)."""
    return page.evaluate(
        "async ([m, u, b]) => (await import('/static/js/portal.js'))"
        ".request(m, u, b === null ? undefined : b)",
        [method, url, body],
    )


def wait_idle(page, env_ids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        envs = api(page, "GET", "/api/v1/environments")["items"]
        busy = [
            e
            for e in envs
            if e["id"] in env_ids
            and any(
                (s or {}).get("active_run") or s.get("state") == "never"
                for s in e["status"].values()
            )
        ]
        if not busy:
            return
        time.sleep(0.5)
    raise RuntimeError("syncs did not finish")


def first_sign_in(page, url: str, username: str, given: str, own: str) -> None:
    """Sign in with the password an admin gave, and replace it as the portal asks."""
    page.goto(url + "/login")
    page.fill("#username", username)
    page.fill("#password", given)
    page.click("main button[type=submit]")
    page.fill("#current_password", given)
    page.fill("#new_password", own)
    page.fill("#confirm_password", own)
    page.click("main button[type=submit]")
    page.wait_for_url(url + "/")


def prepare(page, url: str, sim: Simulator) -> dict:
    """First sign-in, password change, environments, syncs and a few audited actions."""
    first_sign_in(page, url, "admin", "admin", PASSWORD)
    good = api(
        page,
        "POST",
        "/api/v1/environments",
        {
            "name": "sfo-m01",
            "description": "San Francisco management domain",
            "manager": endpoint_body(sim, sync_enabled=True, sync_interval_minutes=60),
            "installer": endpoint_body(
                sim, username=sim.installer_username, password=sim.installer_password
            ),
            "fleet": endpoint_body(
                sim,
                username=sim.installer_username,
                password=sim.installer_password,
                locker_password=sim.fleet_root_password,
            ),
        },
    )
    api(page, "POST", f"/api/v1/environments/{good['id']}/sync", {"source": "installer"})
    api(page, "POST", f"/api/v1/environments/{good['id']}/sync", {"source": "fleet"})
    bad = api(
        page,
        "POST",
        "/api/v1/environments",
        {
            "name": "lax-w01",
            "description": "Los Angeles workload domain",
            "manager": endpoint_body(
                sim, password=WRONG_PASSWORD, sync_enabled=True, sync_interval_minutes=30
            ),
        },
    )
    wait_idle(page, [good["id"], bad["id"]])
    sim.rotate(0.2)
    run = api(page, "POST", f"/api/v1/environments/{good['id']}/sync", {"source": "manager"})
    while api(page, "GET", f"/api/v1/sync-runs/{run['id']}")["state"] in ("queued", "running"):
        time.sleep(0.3)
    page_data = api(page, "GET", f"/api/v1/environments/{good['id']}/credentials?per_page=3")
    for item in page_data["items"]:
        api(page, "POST", f"/api/v1/credentials/{item['id']}/reveal", {"purpose": "reveal"})
    page.goto(url + "/users/")
    page.fill("#new-username", "night-shift")
    page.select_option("#new-role", "readonly")
    page.fill("#new-password", "Night-shift-passphrase")
    page.click("#add-user button[type=submit]")
    # Directory sign-in as an Active Directory site would fill it in. The LDAP settings stay
    # off and nothing signs in through either, so nothing is sent to these example hosts.
    api(page, "PUT", "/api/v1/settings/ldap", {
        "flavor": "active_directory",
        "urls": ["ldaps://dc1.corp.example.com", "ldaps://dc2.corp.example.com"],
        "bind_dn": "CN=svc-vcf-portal,OU=Service Accounts,DC=corp,DC=example,DC=com",
        "user_base": "OU=Staff,DC=corp,DC=example,DC=com",
        "group_base": "OU=Groups,DC=corp,DC=example,DC=com",
    })  # fmt: skip
    api(page, "PUT", "/api/v1/settings/oidc", {
        "display_name": "Corp SSO", "issuer": "https://sso.corp.example.com/realms/ops",
        "client_id": "vcf-credential-portal", "client_secret": "example-client-secret",
        "enabled": True,
    })  # fmt: skip
    api(page, "POST", "/api/v1/groups", {"name": "VCF-Operators", "source": "ldap"})
    api(page, "PUT", "/api/v1/policies", {"rules": [
        {"resource_type": "ESXI", "username": "root", "requires": ["approval"]},
        {"resource_type": "VCENTER", "username": "root", "requires": ["checkout"],
         "break_glass": False},
    ]})  # fmt: skip
    wait_idle(page, [good["id"], bad["id"]])
    return {"good": good["id"], "bad": bad["id"]}


def ask_for_access(browser, url: str, good: int) -> None:
    """The night shift signs in (and sets its own password), then asks for an ESXi root."""
    context = browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
    page = context.new_page()
    first_sign_in(page, url, "night-shift", "Night-shift-passphrase", NIGHT_SHIFT_PASSWORD)
    roots = api(
        page,
        "GET",
        f"/api/v1/environments/{good}/credentials?resource_type=ESXI&username=root&per_page=1",
    )["items"]
    api(page, "POST", f"/api/v1/credentials/{roots[0]['id']}/access-requests", {
        "reason": "P1 incident: host not responding after the patch window",
        "ticket": "INC-20417", "minutes": 30,
    })  # fmt: skip
    context.close()


def shoot(context, url: str, ids: dict, out: Path, scheme: str, viewport: dict) -> None:
    page = context.new_page()
    page.set_viewport_size(viewport)
    suffix = scheme if viewport == VIEWPORT else f"{scheme}-phone"
    shots = [
        ("dashboard", "/", "#environments .env-card"),
        ("environment", f"/environments/{ids['good']}", "#credentials-body tr"),
        ("environment-form", f"/environments/{ids['good']}/edit", "#envform"),
        ("scheduler", "/scheduler", "#jobs-body tr"),
        ("audit", "/audit/", "#audit-table"),
        ("users", "/users/", "#users-table"),
        ("settings-certificate", "/settings/certificate", "dl.kv"),
        ("settings-sign-in", "/settings/sign-in", "#ldap-urls"),
        ("settings-about", "/settings/about", "dl.kv"),
        ("settings-policies", "/settings/policies", "main form"),
        ("access-requests", "/access-requests", "#inbox table tbody tr"),
        ("attention", "/attention", "#attention-table tbody tr"),
    ]
    for name, path, ready in shots:
        page.goto(url + path)
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
        if name == "environment-form":
            page.wait_for_function("document.getElementById('name').value !== ''")
        if name == "environment":
            page.locator("#credentials-body tr [data-action=reveal]").first.click()
            page.wait_for_selector(".secret")
        page.screenshot(path=str(out / f"{name}-{suffix}.png"))
    page.close()


def shoot_sizes(context, url: str, ids: dict, out: Path, scheme: str) -> None:
    """The dashboard, with a search and a password revealed, and the environment page, at
    each of SIZES."""
    page = context.new_page()
    for size in SIZES:
        page.set_viewport_size(size)
        suffix = f"{size['width']}-{scheme}"
        page.goto(url + "/")
        page.wait_for_selector("#environments .env-card")
        page.fill("#global-search", SEARCH)
        page.wait_for_selector("#search-results tbody tr")
        page.locator("#search-results tbody tr [data-action=reveal]").first.click()
        page.wait_for_selector("#search-results .secret")
        page.evaluate("document.activeElement.blur()")
        page.screenshot(path=str(out / f"dashboard-{suffix}.png"))
        page.goto(url + f"/environments/{ids['good']}")
        page.wait_for_selector("#credentials-body tr[data-id]")
        page.wait_for_load_state("networkidle")
        page.locator("#credentials-body tr [data-action=reveal]").first.click()
        page.wait_for_selector(".secret")
        page.screenshot(path=str(out / f"environment-{suffix}.png"))
    page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--phone", action="store_true", help="also 390 px wide shots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="portal-shots-") as scratch,
        Simulator(credentials=400, seed=3) as sim,
        running_portal(Path(scratch), workers=2) as server,
        sync_playwright() as pw,
    ):
        browser = launch_chromium(pw)
        admin = browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
        page = admin.new_page()
        sim.fleet_rotate(2)
        ids = prepare(page, server.url, sim)
        ask_for_access(browser, server.url, ids["good"])
        state = admin.storage_state()
        for scheme in ("light", "dark"):
            anonymous = browser.new_context(
                ignore_https_errors=True, viewport=VIEWPORT, color_scheme=scheme
            )
            login = anonymous.new_page()
            login.goto(server.url + "/login")
            login.screenshot(path=str(args.out / f"sign-in-{scheme}.png"))
            anonymous.close()
            context = browser.new_context(
                ignore_https_errors=True,
                viewport=VIEWPORT,
                color_scheme=scheme,
                storage_state=state,
            )
            shoot(context, server.url, ids, args.out, scheme, VIEWPORT)
            shoot_sizes(context, server.url, ids, args.out, scheme)
            if args.phone:
                shoot(context, server.url, ids, args.out, scheme, PHONE)
            context.close()
        browser.close()
    print(f"screenshots written to {args.out}")


if __name__ == "__main__":
    main()
