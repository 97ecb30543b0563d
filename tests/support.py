"""Shared test helpers: apps on real SQLite files, a browser-like client, environments synced
from the simulator, and real servers (./start_https.sh, Gunicorn over HTTPS) on loopback.

Used by the tests (through conftest.py) and by tools/screenshots.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jinja2
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask_sqlalchemy.session import Session as FlaskSession
from werkzeug.routing import Rule

from portal import create_app, sync
from portal.models import User
from portal.ops.bootstrap import initialize
from portal.platform.config import load_settings
from portal.platform.extensions import db
from portal.vcf import FetchedCredential

BASE_URL = "https://localhost"
# The browser of the browser tests and tools/screenshots.py: the system Chromium, quiet and
# offline (no updates, sync or background requests), without the sandbox containers lack.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# The keys every node of one database shares (README, "Running several nodes").
KEY_FILES = ("data.key", "audit.key", "audit-signing.key")
PASSWORD = "correct horse battery"  # noqa: S105 - test fixture password
FAST_HASH = "pbkdf2:sha256:1000"


# Settings that change what the start-up writes to a new database: with any of them the
# database is made from scratch; without, from this process's migrated copy (much faster).
_FRESH_START = ("DATABASE_URL", "PORTAL_ADMIN_PASSWORD", "PORTAL_DATA_DIR")
_template: dict[str, Path] = {}


def _prepared_data(tmp_path) -> None:
    """Give `tmp_path/data` a database already migrated and seeded, with its keys: a copy of
    one made once in this process (each test still has its own files)."""
    data = tmp_path / "data"
    if data.exists():
        return  # a restart on the same directory: it keeps what it has
    if "dir" not in _template:
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="portal-template-"))
        app = _build_app(base, {})
        with app.app_context():
            from portal.platform.extensions import db

            db.engine.dispose()  # the last connection closes: SQLite folds its WAL in
        _template["dir"] = base / "data"
    shutil.copytree(_template["dir"], data)


def make_app(tmp_path, **env):
    """A fully initialised portal on its own data directory."""
    if not any(name in env for name in _FRESH_START):
        _prepared_data(tmp_path)
    return _build_app(tmp_path, env)


class _CompiledTemplates(jinja2.BytecodeCache):
    """Templates compiled once per test process and shared by its portals (a bucket's key is
    the template's name and a checksum of its source, so a changed template compiles anew)."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        compiled = self._compiled.get(bucket.key)
        if compiled is not None:
            bucket.bytecode_from_string(compiled)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()


_COMPILED_TEMPLATES = _CompiledTemplates()


def _compile_url_builders_once() -> None:
    """Each new portal compiles a URL builder per route (Python code made through `ast`),
    most of the cost of a test's portal. A builder is a plain function of its rule's text,
    parts, defaults and kind, so this process compiles each once and the next portals share
    it. Without werkzeug's method (another version), every portal compiles its own."""
    compile_builder = getattr(Rule, "_compile_builder", None)
    if compile_builder is None or getattr(compile_builder, "shared", False):
        return
    compiled: dict[tuple, object] = {}

    def compile_once(self, append_unknown: bool = True):
        key = (
            self.rule,
            self.host,
            self.subdomain,
            tuple(self._trace),
            repr(sorted((self.defaults or {}).items())),
            append_unknown,
        )
        if key not in compiled:
            compiled[key] = compile_builder(self, append_unknown)
        return compiled[key]

    compile_once.shared = True  # type: ignore[attr-defined]
    Rule._compile_builder = compile_once  # type: ignore[method-assign]


_compile_url_builders_once()


def _build_app(tmp_path, env):
    environ = {
        "PORTAL_DATA_DIR": str(tmp_path / "data"),
        "PORTAL_LOG_DIR": str(tmp_path / "logs"),
        "PORTAL_SSL_DIR": str(tmp_path / "ssl"),
        "PORTAL_SCHEDULER": "off",
        **env,
    }
    # Retries keep their number, not their wait: a failing sync is retried in milliseconds.
    test_config = {"TESTING": True, "PASSWORD_HASH_METHOD": FAST_HASH, "VCF_RETRY_BACKOFF": 0.01}
    app = create_app(test_config, load_settings(environ))
    app.jinja_env.bytecode_cache = _COMPILED_TEMPLATES
    initialize(app)
    return app


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@dataclass
class Portal:
    """A browser-like test client: HTTPS base URL, same-origin Referer, CSRF-aware."""

    client: object
    _token: str = ""
    _token_session: str | None = None

    def csrf(self) -> str:
        for path in ("/login", "/change-password", "/preferences", "/account/security"):
            match = CSRF_META.search(self.client.get(path).get_data(as_text=True))
            if match is not None:
                return match.group(1)
        raise AssertionError("no page gave a CSRF token")

    def login(self, username: str, password: str = PASSWORD, **extra):
        token = self.csrf()
        data = {"username": username, "password": password, "csrf_token": token, **extra}
        return self.client.post("/login", data=data)

    def post(self, url: str, data: dict | None = None, **kwargs):
        data = {"csrf_token": self.csrf_token_for_session(), **(data or {})}
        return self.client.post(url, data=data, **kwargs)

    def csrf_token_for_session(self) -> str:
        """The CSRF token of the current session; read from a page once per session cookie."""
        cookie = self.client.get_cookie("portal_session")
        key = cookie.value if cookie is not None else None
        if key is not None and key == self._token_session:
            return self._token
        match = None
        for page in ("/change-password", "/preferences", "/account/security", "/login"):
            match = CSRF_META.search(self.client.get(page).get_data(as_text=True))
            if match is not None:
                break
        cookie = self.client.get_cookie("portal_session")
        self._token_session = cookie.value if cookie is not None else None
        self._token = match.group(1)
        return self._token

    def api(self, method: str, url: str, json=None, **kwargs):
        headers = {"X-CSRFToken": self.csrf_token_for_session(), **kwargs.pop("headers", {})}
        return self.client.open(url, method=method, json=json, headers=headers, **kwargs)


def client_for(app):
    """A test client that looks like a browser on https://localhost."""
    client = app.test_client()
    client.environ_base.update(
        {"wsgi.url_scheme": "https", "HTTP_HOST": "localhost", "HTTP_REFERER": BASE_URL + "/"}
    )
    return client


def launch_chromium(playwright):
    """Start the system Chromium with the shared settings (a Playwright `Browser`)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))


def endpoint_body(sim, **extra):
    """An endpoint of the simulator `sim`, trusting its CA; `extra` adds or overrides fields."""
    return {
        "host": sim.host,
        "port": sim.port,
        "username": sim.admin_username,
        "password": sim.admin_password,
        "ca_pem": sim.ca_pem,
        **extra,
    }


def sim_settings(sim, **overrides):
    """VCF client settings for the simulator `sim`, trusting its CA, with fast retries."""
    from portal.vcf import EndpointSettings

    values = {
        "host": "127.0.0.1",
        "port": sim.port,
        "username": sim.admin_username,
        "password": sim.admin_password,
        "ca_pem": sim.ca_pem,
        "retry_backoff": 0.01,
        "connect_timeout": 3.0,
        "read_timeout": 5.0,
    }
    values.update(overrides)
    return EndpointSettings(**values)


def update_spec(operation: str, elements: list[dict], password: str | None = None, **extra):
    """A CredentialsUpdateSpec for simulator credential `elements` (one ResourceCredentials
    each), as SDDC Manager's PATCH /v1/credentials takes it."""
    items = []
    for element in elements:
        credential = {"credentialType": element["credentialType"], "username": element["username"]}
        if password is not None:
            credential["password"] = password
        items.append(
            {
                "resourceName": element["resource"]["resourceName"],
                "resourceType": element["resource"]["resourceType"],
                "credentials": [credential],
            }
        )
    return {"operationType": operation, "elements": items, **extra}


def create_env(admin, sim, name="sfo", **extra):
    response = admin.api(
        "POST", "/api/v1/environments", json={"name": name, "manager": endpoint_body(sim, **extra)}
    )
    assert response.status_code == 201, response.json
    return response.json


def fleet_body(sim, **extra):
    """The simulator's fleet management as an endpoint, with its locker root password."""
    return {
        "host": sim.host,
        "port": sim.port,
        "username": sim.installer_username,
        "password": sim.installer_password,
        "ca_pem": sim.ca_pem,
        "locker_password": sim.fleet_root_password,
        **extra,
    }


def run_sync(app, admin, env_id, source="manager"):
    response = admin.api("POST", f"/api/v1/environments/{env_id}/sync", json={"source": source})
    assert response.status_code == 202
    with app.app_context():
        sync.process_queue()
    return admin.client.get(f"/api/v1/sync-runs/{response.json['id']}").json


def fetched(count: int, rotated: int = 0) -> list[FetchedCredential]:
    """`count` ESXi root accounts as SDDC Manager returns them; the first `rotated` with a new
    password."""
    return [
        FetchedCredential(
            source="manager",
            hostname=f"esx-{n:03d}.sfo.example.net",
            username="root",
            password=f"Pw-{n}-{'new' if n < rotated else 'old'}",
            credential_type="SSH",
            account_type="USER",
            resource_type="ESXI",
            remote_id=f"id-{n}",
        )
        for n in range(count)
    ]


ROOT = Path(__file__).resolve().parent.parent


def ca_signed_pair(ssl_dir: Path) -> Path:
    """A private CA and a server certificate it signed (localhost, 127.0.0.1) in ssl_dir, as
    an operator would install; returns the CA file."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Root CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ssl_dir.mkdir(parents=True)
    (ssl_dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (ssl_dir / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_path = ssl_dir.parent / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_path


def not_copied(*patterns: str):
    """An `ignore` for shutil.copytree: the patterns, and every socket or FIFO (a portal
    killed while running leaves its scheduler.sock, which cannot be copied)."""
    by_name = shutil.ignore_patterns(*patterns)

    def ignore(folder: str, names: list[str]) -> set[str]:
        special = set()
        for name in names:
            with contextlib.suppress(OSError):
                mode = os.lstat(os.path.join(folder, name)).st_mode
                if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
                    special.add(name)
        return set(by_name(folder, names)) | special

    return ignore


def tls_client_hello() -> bytes:
    """The first flight of a real TLS client (its ClientHello), made without a network."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Endpoint:
    """What a client talks to (`url`, trusting `cert`): sessions, CSRF tokens, sign-in."""

    url: str

    @property
    def cert(self) -> str:
        raise NotImplementedError

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = self.cert
        session.headers["Referer"] = self.url + "/"
        return session

    def csrf(self, session: requests.Session, path: str = "/login") -> str:
        return CSRF_META.search(session.get(self.url + path).text).group(1)

    def login(self, session: requests.Session, username: str, password: str):
        token = self.csrf(session)
        return session.post(
            self.url + "/login",
            data={"username": username, "password": password, "csrf_token": token},
            allow_redirects=False,
        )


class PortalServer(Endpoint):
    """A running ./start_https.sh; `session()` gives a requests session that trusts its cert."""

    def __init__(
        self, base: Path, workers: int = 2, env: dict | None = None, ca: Path | None = None
    ):
        self.base = base
        self.ca = ca
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PORTAL_BIND": f"127.0.0.1:{self.port}",
            "PORTAL_WORKERS": str(workers),
            "PORTAL_DATA_DIR": str(base / "data"),
            "PORTAL_LOG_DIR": str(base / "logs"),
            "PORTAL_SSL_DIR": str(base / "ssl"),
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.output = base / "server-output.txt"

    @property
    def cert(self) -> str:
        """What to trust: the given CA, or the self-signed certificate itself."""
        return str(self.ca or self.base / "ssl" / "cert.pem")

    def start(self, timeout: float = 120) -> PortalServer:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [str(ROOT / "start_https.sh")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portal exited: {self.output.read_text()}")
            try:
                if requests.get(self.url + "/healthz", verify=self.cert, timeout=2).ok:
                    return self
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"portal did not start: {self.output.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def haproxy_config(folder: Path, port: int, nodes: list[PortalServer], ca: Path) -> Path:
    """deploy/haproxy-several-nodes.cfg with these addresses, certificate and nodes (the nodes
    share one certificate, signed by `ca`, for the name localhost); its path."""
    text = (ROOT / "deploy" / "haproxy-several-nodes.cfg").read_text()
    pem = folder / "proxy.pem"
    ssl_dir = nodes[0].base / "ssl"
    pem.write_text((ssl_dir / "cert.pem").read_text() + (ssl_dir / "key.pem").read_text())
    bind = "bind :443 ssl crt /etc/haproxy/tls/vcf-portal.pem"
    text = text.replace(bind, f"bind 127.0.0.1:{port} ssl crt {pem}")
    text = text.replace("/etc/haproxy/tls/portal-nodes-ca.pem", str(ca))
    text = text.replace("vcf-portal.example.com", "localhost")  # the test certificate's name
    servers = "\n".join(
        f"    server node{n} 127.0.0.1:{node.port}" for n, node in enumerate(nodes, 1)
    )
    text = re.sub(r"(?m)^    server node\d .*\n", "", text) + servers + "\n"
    assert f"127.0.0.1:{port}" in text and str(ca) in text
    path = folder / "haproxy.cfg"
    path.write_text(text)
    return path


class ProxiedNodes(Endpoint):
    """Several ./start_https.sh nodes on one PostgreSQL database (one data key, one session
    key, one certificate signed by a test CA) behind the real HAProxy, configured from
    deploy/haproxy-several-nodes.cfg. `url` is the proxy's; `ca` what to trust."""

    def __init__(self, folder: Path, env: dict, count: int = 2, workers: int = 2):
        self.folder = folder
        self.ca = ca_signed_pair(folder / "node1" / "ssl")
        shared = {
            "PORTAL_SECRET_KEY": "a session key every node shares, 32+ chars",
            "PORTAL_TRUSTED_PROXIES": "127.0.0.1",
            **env,
        }
        for n in range(2, count + 1):
            shutil.copytree(folder / "node1" / "ssl", folder / f"node{n}" / "ssl")
        self.nodes = [
            PortalServer(folder / f"node{n}", workers=workers, env=shared, ca=self.ca)
            for n in range(1, count + 1)
        ]
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.proxy: subprocess.Popen | None = None

    @property
    def cert(self) -> str:
        return str(self.ca)

    def start(self) -> ProxiedNodes:
        try:
            return self._start()
        except BaseException:
            self.stop()  # whatever started is stopped: no node outlives a failed start
            raise

    def _start(self) -> ProxiedNodes:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        assert Path(haproxy).exists(), "haproxy is not installed (.ci/run installs it)"
        first = self.nodes[0].start()
        for node in self.nodes[1:]:  # the first node made the keys: every node uses them
            (node.base / "data").mkdir(mode=0o700, parents=True)
            for name in KEY_FILES:
                shutil.copy2(first.base / "data" / name, node.base / "data" / name)
            node.start()
        config = haproxy_config(self.folder, self.port, self.nodes, self.ca)
        with open(self.folder / "haproxy.log", "wb") as output:  # the proxy's log
            self.proxy = subprocess.Popen(
                [haproxy, "-db", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/healthz", verify=str(self.ca), timeout=3).ok:
                    return self
            time.sleep(0.2)
        raise RuntimeError("the proxy did not answer /healthz within 30 s")

    def stop(self) -> None:
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.terminate()
            self.proxy.wait(timeout=10)
        for node in self.nodes:
            node.stop()


@contextmanager
def running_portal(base: Path, workers: int = 2, env: dict | None = None, ca: Path | None = None):
    server = PortalServer(base, workers, env, ca).start()
    try:
        yield server
    finally:
        server.stop()


class Watcher:
    """Collects console errors, page errors, CSP reports and foreign requests of a page."""

    def __init__(self, origin: str):
        self.origin = origin
        self.problems: list[str] = []
        self.expected: list[str] = []
        self.tolerated: list[str] = []

    def expect_console(self, fragment: str) -> None:
        """Allow one console error containing `fragment` (e.g. a deliberate 422 response)."""
        self.expected.append(fragment)

    def tolerate_console(self, fragment: str) -> None:
        """Allow any number of console errors containing `fragment` from now on (requests a
        test makes fail on purpose, however many the page sends)."""
        self.tolerated.append(fragment)

    def attach(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        page.on("request", self._request)

    def _console(self, message) -> None:
        text = message.text
        if "Content Security Policy" in text:
            self.problems.append(f"CSP: {text}")
        elif message.type == "error":
            if any(fragment in text for fragment in self.tolerated):
                return
            allowed = next((f for f in self.expected if f in text), None)
            if allowed is None:
                self.problems.append(f"console error: {text}")
            else:
                self.expected.remove(allowed)

    def _request(self, request) -> None:
        url = request.url
        if url.startswith(("data:", "blob:")):
            return
        if not (url == self.origin or url.startswith(self.origin + "/")):
            self.problems.append(f"request to another origin: {url}")

    def check(self) -> None:
        assert self.problems == [], "\n".join(self.problems)


def new_page(browser, portal, watcher, **options):
    context = browser.new_context(
        ignore_https_errors=True,
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
        **options,
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=portal.url)
    page = context.new_page()
    page.clock.install()
    watcher.attach(page)
    page.set_default_timeout(20000)
    return context, page


AXE_SCRIPT = ROOT / "tests" / "vendor" / "axe.min.js"


def axe_violations(page, state: str) -> list[str]:
    """Run axe-core (vendored for the tests, evaluated by DevTools: the portal's
    Content-Security-Policy stays as it is) on the page as it is, once its style sheet has
    applied (before the load event the browser's own colours fail the contrast check); one
    line per violation and node."""
    page.wait_for_load_state("load")
    page.wait_for_function(
        "() => Array.from(document.styleSheets).some((s) => (s.href || '').endsWith('portal.css'))"
    )
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SCRIPT.read_text())
    result = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .flatMap((v) => v.nodes.map((n) => v.impact + " " + v.id + ": " + n.target.join(" ")
              + " " + n.failureSummary.replace(/\\s+/g, " ").slice(0, 300)))"""
    )
    return [f"{state}: {line}" for line in result]


def sign_in(page, portal, username, password):
    page.goto(portal.url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("main button[type=submit]")


LAB_PASSWORD = "Operator-path-passphrase-1"  # noqa: S105 - test password


def first_admin(server: PortalServer, password: str) -> tuple[requests.Session, str]:
    """Sign in as the first admin of a new portal and set its password (the forced change):
    the session and its CSRF token."""
    session = server.session()
    assert server.login(session, "admin", "admin").status_code == 302
    token = server.csrf(session, "/change-password")
    changed = session.post(
        server.url + "/change-password",
        data={
            "csrf_token": token,
            "current_password": "admin",
            "new_password": password,
            "confirm_password": password,
        },
        allow_redirects=False,
    )
    assert changed.status_code == 302, changed.text
    return session, server.csrf(session, "/")


class Lab:
    """A running portal (`server`) with the admin's password changed to LAB_PASSWORD, an
    environment synced from the simulator `sim` and one whose sync fails (browser tests)."""

    def __init__(self, server: PortalServer, sim):
        self.server = server
        self.sim = sim
        self.url = server.url
        self.session, self.token = first_admin(server, LAB_PASSWORD)
        self.env_id = self.create("sfo-m01", manager=endpoint_body(sim))
        self.broken_id = self.create(
            "lax-m01", manager=endpoint_body(sim, password="wrong-password")
        )
        self.wait_for(self.env_id, "success")
        self.broken_status = self.wait_for(self.broken_id, "failed")
        self.wait_for_expiry(self.env_id)

    def wait_for_expiry(self, env_id) -> None:
        """Wait for the expiry check that follows a successful sync to have written its dates."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = self.sql(
                "SELECT expiry_checked_at FROM endpoints WHERE environment_id = ? "
                "AND source = 'manager'",
                env_id,
            )
            if rows and rows[0][0]:
                return
            time.sleep(0.2)
        raise AssertionError(f"no expiry check of environment {env_id}")

    def create(self, name, **sources) -> int:
        """Add an environment with the given endpoints (manager=..., installer=...)."""
        response = self.session.post(
            self.url + "/api/v1/environments",
            json={"name": name, **sources},
            headers={"X-CSRFToken": self.token},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def wait_for(self, env_id, state, source="manager") -> dict:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = self.get(f"/api/v1/environments/{env_id}")["status"][source]
            if status["state"] == state and not status.get("active_run"):
                return status
            time.sleep(0.5)
        raise AssertionError(f"environment {env_id} did not reach {state}: {status}")

    def get(self, path, **params):
        response = self.session.get(self.url + path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def sql(self, statement: str, *args) -> list:
        """Run one SQL statement on the portal's database (committed); its rows."""
        with sqlite3.connect(self.server.base / "data" / "vcf_credentials.db") as conn:
            return conn.execute(statement, args).fetchall()

    def age_sessions(self, minutes: int) -> None:
        """Make every session's last password entry `minutes` old (the re-auth window is 15)."""
        self.sql(
            "UPDATE user_sessions SET authenticated_at = datetime('now', ?)", f"-{minutes} minutes"
        )


def ldap_settings_body(slapd, **extra) -> dict:
    """LDAP settings pointing at a test slapd (tests/ldap_server.py), turned on."""
    return {
        "flavor": "openldap",
        "urls": [slapd.url_ldaps],
        "ca_bundle": slapd.ca_pem,
        "bind_dn": slapd.service_dn,
        "bind_password": slapd.service_password,
        "user_base": slapd.people_base,
        "group_base": slapd.groups_base,
        "timeout_seconds": 5,
        "enabled": True,
        **extra,
    }


def oidc_settings_body(provider, **extra) -> dict:
    """OpenID Connect settings pointing at a test provider (tests/oidc_server.py), turned on."""
    return {
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "ca_bundle": provider.ca_pem,
        "scopes": "openid profile email groups",
        "display_name": "Example SSO",
        "enabled": True,
        **extra,
    }


def user_named(app, name: str) -> User | None:
    """The portal's user `name` as stored now (detached), or None."""
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == name))
        if user is not None:
            db.session.expunge(user)
        return user


def recheck_directory(app) -> dict:
    """Run the periodic directory check now, for every signed-in directory user."""
    from portal.identity.directory import accounts

    with app.app_context():
        counts = accounts.recheck(force=True)
        db.session.commit()
        return counts


def add_directory_account(app, username: str, source: str = "ldap") -> None:
    """A portal account of a directory user, as a first sign-in makes it."""
    with app.app_context():
        db.session.add(
            User(
                username=username,
                role="member",
                password_hash="!external",
                source=source,
                external_id=f"entryUUID:{username}",
            )
        )
        db.session.commit()


class _BoundSession(FlaskSession):
    """Flask-SQLAlchemy's session, on the test's connection when one is given."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and self.bind is not None:
            return self.bind
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


@contextmanager
def unit_transaction(app):
    """The test's transaction on `app`: what the application commits inside is released
    savepoints of it, rolled back at the end; the configuration is restored too."""
    config = dict(app.config)
    factory = db.session.session_factory
    with app.app_context():
        connection = db.engine.connect()
        # pysqlite starts no transaction before a SAVEPOINT: begin one, so that releasing the
        # application's savepoints never commits.
        connection.exec_driver_sql("BEGIN")
        db.session.remove()
        factory.class_ = _BoundSession
        db.session.configure(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            factory.kw.pop("bind", None)
            factory.kw.pop("join_transaction_mode", None)
            factory.class_ = FlaskSession
        connection.exec_driver_sql("ROLLBACK")
        connection.close()
        app.config.clear()
        app.config.update(config)
