"""HTTP transport shared by both clients: TLS modes, retries, tokens and error mapping.

Nothing here logs or raises a body, a token, a password or an Authorization header. Text
taken from a server (error messages) is stripped of control characters, truncated and has
any known secret masked before it reaches an exception or a log line.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import warnings
from typing import Any, TypeGuard

import requests
import urllib3

from . import failures
from .failures import MAX_SERVER_TEXT, clean_text
from .models import EndpointSettings, VcfError
from .tls import (
    EndpointTlsAdapter,
    build_ca_context,
    fetch_certificate_sha256,
    normalize_fingerprint,
)

log = logging.getLogger("portal.vcf")

TOKENS_PATH = "/v1/tokens"
REFRESH_PATH = "/v1/tokens/access-token/refresh"
# PowerVCF renews when less than two minutes are left; so do we.
RENEW_MARGIN_S = 120.0
# Used when the access token is not a decodable JWT: terraform-provider-vcf logs in again
# every 20 minutes for the same reason.
UNKNOWN_LIFETIME_S = 20 * 60.0
MAX_BODY_BYTES = 64 * 1024 * 1024


def decode_jwt_claims(token: str) -> dict[str, Any] | None:
    """Return the claims of a JWT without verifying it, or None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def token_lifetime(token: str, now: float | None = None) -> float:
    """Seconds an access token stays valid, judged from its ``exp`` (and ``iat``) claims."""
    claims = decode_jwt_claims(token) or {}
    exp, iat = claims.get("exp"), claims.get("iat")
    if _is_number(exp) and _is_number(iat) and exp > iat:
        # exp - iat is immune to clock skew between us and the appliance.
        return float(exp - iat)
    if _is_number(exp):
        return float(exp) - (time.time() if now is None else now)
    return UNKNOWN_LIFETIME_S


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ApiTransport:
    """Authenticated JSON requests against one endpoint.

    get_json() may be called from several threads at once when `may_overlap` is true: the
    tokens are renewed under a lock, and the connection pool is shared.
    """

    # How the token is sent: "Authorization: <scheme> <token>" (fleet management's transports
    # use OpsToken and Basic).
    auth_scheme = "Bearer"
    # Who answers, in error messages (the fleet transports name VCF Operations or the locker).
    product = ""

    def __init__(
        self, source: str, settings: EndpointSettings, session: requests.Session | None
    ) -> None:
        self.source = source
        self.settings = settings
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        if self._owns_session:
            # Only the per-endpoint TLS settings apply: no REQUESTS_CA_BUNDLE, no proxies
            # or netrc credentials picked up from the service's environment.
            self._session.trust_env = False
        self._pin_hex: str | None = None
        self._verify: bool = settings.verify_tls
        try:
            self._configure_tls()
        except VcfError:
            self.close()
            raise
        self._access_token: str | None = None
        self._refresh_id: str | None = None
        self._token_lock = threading.Lock()
        self._renew_at = 0.0
        self.last_certificate_sha256: str | None = None

    def _configure_tls(self) -> None:
        settings = self.settings
        if settings.pinned_sha256:
            try:
                self._pin_hex = normalize_fingerprint(settings.pinned_sha256)
            except ValueError:
                raise VcfError("tls", "the pinned certificate fingerprint is not valid") from None
            self._session.mount("https://", EndpointTlsAdapter(pin_hex=self._pin_hex))
            self._verify = False
        elif settings.ca_pem and settings.verify_tls:
            context = build_ca_context(settings.ca_pem)
            self._session.mount("https://", EndpointTlsAdapter(ssl_context=context))
            self._verify = True

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Forget the tokens and close the connection pool."""
        self._access_token = None
        self._refresh_id = None
        if self._owns_session:
            self._session.close()

    # -- public helpers ----------------------------------------------------------------

    @property
    def may_overlap(self) -> bool:
        """True when get_json() may run in several threads at once: not with verification
        off, whose warning filter (warnings.catch_warnings) is process-wide state."""
        return self._verify or self._pin_hex is not None

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET an authenticated path and return its decoded JSON body."""
        return self.request_json("GET", path, params=params)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        secrets: tuple[str, ...] = (),
    ) -> Any:
        """Send an authenticated request and return its decoded JSON body (None if empty).

        Only GET is retried after a 5xx or a broken connection: a PATCH, POST or DELETE may
        have been carried out already, and rotating a password twice is not harmless.
        ``secrets`` (passwords in the body) are masked in any message made from the answer.
        """
        retry = method == "GET"
        with self._token_lock:
            self._ensure_token()
            token = self._access_token
        send = {"params": params, "json_body": json_body, "auth": True, "retry": retry}
        response = self._send(method, path, token=token, **send)
        if response.status_code == 401:
            # The token can be revoked or expire server-side before our estimate: one fresh
            # login (unless another thread made one since), then give up. A 401 means the
            # request was not carried out, so sending it again is safe for every method.
            with self._token_lock:
                if self._access_token == token:
                    log.warning("%s %s: access token rejected, logging in again", self.source, path)
                    self._login()
                token = self._access_token
            response = self._send(method, path, token=token, **send)
            if response.status_code == 401:
                raise self._status_error(response, method, path, after_relogin=True)
        if not 200 <= response.status_code < 300:
            raise self._status_error(response, method, path, secrets=secrets)
        if method != "GET" and not self._body(response).strip():
            return None
        return self._json(response, method, path)

    # -- tokens ------------------------------------------------------------------------

    def _ensure_token(self) -> None:
        if self._access_token is None:
            self._login()
            return
        if time.monotonic() < self._renew_at:
            return
        if self._refresh_id:
            try:
                self._refresh()
                return
            except VcfError as exc:
                log.info("%s: token refresh failed (%s); logging in again", self.source, exc.kind)
        self._login()

    def _login(self) -> None:
        self._access_token = None
        body = {"username": self.settings.username, "password": self.settings.password}
        response = self._send("POST", TOKENS_PATH, json_body=body, auth=False, retry=True)
        if response.status_code in (400, 401, 403):
            log.warning("%s: login refused: HTTP %d", self.source, response.status_code)
            suffix = "" if response.status_code == 401 else f" (HTTP {response.status_code})"
            raise failures.bad_credentials(self.settings, suffix)
        if not 200 <= response.status_code < 300:
            raise self._status_error(response, "POST", TOKENS_PATH)
        pair = self._json(response, "POST", TOKENS_PATH)
        access = pair.get("accessToken") if isinstance(pair, dict) else None
        if not isinstance(access, str) or not _looks_like_token(access):
            raise VcfError("malformed", "the token response holds no access token")
        refresh = pair.get("refreshToken")
        refresh_id = refresh.get("id") if isinstance(refresh, dict) else refresh
        self._refresh_id = refresh_id if isinstance(refresh_id, str) and refresh_id else None
        self._set_access_token(access)
        log.debug("%s: logged in", self.source)

    def _refresh(self) -> None:
        assert self._refresh_id is not None  # noqa: S101 - guarded by the caller
        # The Go SDK sends the id JSON-quoted, PowerVCF sends it bare; real servers accept
        # the quoted form, which is also what the spec's "type: string" body means.
        response = self._send(
            "PATCH",
            REFRESH_PATH,
            data=json.dumps(self._refresh_id).encode(),
            auth=False,
            retry=False,
        )
        if not 200 <= response.status_code < 300:
            raise self._status_error(response, "PATCH", REFRESH_PATH)
        text = self._body(response).decode("utf-8", "replace").strip()
        try:
            value = json.loads(text)
        except ValueError:
            value = text.strip('"')
        if isinstance(value, dict):
            value = value.get("accessToken")
        if not isinstance(value, str) or not _looks_like_token(value):
            raise VcfError("malformed", "the token refresh response holds no access token")
        self._set_access_token(value)
        log.debug("%s: access token refreshed", self.source)

    def _set_access_token(self, token: str) -> None:
        self._access_token = token
        self._renew_at = time.monotonic() + token_lifetime(token) - RENEW_MARGIN_S

    # -- transport ---------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        auth: bool,
        retry: bool,
        token: str | None = None,
        scheme: str | None = None,
    ) -> requests.Response:
        settings = self.settings
        headers = {"Accept": "application/json"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        token = token if token is not None else self._access_token
        if auth and token:
            headers["Authorization"] = f"{scheme or self.auth_scheme} {token}"
        url = settings.base_url + path
        attempts = 1 + (settings.retries if retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            started = time.monotonic()
            try:
                response = self._request(method, url, params, data, headers)
            except requests.RequestException as exc:
                error = self._transport_error(exc)
                log.warning(
                    "%s %s %s failed (%s) after %.0f ms",
                    self.source,
                    method,
                    path,
                    error.kind,
                    (time.monotonic() - started) * 1000,
                )
                if error.kind == "connection" and not last:
                    self._backoff(attempt)
                    continue
                raise error from None
            log.debug(
                "%s %s %s -> %d in %.0f ms",
                self.source,
                method,
                path,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            if response.status_code >= 500 and not last:
                log.warning(
                    "%s %s %s -> HTTP %d, retrying",
                    self.source,
                    method,
                    path,
                    response.status_code,
                )
                self._backoff(attempt)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        data: bytes | None,
        headers: dict[str, str],
    ) -> requests.Response:
        settings = self.settings
        kwargs: dict[str, Any] = {
            "params": params,
            "data": data,
            "headers": headers,
            "timeout": (settings.connect_timeout, settings.read_timeout),
            "verify": self._verify,
            # A redirect would carry the bearer token elsewhere; no appliance redirects /v1.
            "allow_redirects": False,
            "stream": True,
        }
        with warnings.catch_warnings():
            if not self._verify and not self._pin_hex:
                # verify_tls=False is an explicit operator choice for this endpoint only, so
                # the warning is silenced here rather than process-wide. catch_warnings is
                # not thread-safe; the worst a race can do is let one warning be printed.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response = self._session.request(method, url, **kwargs)
            try:
                response._content = self._read_limited(response)
                response._content_consumed = True
            finally:
                response.close()
        return response

    @staticmethod
    def _read_limited(response: requests.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise VcfError("malformed", "response body exceeds 64 MiB")
            chunks.append(chunk)
        return b"".join(chunks)

    def _backoff(self, attempt: int) -> None:
        delay = self.settings.retry_backoff * (2**attempt)
        if delay > 0:
            time.sleep(delay)

    def _seen_fingerprint(self) -> str | None:
        try:
            seen = fetch_certificate_sha256(
                self.settings.host, self.settings.port, self.settings.connect_timeout
            )
        except VcfError:
            return None
        self.last_certificate_sha256 = seen
        return seen

    # -- error mapping (portal/vcf/failures.py) ---------------------------------------

    def _transport_error(self, exc: requests.RequestException) -> VcfError:
        return failures.transport_error(exc, self.settings, self._tls_error)

    def _tls_error(self, chain: list[BaseException]) -> VcfError:
        return failures.tls_error(chain, self.settings, self._pin_hex, self._seen_fingerprint())

    def _status_error(
        self,
        response: requests.Response,
        method: str,
        path: str,
        after_relogin: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> VcfError:
        log.warning("%s %s %s failed: HTTP %d", self.source, method, path, response.status_code)
        product = self.product or ("VCF Installer" if self.source == "installer" else "")
        return failures.status_error(
            response,
            method,
            path,
            self.settings,
            self._own_secrets(secrets),
            after_relogin,
            product or failures.MANAGER,
        )

    def _own_secrets(self, secrets: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The secrets a server could echo back: ours and the caller's."""
        return tuple(
            s for s in (self.settings.password, self._access_token, self._refresh_id, *secrets) if s
        )

    def safe_text(
        self, text: str, limit: int = MAX_SERVER_TEXT, secrets: tuple[str, ...] = ()
    ) -> str:
        """Server text for a message: secrets masked, cleaned, truncated."""
        return failures.safe_text(text, limit, self._own_secrets(secrets))

    def mask(self, text: str, secrets: tuple[str, ...] = ()) -> str:
        """``text`` with our own secrets and ``secrets`` replaced by ``***``."""
        return failures.mask(text, self._own_secrets(secrets))

    def _json(self, response: requests.Response, method: str, path: str) -> Any:
        try:
            return json.loads(self._body(response))
        except (ValueError, UnicodeError):
            raise VcfError(
                "malformed", f"{method} {clean_text(path, 160)} returned invalid JSON"
            ) from None

    @staticmethod
    def _body(response: requests.Response) -> bytes:
        return response.content or b""


def _looks_like_token(value: str) -> bool:
    return bool(value) and len(value) < 65536 and not any(ch.isspace() for ch in value)
