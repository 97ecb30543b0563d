"""Second factor against the running portal (Gunicorn over HTTPS): an authenticator app end to
end with requests, and passkeys in the real headless Chromium with a virtual authenticator
(Chrome DevTools Protocol, WebAuthn domain).

Passkeys need a host name as relying party id (never an IP address), so the browser opens
https://localhost:<port>; Chromium maps localhost to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
import requests
from support import CHROMIUM, ROOT, Watcher, first_admin, launch_chromium, running_portal

ADMIN_PASSWORD = "Second-factor-admin-passphrase-1"  # noqa: S105 - test password
USER_PASSWORD = "Second-factor-user-passphrase-2"  # noqa: S105 - test password


def _change_password(server, session, old: str, new: str) -> None:
    token = server.csrf(session, "/change-password")
    changed = session.post(
        server.url + "/change-password",
        data={
            "csrf_token": token,
            "current_password": old,
            "new_password": new,
            "confirm_password": new,
        },
        allow_redirects=False,
    )
    assert changed.status_code == 302, changed.text


class Lab:
    """The running portal, its first admin signed in with a session."""

    def __init__(self, server):
        self.server = server
        self.url = server.url
        self.admin, self.token = first_admin(server, ADMIN_PASSWORD)

    def add_user(self, name: str) -> requests.Session:
        """Create a read-only user with USER_PASSWORD (first password changed): its session."""
        created = self.admin.post(
            self.url + "/users/",
            data={
                "csrf_token": self.token,
                "username": name,
                "role": "readonly",
                "password": "Temporary-user-passphrase-9",
            },
            allow_redirects=False,
        )
        assert created.status_code == 302, created.text
        session = self.server.session()
        assert self.server.login(session, name, "Temporary-user-passphrase-9").status_code == 302
        _change_password(self.server, session, "Temporary-user-passphrase-9", USER_PASSWORD)
        return session

    def api(self, session, method: str, path: str, **kwargs):
        token = self.server.csrf(session, "/account/security")
        return session.request(
            method, self.url + path, headers={"X-CSRFToken": token}, timeout=30, **kwargs
        )

    def verify(self, session, code: str):
        token = self.server.csrf(session, "/login/verify")
        return session.post(
            self.url + "/login/verify",
            data={"code": code, "csrf_token": token},
            allow_redirects=False,
        )

    def db_command(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.server.env}
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_portal(tmp_path_factory.mktemp("second-factor"), workers=2) as server:
        yield Lab(server)


def _code(secret: str, steps_ahead: int = 0) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=30 * steps_ahead)
    return pyotp.TOTP(secret).at(moment)


def test_authenticator_app_end_to_end(lab):
    carol = lab.add_user("carol")
    started = lab.api(carol, "POST", "/api/v1/me/second-factor/totp", json={"password": "x"})
    assert started.status_code == 403  # the password is needed
    started = lab.api(
        carol, "POST", "/api/v1/me/second-factor/totp", json={"password": USER_PASSWORD}
    )
    secret = started.json()["secret"]
    confirmed = lab.api(
        carol, "POST", "/api/v1/me/second-factor/totp/confirm", json={"code": _code(secret)}
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    lab.api(carol, "POST", "/logout")

    # Password, then code. The next step's code: the one that confirmed the app is used up.
    browser = lab.server.session()
    signed = lab.server.login(browser, "carol", USER_PASSWORD)
    assert signed.status_code == 302 and signed.headers["Location"].startswith("/login/verify")
    assert browser.get(lab.url + "/api/v1/me").status_code == 401  # nothing answers yet
    code = _code(secret, steps_ahead=1)
    done = lab.verify(browser, code)
    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert browser.get(lab.url + "/api/v1/me").json()["username"] == "carol"

    # The same code in another sign-in: refused (replay).
    replay = lab.server.session()
    lab.server.login(replay, "carol", USER_PASSWORD)
    assert lab.verify(replay, code).status_code == 401

    # A recovery code works once.
    recovered = lab.verify(replay, codes[0])
    assert recovered.status_code == 302
    page = replay.get(lab.url + "/").text
    assert "recovery code; 9 left" in page
    again = lab.server.session()
    lab.server.login(again, "carol", USER_PASSWORD)
    assert lab.verify(again, codes[0]).status_code == 401

    # Wrong codes lock the account (one was already counted just above).
    for _ in range(3):
        assert lab.verify(again, "000000").status_code == 401
    locked = lab.verify(again, "000000")
    assert locked.status_code == 302 and locked.headers["Location"].startswith("/login")
    assert lab.server.login(lab.server.session(), "carol", USER_PASSWORD).status_code == 401
    assert browser.get(lab.url + "/api/v1/me").status_code == 401  # her sessions ended

    # The command line resets the factors (and the lock) of a locked-out user.
    reset = lab.db_command("users", "reset-second-factor", "carol")
    assert reset.returncode == 0, reset.stderr
    back = lab.server.session()
    assert lab.server.login(back, "carol", USER_PASSWORD).headers["Location"] == "/"

    # Policy "everyone" (the admin who sets it has a factor): carol must enrol again before
    # anything else answers.
    admin_secret = lab.api(
        lab.admin, "POST", "/api/v1/me/second-factor/totp", json={"password": ADMIN_PASSWORD}
    ).json()["secret"]
    lab.api(
        lab.admin,
        "POST",
        "/api/v1/me/second-factor/totp/confirm",
        json={"code": _code(admin_secret)},
    )
    policy = lab.api(
        lab.admin,
        "PATCH",
        "/api/v1/settings/security",
        json={"require_second_factor": "everyone"},
    )
    assert policy.status_code == 200, policy.text
    try:
        home = back.get(lab.url + "/", allow_redirects=False)
        assert home.status_code == 302 and home.headers["Location"] == "/account/security"
        assert back.get(lab.url + "/api/v1/environments").status_code == 403
        secret = lab.api(
            back, "POST", "/api/v1/me/second-factor/totp", json={"password": USER_PASSWORD}
        ).json()["secret"]
        lab.api(back, "POST", "/api/v1/me/second-factor/totp/confirm", json={"code": _code(secret)})
        assert back.get(lab.url + "/", allow_redirects=False).status_code == 200
    finally:
        lab.api(
            lab.admin, "PATCH", "/api/v1/settings/security", json={"require_second_factor": "none"}
        )

    # An admin resets her factors on the Users page: no code is asked at her next sign-in.
    carol_id = lab.admin.get(lab.url + "/users/").text.split('action="/users/')
    carol_id = next(part.split("/")[0] for part in carol_id if "reset-second-factor" in part)
    reset = lab.admin.post(
        lab.url + f"/users/{carol_id}/reset-second-factor",
        data={"csrf_token": lab.token},
        allow_redirects=False,
    )
    assert reset.status_code == 302
    fresh = lab.server.session()
    assert lab.server.login(fresh, "carol", USER_PASSWORD).headers["Location"] == "/"


# --- passkeys in the browser ------------------------------------------------------------------

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_passkey_register_sign_in_and_remove_in_chromium(lab):
    lab.add_user("erin")
    origin = f"https://localhost:{lab.server.port}"
    watcher = Watcher(origin)
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.set_default_timeout(20000)
            watcher.attach(page)
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "usb",
                        "hasResidentKey": False,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )

            def sign_in_password():
                page.goto(origin + "/login")
                page.fill("#username", "erin")
                page.fill("#password", USER_PASSWORD)
                page.click("main button[type=submit]")

            sign_in_password()
            expect(page.locator("h1")).to_have_text("Environments")
            page.goto(origin + "/account/security")
            page.fill("#passkey-name", "Virtual key")
            page.fill("#password-passkey-new", USER_PASSWORD)
            page.click("#passkey-register button[type=submit]")
            codes = page.locator("#recovery-codes li")
            expect(codes).to_have_count(10)  # the first factor: recovery codes, shown once
            page.click("text=I have saved them")
            expect(page.locator("#passkeys-table")).to_contain_text("Virtual key")
            expect(page.locator("#passkeys-table")).to_contain_text("never")

            page.click("header button:has-text('Sign out')")
            sign_in_password()
            expect(page.locator("h1")).to_have_text("Second factor")
            page.click("#passkey-sign-in")
            expect(page.locator("h1")).to_have_text("Environments")

            page.goto(origin + "/account/security")
            row = page.locator("#passkeys-table tbody tr")
            expect(row).to_have_count(1)
            expect(row).not_to_contain_text("never")  # last use shown
            row.locator("input[type=password]").fill(USER_PASSWORD)
            row.locator("button:has-text('Remove Virtual key')").click()
            expect(page.locator("#passkeys-table")).to_have_count(0)
            expect(page.locator("main")).to_contain_text("Passkey Virtual key removed")

            page.click("header button:has-text('Sign out')")
            sign_in_password()
            expect(page.locator("h1")).to_have_text("Environments")  # no second step now
            watcher.check()
        finally:
            browser.close()
