"""HTTP transports of VCF Operations fleet management (portal/vcf/fleet.py): VCF Operations'
OpsToken exchanged for the fleet token (9.1), and HTTP Basic for the locker (9.0 and 9.1).
Both keep the shared transport's TLS trust, retries and failure classes."""

from __future__ import annotations

import base64
import time
from typing import Any

import requests

from ._http import ApiTransport, token_lifetime
from .failures import bad_credentials
from .models import EndpointSettings, VcfError

ACQUIRE_PATH = "/suite-api/api/auth/token/acquire"
EXCHANGE_PATH = "/suite-api/api/auth/token/exchange"


class OpsTransport(ApiTransport):
    """VCF Operations: an OpsToken from token/acquire, exchanged for the fleet Bearer token."""

    product = "VCF Operations"

    def __init__(self, settings: EndpointSettings, session: requests.Session | None) -> None:
        super().__init__("fleet", settings, session)
        self.auth_sources = ["localItem", "local"]

    def _ensure_token(self) -> None:
        if self._access_token is None or time.monotonic() >= self._renew_at:
            self._login()

    def _login(self) -> None:
        self._access_token = None
        self.auth_scheme = "Bearer"
        ops_token, lifetime = self._acquire()
        exchanged = self._send(
            "POST",
            EXCHANGE_PATH,
            json_body={"serviceKeys": ["fleet-lcm"]},
            auth=True,
            retry=False,
            token=ops_token,
            scheme="OpsToken",
        )
        if exchanged.status_code in (404, 405, 501):
            # No exchange offered: the OpsToken itself is what the fleet paths take.
            self.auth_scheme = "OpsToken"
            self._access_token = ops_token
            self._renew_at = time.monotonic() + lifetime - 120.0
            return
        if not 200 <= exchanged.status_code < 300:
            # The OpsToken is not yet the transport's own token: masked by name.
            raise self._status_error(exchanged, "POST", EXCHANGE_PATH, secrets=(ops_token,))
        body = self._json(exchanged, "POST", EXCHANGE_PATH)
        token = token_in(body, ("token", "accessToken", "access_token"))
        if token is None:
            raise VcfError("malformed", "the token exchange answer holds no token")
        self._set_access_token(token)

    def _acquire(self) -> tuple[str, float]:
        """Log in to VCF Operations; VcfError not_found where it is not VCF Operations."""
        response = None
        for auth_source in list(self.auth_sources):
            body = {
                "username": self.settings.username,
                "password": self.settings.password,
                "authSource": auth_source,
            }
            response = self._send("POST", ACQUIRE_PATH, json_body=body, auth=False, retry=True)
            if response.status_code != 401:
                # Remembered: the next login starts with the source that answered.
                self.auth_sources.sort(key=lambda s: s != auth_source)
                break
        assert response is not None  # noqa: S101 - the loop runs at least once
        if response.status_code in (400, 401, 403):
            raise bad_credentials(self.settings, " (VCF Operations)")
        if not 200 <= response.status_code < 300:
            raise self._status_error(response, "POST", ACQUIRE_PATH)
        body = self._json(response, "POST", ACQUIRE_PATH)
        token = token_in(body, ("token",))
        if token is None:
            raise VcfError("malformed", "the VCF Operations token answer holds no token")
        validity = body.get("validity") if isinstance(body, dict) else None
        lifetime = 30 * 60.0
        if isinstance(validity, (int, float)) and not isinstance(validity, bool):
            lifetime = max(60.0, min(validity / 1000 - time.time(), 6 * 3600.0))
        return token, lifetime

    def _set_access_token(self, token: str) -> None:
        self._access_token = token
        self._renew_at = time.monotonic() + token_lifetime(token) - 120.0


class BasicTransport(ApiTransport):
    """The fleet management locker: HTTP Basic with the endpoint's account on every call."""

    product = "the fleet management locker"

    def __init__(self, settings: EndpointSettings, session: requests.Session | None) -> None:
        super().__init__("fleet", settings, session)
        self.auth_scheme = "Basic"

    def _ensure_token(self) -> None:
        if self._access_token is None:
            self._login()

    def _login(self) -> None:
        pair = f"{self.settings.username}:{self.settings.password}".encode()
        self._access_token = base64.b64encode(pair).decode("ascii")

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return super().request_json(method, path, **kwargs)
        except VcfError as exc:
            if exc.kind == "auth" and exc.status == 401:
                raise bad_credentials(self.settings, " (fleet management locker)") from None
            raise


def token_in(body: Any, names: tuple[str, ...]) -> str | None:
    """The first of `names` in a JSON object that holds a plausible token."""
    if not isinstance(body, dict):
        return None
    for name in names:
        value = body.get(name)
        if isinstance(value, str) and value and len(value) < 65536 and value.isprintable():
            if not any(ch.isspace() for ch in value):
                return value
    return None
