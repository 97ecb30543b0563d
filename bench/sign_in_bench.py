"""Sign-in benchmark: from the submitted form (or the "Sign in with …" click) to the signed-in
dashboard, through the real portal (Gunicorn over HTTPS, 2 workers) on SQLite, for a local
account, an OpenLDAP user (LDAPS bind, groups read) and an OpenID Provider user (the whole
code flow with PKCE: portal, provider's sign-in form, callback, ID token checked).

Everything runs on loopback: slapd and oidc-provider are started here, as the tests do.
Prints the median and the slowest of each over `--rounds` sign-ins.

    .venv/bin/python bench/sign_in_bench.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402

from tests.ldap_server import start_slapd  # noqa: E402
from tests.oidc_server import login_with_requests, start_oidc_provider  # noqa: E402
from tests.support import (  # noqa: E402
    PortalServer,
    first_admin,
    ldap_settings_body,
    oidc_settings_body,
)

ADMIN_PASSWORD = "sign-in bench admin pass"  # noqa: S105 - a throwaway local instance
USER_PASSWORD = "Bench-user-pass-42"  # noqa: S105 - a throwaway account


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _form_sign_in(server: PortalServer, username: str, password: str) -> None:
    session = server.session()
    token = server.csrf(session, "/login")
    answer = session.post(
        server.url + "/login",
        data={"csrf_token": token, "username": username, "password": password},
        allow_redirects=True,
    )
    assert answer.status_code == 200 and answer.url == server.url + "/", answer.status_code


def _oidc_sign_in(server: PortalServer, ca_path: Path) -> None:
    session = server.session()
    started = session.get(server.url + "/login/oidc", allow_redirects=False)
    assert started.status_code == 302, started.text
    back = login_with_requests(
        requests.Session(), started.headers["Location"], "omar", USER_PASSWORD, ca_path
    )
    callback = urlsplit(back.headers["Location"])
    done = session.get(f"{server.url}{callback.path}?{callback.query}", allow_redirects=True)
    assert done.status_code == 200 and done.url == server.url + "/", done.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        server = PortalServer(work / "portal", 2, {}, None).start()
        slapd = start_slapd(work / "slapd")
        try:
            provider = start_oidc_provider(
                work / "op",
                [server.url + "/login/oidc/callback"],
                {"omar": {"password": USER_PASSWORD, "email": "omar@example.test",
                          "name": "Omar", "groups": ["ops"]}},
            )  # fmt: skip
            try:
                admin, token = first_admin(server, ADMIN_PASSWORD)
                slapd.add_user("lara", USER_PASSWORD)
                slapd.add_group("ops", ["lara"])
                headers = {"X-CSRFToken": token}
                for path, body in (
                    ("/api/v1/settings/ldap", ldap_settings_body(slapd)),
                    ("/api/v1/settings/oidc", oidc_settings_body(provider)),
                ):
                    saved = admin.put(server.url + path, json=body, headers=headers)
                    assert saved.status_code == 200, saved.text
                admin.post(
                    server.url + "/api/v1/groups",
                    json={"name": "ops", "source": "ldap"},
                    headers=headers,
                )
                cases = {
                    "local account (scrypt)": lambda: _form_sign_in(
                        server, "admin", ADMIN_PASSWORD
                    ),
                    "LDAP (LDAPS bind, groups)": lambda: _form_sign_in(
                        server, "lara", USER_PASSWORD
                    ),
                    "OpenID Connect (code flow)": lambda: _oidc_sign_in(server, provider.ca_path),
                }
                print(f"sign-in to the dashboard, {args.rounds} rounds each (ms)")
                print(f"{'kind':<30} {'median':>8} {'slowest':>8}")
                for name, action in cases.items():
                    action()  # warm: the account exists, discovery is cached
                    figures = [_timed(action) for _ in range(args.rounds)]
                    print(f"{name:<30} {statistics.median(figures):8.0f} {max(figures):8.0f}")
            finally:
                provider.stop()
        finally:
            slapd.stop()
            server.stop()


if __name__ == "__main__":
    main()
