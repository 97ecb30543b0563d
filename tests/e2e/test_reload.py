"""A new certificate applied by a graceful reload of the real Gunicorn: the scheduler and the
signed-in sessions carry on."""

from __future__ import annotations

import ssl
import time

import requests
from support import running_portal

from portal.platform.locks import scheduler_lock_holder as lock_holder

ADMIN_PASSWORD = "reload test admin pass"  # noqa: S105


def _served_certificate(port: int) -> str:
    return ssl.get_server_certificate(("127.0.0.1", port))


def _get_after_reload(session, url: str):
    # While the old workers finish, a new connection can still reach one that is closing its
    # listener; a client retries such a connection, as browsers do.
    deadline = time.monotonic() + 15
    while True:
        try:
            return session.get(url, allow_redirects=False)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_certificate_change_reloads_gracefully(tmp_path):
    env = {"PORTAL_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with running_portal(tmp_path, workers=2, env=env) as server:
        session = server.session()  # trusts the file ssl/cert.pem, re-read per connection
        assert server.login(session, "admin", ADMIN_PASSWORD).status_code == 302
        scheduler_pid = lock_holder(tmp_path / "data")
        assert scheduler_pid is not None
        before = _served_certificate(server.port)
        token = server.csrf(session, "/settings/certificate")
        response = session.post(
            server.url + "/settings/certificate/self-signed",
            data={"csrf_token": token},
            allow_redirects=False,
        )
        assert response.status_code == 302
        session.close()  # drop kept-alive connections made under the old certificate
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _served_certificate(server.port) == before:
            time.sleep(0.3)
        after = _served_certificate(server.port)
        assert after != before
        assert after.strip() == (tmp_path / "ssl" / "cert.pem").read_text().strip()
        # the same session cookie still works, and the scheduler never moved
        assert _get_after_reload(session, server.url + "/").status_code == 200
        assert lock_holder(tmp_path / "data") == scheduler_pid
        assert list((tmp_path / "ssl").glob("backup-*/cert.pem"))
