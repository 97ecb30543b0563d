"""A real OpenID Provider (panva's oidc-provider, run by Node.js) on loopback, for tests of
"Sign in with OpenID Connect".

``start_oidc_provider`` writes a private CA and a server certificate, the client registration
and the accounts into a directory, starts ``tests/oidc/provider.mjs`` over HTTPS on 127.0.0.1
and returns once the discovery document answers::

    with start_oidc_provider(tmp_path, ["https://127.0.0.1:5000/oidc/callback"], {
        "alice": {"password": "pw", "email": "alice@example.test", "name": "Alice",
                  "groups": ["ops"]},
    }) as op:
        op.issuer, op.client_id, op.client_secret, op.ca_path  # what a client needs
        op.set_accounts({...})  # seen at the next sign-in

The provider's sign-in page has a form with the inputs ``login`` and ``password`` and a submit
button; a wrong password or an unknown user gives the form again with status 401. Consent is
automatic. Scopes: openid, profile (name, preferred_username), email (email, email_verified)
and groups (groups); the claims of the granted scopes are in the ID token and at userinfo.
``login_with_requests`` goes through that page with requests; a browser can fill it in too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from portal.simulator.certs import CA_FILE, generate_certificates

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
LOCK_FILE = OIDC_DIR / "package-lock.json"
NODE_MODULES = OIDC_DIR / "node_modules"
# Written into node_modules after a successful `npm ci`: the SHA-256 of the lock file it used.
INSTALL_STAMP = NODE_MODULES / ".installed-lock.sha256"
READY_LINE = re.compile(r"^oidc-provider ready (https://127\.0\.0\.1:\d+)$", re.MULTILINE)
DEFAULT_CLIENT_ID = "vcf-portal"
STDOUT_FILE = "provider-stdout.txt"
STDERR_FILE = "provider-stderr.txt"


class OidcProviderError(RuntimeError):
    """The provider could not be installed or started."""


class OidcLoginError(RuntimeError):
    """The sign-in at the provider did not lead back to the client's redirect URI."""

    def __init__(self, message: str, response: requests.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


def _lock_digest() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()


def _installed() -> bool:
    try:
        return INSTALL_STAMP.read_text(encoding="ascii").strip() == _lock_digest()
    except FileNotFoundError:
        return False


def node_missing() -> str | None:
    """Why the provider cannot run here, or None if it can: for a test's skip reason.

    It needs ``node``, and ``npm`` too unless tests/oidc/node_modules is installed already.
    """
    if shutil.which("node") is None:
        return "node (Node.js) not found on PATH"
    if shutil.which("npm") is None and not _installed():
        return "npm not found on PATH, and tests/oidc/node_modules is not installed"
    return None


def ensure_node_modules(timeout: float = 300) -> None:
    """Run ``npm ci`` in tests/oidc unless node_modules matches package-lock.json already.

    A file lock (one per checkout, in the temporary directory) keeps parallel test processes
    from installing at the same time; the others wait and then find the install done.
    """
    if _installed():
        return
    key = hashlib.sha256(str(OIDC_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"vcf-portal-oidc-npm-{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _installed():
                return
            npm = shutil.which("npm")
            if npm is None:
                raise OidcProviderError("npm not found on PATH: cannot install tests/oidc")
            try:
                result = subprocess.run(
                    [
                        npm,
                        "ci",
                        "--prefix",
                        str(OIDC_DIR),
                        "--prefer-offline",
                        "--ignore-scripts",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired as exc:
                raise OidcProviderError(f"npm ci in {OIDC_DIR} took over {timeout}s") from exc
            if result.returncode != 0:
                raise OidcProviderError(
                    f"npm ci in {OIDC_DIR} failed ({result.returncode}):\n"
                    f"{result.stdout}{result.stderr}"
                )
            INSTALL_STAMP.write_text(_lock_digest() + "\n", encoding="ascii")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that a reader sees either the old or the new file whole."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class OidcProvider:
    """A running provider: what a client needs to use it, and a way to change its accounts."""

    directory: Path
    issuer: str
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    token_endpoint_auth_method: str
    ca_path: Path
    accounts_path: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def ca_pem(self) -> str:
        """The PEM text of the CA that signed the provider's certificate."""
        return self.ca_path.read_text(encoding="ascii")

    @property
    def server_metadata_url(self) -> str:
        """The discovery document's URL (Authlib's ``server_metadata_url``)."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched over HTTPS verified against the CA."""
        return _get_json(self.server_metadata_url, self.ca_path)

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        """Replace the accounts; the provider reads them at its next account lookup.

        ``accounts`` maps each login name to ``{"password", "email", "name", "groups"}`` and
        optionally ``"email_verified"`` (default true), ``"preferred_username"`` (default the
        login name) and ``"sub"`` (default the login name).
        """
        _write_json_atomically(self.accounts_path, accounts)

    def output(self) -> str:
        """What the provider wrote to stdout and stderr so far."""
        return "".join(
            (self.directory / name).read_text(encoding="utf-8", errors="replace")
            for name in (STDOUT_FILE, STDERR_FILE)
        )

    def stop(self) -> None:
        """Stop the provider (closing its stdin ends it; a signal if it lingers)."""
        if self.process.poll() is None:
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        elif self.process.stdin:
            self.process.stdin.close()

    def __enter__(self) -> OidcProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _get_json(url: str, ca_path: Path, timeout: float = 5) -> dict[str, Any]:
    with requests.Session() as session:
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify; no proxies
        response = session.get(url, verify=str(ca_path), timeout=timeout)
        response.raise_for_status()
        return response.json()


def start_oidc_provider(
    directory: Path,
    redirect_uris: list[str],
    accounts: dict[str, dict[str, Any]],
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str | None = None,
    token_endpoint_auth_method: str = "client_secret_basic",
    post_logout_redirect_uris: list[str] | None = None,
    port: int = 0,
    timeout: float = 30,
) -> OidcProvider:
    """Start an OpenID Provider on https://127.0.0.1:PORT with one client and ``accounts``.

    Files go into ``directory`` (created if needed): the CA (``sim-ca.pem``), the server
    certificate and key, ``client.json``, ``accounts.json`` and the provider's output. Port 0
    (the default) lets the system pick a free port while the provider binds it, so parallel
    test processes never race for one. ``token_endpoint_auth_method`` is
    ``client_secret_basic`` or ``client_secret_post``. Raises OidcProviderError, with the
    provider's output, if it is not answering within ``timeout`` seconds.
    """
    if token_endpoint_auth_method not in ("client_secret_basic", "client_secret_post"):
        raise ValueError(f"unsupported token_endpoint_auth_method {token_endpoint_auth_method}")
    node = shutil.which("node")
    if node is None:
        raise OidcProviderError("node not found on PATH")
    ensure_node_modules()

    directory.mkdir(parents=True, exist_ok=True)
    # The simulator's certificate maker: a new CA, and a server certificate it signed.
    certs = generate_certificates(["127.0.0.1", "localhost"])
    cert_path, key_path = certs.write(directory)
    ca_path = directory / CA_FILE

    client_secret = client_secret or secrets.token_urlsafe(32)
    config_path = directory / "client.json"
    _write_json_atomically(
        config_path,
        {
            "client": {
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uris": list(redirect_uris),
                "post_logout_redirect_uris": list(post_logout_redirect_uris or []),
                "token_endpoint_auth_method": token_endpoint_auth_method,
            }
        },
    )
    accounts_path = directory / "accounts.json"
    _write_json_atomically(accounts_path, accounts)

    stdout_path = directory / STDOUT_FILE
    stderr_path = directory / STDERR_FILE
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [
                node,
                str(PROVIDER_SCRIPT),
                "--config",
                str(config_path),
                "--accounts",
                str(accounts_path),
                "--cert",
                str(cert_path),
                "--key",
                str(key_path),
                "--port",
                str(port),
                "--watch-stdin",
            ],
            cwd=OIDC_DIR,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
        )

    def fail(reason: str) -> OidcProviderError:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdin:
            process.stdin.close()
        output = stderr_path.read_text(encoding="utf-8", errors="replace").strip()
        return OidcProviderError(f"OpenID Provider {reason}; its stderr:\n{output or '(empty)'}")

    deadline = time.monotonic() + timeout
    issuer = None
    while issuer is None:
        match = READY_LINE.search(stdout_path.read_text(encoding="utf-8", errors="replace"))
        if match:
            issuer = match.group(1)
        elif process.poll() is not None:
            raise fail(f"exited with status {process.returncode} before it was ready")
        elif time.monotonic() > deadline:
            raise fail(f"printed no ready line within {timeout}s")
        else:
            time.sleep(0.05)

    provider = OidcProvider(
        directory=directory,
        issuer=issuer,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uris=list(redirect_uris),
        token_endpoint_auth_method=token_endpoint_auth_method,
        ca_path=ca_path,
        accounts_path=accounts_path,
        process=process,
    )
    while True:
        try:
            if provider.metadata().get("issuer") == issuer:
                return provider
            error: object = "an unexpected issuer"
        except (requests.RequestException, ValueError) as exc:
            error = exc
        if process.poll() is not None:
            raise fail(f"exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise fail(f"served no discovery document within {timeout}s (last: {error})")
        time.sleep(0.1)


@contextmanager
def oidc_provider(
    directory: Path, redirect_uris: list[str], accounts: dict[str, dict[str, Any]], **options: Any
) -> Iterator[OidcProvider]:
    """``start_oidc_provider`` as a context manager that stops the provider afterwards."""
    provider = start_oidc_provider(directory, redirect_uris, accounts, **options)
    try:
        yield provider
    finally:
        provider.stop()


class _Forms(HTMLParser):
    """The forms of a page: action, method and the inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.error = ""
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "action": values.get("action", ""),
                    "method": values.get("method", "get").lower(),
                    "inputs": {},
                    "types": {},
                }
            )
        elif tag in ("input", "button") and self.forms and values.get("name"):
            form = self.forms[-1]
            form["inputs"].setdefault(values["name"], values.get("value", ""))
            default = "submit" if tag == "button" else "text"
            form["types"].setdefault(values["name"], values.get("type", default).lower())
        if values.get("id") == "error":
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        self._in_error = False

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error += data


def _same_endpoint(url: str, target: str) -> bool:
    a, b = urlsplit(url), urlsplit(target)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)


def login_with_requests(
    session: requests.Session,
    authorize_url: str,
    username: str,
    password: str,
    verify: str | Path,
    *,
    max_steps: int = 12,
    timeout: float = 10,
) -> requests.Response:
    """Sign in at the provider from ``authorize_url`` and return the redirect to the client.

    Follows the provider's redirects, fills in the sign-in form (inputs ``login`` and
    ``password``) if the provider shows it (it does not while the session's cookies still
    hold a sign-in), submits a consent form if one comes, and returns the response whose
    ``Location`` is the client's ``redirect_uri`` (taken from ``authorize_url``) without
    requesting it. The response may carry ``code`` and ``state``, or an ``error``. Raises
    OidcLoginError if the sign-in is refused or the flow goes elsewhere.
    """
    verify = str(verify)
    query = parse_qs(urlsplit(authorize_url).query)
    redirect_uri = query.get("redirect_uri", [""])[0]
    if not redirect_uri:
        raise ValueError("authorize_url has no redirect_uri")
    response = session.get(authorize_url, allow_redirects=False, verify=verify, timeout=timeout)
    submitted_login = False
    for _ in range(max_steps):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if _same_endpoint(location, redirect_uri):
                return response
            response = session.get(location, allow_redirects=False, verify=verify, timeout=timeout)
            continue
        parser = _Forms()
        parser.feed(response.text)
        if response.status_code == 401 or (submitted_login and parser.error):
            raise OidcLoginError(
                f"sign-in refused for {username!r}: {parser.error.strip() or response.status_code}",
                response,
            )
        if response.status_code != 200 or not parser.forms:
            raise OidcLoginError(
                f"unexpected page at {response.url} ({response.status_code}): "
                f"{response.text[:500]}",
                response,
            )
        form = parser.forms[0]
        data = {
            name: value
            for name, value in form["inputs"].items()
            if form["types"].get(name) != "submit"
        }
        submits = [name for name, kind in form["types"].items() if kind == "submit"]
        if submits:  # the first named submit button, as a click on it would send
            data[submits[0]] = form["inputs"][submits[0]]
        if "login" in form["inputs"] and "password" in form["inputs"]:
            data.update(login=username, password=password)
            submitted_login = True
        action = urljoin(response.url, form["action"] or response.url)
        if form["method"] == "post":
            response = session.post(
                action, data=data, allow_redirects=False, verify=verify, timeout=timeout
            )
        else:
            response = session.get(
                action, params=data, allow_redirects=False, verify=verify, timeout=timeout
            )
    raise OidcLoginError(f"no redirect to {redirect_uri} after {max_steps} steps", response)
