"""HTTPS simulator of SDDC Manager and the VCF Installer (CONTRACT.md section 6).

One server answers both appliances' paths; tokens are shared. Error bodies always carry
``errorCode`` and ``message`` (plus ``referenceToken`` on 5xx). The in-process API
(:class:`Simulator`) and the HTTP control API (``POST /_sim/control``, ``GET /_sim/stats``,
``GET /_sim/credentials``; only with ``control=True``) drive rotations, inventory changes,
hostile data, quirks and injected failures. The HTTP plumbing lives in ``handler``; the
generated data in ``inventory``.
"""

from __future__ import annotations

import base64
import collections
import copy
import datetime as dt
import hashlib
import hmac
import json
import math
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .certs import CertificateSet, generate_certificates, leaf_der, load_certificates
from .fleet import FleetAccount, build_surface, generated_accounts, now_ms
from .handler import _error, _Handler, _Raw, _Server
from .inventory import QUIRKS, Inventory
from .lifecycle import CredentialOperations

FAILURE_MODES = ("500", "401", "403", "404", "429", "timeout", "reset", "malformed", "slow")
DEFAULT_PASSWORD = "VMware123!VMware123!"  # noqa: S105 - the simulator's documented default
_FILTERS = ("resourceName", "resourceIp", "resourceType", "domainName", "accountType")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Failure:
    def __init__(
        self, mode: str, count: int, path_prefix: str, delay: float | None, message: str | None
    ) -> None:
        self.mode = mode
        self.remaining = count
        self.path_prefix = path_prefix
        self.delay = delay
        self.message = message


class Simulator:
    """SDDC Manager + VCF Installer over HTTPS on loopback, for tests and benchmarks."""

    def __init__(
        self,
        credentials: int = 2000,
        seed: int = 1,
        hostile: bool = False,
        token_lifetime: int = 3600,
        refresh_lifetime: float = 86400.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_dir: str | Path | None = None,
        password: str | None = None,
        token_status: int = 200,
        installer_version: str = "9.1",
        control: bool = False,
        timeout_delay: float = 5.0,
        slow_delay: float = 0.3,
        quirks: tuple[str, ...] | list[str] = (),
        task_delay: float = 0.2,
        fleet_root_password: str | None = None,
    ) -> None:
        if token_status not in (200, 201):
            raise ValueError("token_status must be 200 or 201")
        if int(token_lifetime) < 1:
            raise ValueError("token_lifetime must be at least 1 second")
        self.host = host
        self.port = port
        self.token_lifetime = int(token_lifetime)
        self.refresh_lifetime = float(refresh_lifetime)
        self.token_status = token_status
        self.control = control
        self.timeout_delay = timeout_delay
        self.slow_delay = slow_delay
        password = password or DEFAULT_PASSWORD
        self.admin_username = "administrator@vsphere.local"
        self.admin_password = password
        self.installer_username = "admin@local"
        self.installer_password = password
        self.operator_username = "operator@vsphere.local"
        self.operator_password = password
        self._users = {
            self.admin_username: (self.admin_password, "ADMIN"),
            self.installer_username: (self.installer_password, "ADMIN"),
            self.operator_username: (self.operator_password, "OPERATOR"),
        }
        self._lock = threading.RLock()
        self._inventory = Inventory(credentials, seed, hostile, installer_version)
        self._operations = CredentialOperations(self._inventory, seed, float(task_delay))
        self._fleet = build_surface(
            self._inventory,
            self._users,
            installer_version,
            lambda: self._operations.task_delay,
            fleet_root_password,
        )
        self._fleet.set_hostile(self._inventory.hostile)
        self._quirks: frozenset[str] = frozenset()
        self.set_quirks(*quirks)
        self._hits: collections.Counter[str] = collections.Counter()
        self._failures: list[_Failure] = []
        self._refresh_tokens: dict[str, tuple[str, float]] = {}
        self._jwt_key = secrets.token_bytes(32)
        self._cert_dir = Path(cert_dir) if cert_dir else None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._certs: CertificateSet | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind, start serving in a daemon thread and return self."""
        if self._server is not None:
            return self
        certs = load_certificates(self._cert_dir) if self._cert_dir else None
        if certs is None:
            names = list(dict.fromkeys(["localhost", "127.0.0.1", "::1", self.host]))
            certs = generate_certificates(names)
        if self._cert_dir:
            directory = self._cert_dir
        else:
            self._tempdir = tempfile.TemporaryDirectory(prefix="vcf-sim-")
            directory = Path(self._tempdir.name)
        chain, key = certs.write(directory)
        self._certs = certs
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(chain, key)
        if self._tempdir is not None:
            # The key is loaded; nothing needs the files any more.
            self._tempdir.cleanup()
            self._tempdir = None
        self._server = _Server((self.host, self.port), _Handler, self, context)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # a quick stop(): tests start and stop many
            name=f"vcf-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Block until interrupted (used by the command line)."""
        self.start()
        assert self._thread is not None  # noqa: S101
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- properties ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:8443``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def ca_pem(self) -> str:
        """PEM of the CA that signed the server certificate."""
        return self._require_certs().ca_pem

    @property
    def certificate_sha256(self) -> str:
        """SHA-256 fingerprint of the server certificate, ``AB:CD:...`` form."""
        digest = hashlib.sha256(leaf_der(self._require_certs().cert_pem)).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, 64, 2))

    @property
    def hits(self) -> collections.Counter[str]:
        """A copy of the request counter, keyed ``"METHOD /path"`` (query excluded)."""
        with self._lock:
            return collections.Counter(self._hits)

    @property
    def sddc_id(self) -> str:
        """Id of the primary installer deployment task."""
        with self._lock:
            return self._inventory.tasks[0]["id"]

    def _require_certs(self) -> CertificateSet:
        if self._certs is None:
            raise RuntimeError("the simulator has not been started")
        return self._certs

    # -- controls ------------------------------------------------------------------------

    def reset_hits(self) -> None:
        """Zero the request counter."""
        with self._lock:
            self._hits.clear()

    def rotate(self, fraction: float) -> int:
        """Change ``fraction`` of the passwords (new modificationTimestamp); return the count."""
        with self._lock:
            return self._inventory.rotate(fraction, dt.datetime.now(dt.timezone.utc))

    def remove(self, n: int) -> list[dict[str, Any]]:
        """Remove ``n`` ESXi hosts' credentials; return the removed elements."""
        with self._lock:
            return self._inventory.remove(n)

    def add(self, n: int) -> list[dict[str, Any]]:
        """Add ``n`` ESXi hosts (two credentials each); return the new elements."""
        with self._lock:
            return self._inventory.add(n)

    def set_hostile(self, enabled: bool) -> None:
        """Switch hostile strings in some names, usernames and passwords on or off (fleet
        management's accounts included)."""
        with self._lock:
            self._inventory.set_hostile(enabled)
            self._fleet.set_hostile(enabled)

    def set_quirks(self, *names: str) -> None:
        """Enable exactly these response quirks (see inventory.QUIRKS); none to disable."""
        unknown = set(names) - QUIRKS
        if unknown:
            raise ValueError(f"unknown quirks: {sorted(unknown)}")
        with self._lock:
            self._quirks = frozenset(names)

    def inject_failure(
        self,
        mode: str,
        count: int = 1,
        path_prefix: str = "/v1/",
        delay: float | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next ``count`` requests under ``path_prefix`` fail in ``mode``; a prefix
        that ends in ``$`` names one path exactly (``/v1/credentials$``: the credential list,
        not its expiry checks or tasks).

        ``delay`` overrides timeout_delay/slow_delay, and is the ``Retry-After`` of the
        429 mode (default 1 s); ``message`` replaces the error message of the
        500/401/403/404/429 modes (to test how clients handle hostile text).
        """
        if mode not in FAILURE_MODES:
            raise ValueError(f"mode must be one of {FAILURE_MODES}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._failures.append(_Failure(mode, count, path_prefix, delay, message))

    def clear_failures(self) -> None:
        """Drop every pending injected failure, credential faults included."""
        with self._lock:
            self._failures.clear()
            self._operations.clear_faults()

    def inject_credential_fault(
        self,
        resource: str,
        kind: str = "fail",
        operation: str | None = None,
        message: str | None = None,
        count: int | None = None,
    ) -> None:
        """Make credential operations on ``resource`` (a resourceName, ``*`` for all) fail.

        ``kind``: ``fail`` (the sub-task, or the expiry check when ``operation`` is
        ``EXPIRATION``, fails with ``message``), ``inactive`` (PATCH refused with
        RESOURCE_IS_NOT_IN_ACTIVE_STATE) or ``busy`` (PATCH refused as if another task held
        the resource). ``operation`` limits it to one operationType (None: all); ``count``
        to that many uses (None: until cleared).
        """
        with self._lock:
            self._operations.add_fault(resource, kind, operation, message, count)

    @property
    def task_delay(self) -> float:
        """Seconds a credentials task or expiry check stays IN_PROGRESS."""
        with self._lock:
            return self._operations.task_delay

    @task_delay.setter
    def task_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("task_delay must not be negative")
        with self._lock:
            self._operations.task_delay = float(seconds)

    def settle_tasks(self) -> None:
        """Finish at once every credentials task and expiry check still IN_PROGRESS."""
        with self._lock:
            for task in self._operations.tasks.values():
                task.due = 0.0
            for check in self._operations.expirations.values():
                check.due = 0.0
            self._operations.advance()
            self._fleet.settle()

    def add_installer_task(self, status: str = "COMPLETED_WITH_FAILURE", with_spec: bool = False):
        """Add an installer deployment task, optionally without a spec; return its id."""
        with self._lock:
            return self._inventory.add_task(status, with_spec)

    def credentials_snapshot(self) -> list[dict[str, Any]]:
        """Deep copy of the current credential elements, passwords included, quirks not."""
        with self._lock:
            self._operations.advance()
            return copy.deepcopy(self._inventory.credentials)

    def installer_spec(self, sddc_id: str | None = None) -> dict[str, Any]:
        """Deep copy of a deployment spec (the primary one by default)."""
        with self._lock:
            return copy.deepcopy(self._inventory.specs[sddc_id or self.sddc_id])

    def revoke_tokens(self) -> None:
        """Invalidate every refresh token and rotate the signing key (all tokens die)."""
        with self._lock:
            self._refresh_tokens.clear()
            self._jwt_key = secrets.token_bytes(32)
            self._fleet.revoke()

    # -- fleet management ----------------------------------------------------------------

    @property
    def fleet_version(self) -> str:
        """Which fleet management surfaces answer: "9.0" (the locker) or "9.1" (VCF
        Operations fleet password management and the locker); the installer's version."""
        return self._fleet.version

    @property
    def fleet_root_password(self) -> str:
        """The fleet appliance's root password, which the locker's decryption asks for."""
        with self._lock:
            return self._fleet.root_password

    @fleet_root_password.setter
    def fleet_root_password(self, value: str) -> None:
        if not value:
            raise ValueError("the root password must not be empty")
        with self._lock:
            self._fleet.root_password = value

    def fleet_accounts(self) -> list[FleetAccount]:
        """Copies of fleet management's accounts, values included."""
        with self._lock:
            self._fleet.settle_due()
            return [copy.copy(account) for account in self._fleet.accounts]

    def fleet_rotate(self, count: int = 1) -> list[str]:
        """Change the value of the first ``count`` fleet accounts (as a rotation in fleet
        management would); returns their aliases."""
        with self._lock:
            return self._fleet.rotate(count, now_ms())

    def fleet_scale(self, appliances: int, accounts: int) -> int:
        """Replace fleet management's accounts with a large estate: ``accounts`` accounts over
        ``appliances`` management appliances (benchmarks); returns the count."""
        with self._lock:
            inventory = self._inventory
            self._fleet.accounts = generated_accounts(
                appliances,
                accounts,
                inventory._uuid,
                inventory.password,
                now_ms(),
                inventory.management.name,
            )
            return len(self._fleet.accounts)

    def fleet_fail_workflows(
        self, count: int = 1, message: str = "Unable to update the password on the appliance"
    ) -> None:
        """The next ``count`` fleet password updates end with a FAILED workflow (``message``),
        the values unchanged."""
        with self._lock:
            self._fleet.fail_workflows(count, message)

    # -- request-side helpers (called from handler threads) ------------------------------

    def _count(self, method: str, path: str) -> None:
        with self._lock:
            self._hits[f"{method} {path}"] += 1

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and _matches(path, failure.path_prefix):
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def _issue_access_token(self, username: str) -> str:
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "sub": username,
            "user": username,
            "name": username,
            "iss": "vcf-auth",
            "aud": "sddc-services",
            "scope": ["CREDENTIAL_READ", "CREDENTIAL_WRITE", "USER_READ", "OTHER_READ"],
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        with self._lock:
            key = self._jwt_key
        signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"

    def _login(self, username: str, password: str) -> dict[str, Any] | None:
        expected = self._users.get(username)
        if expected is None or not hmac.compare_digest(
            expected[0].encode("utf-8"), password.encode("utf-8")
        ):
            return None
        refresh_id = str(uuid.uuid4())
        with self._lock:
            self._refresh_tokens[refresh_id] = (
                username,
                time.monotonic() + self.refresh_lifetime,
            )
        return {
            "accessToken": self._issue_access_token(username),
            "refreshToken": {"id": refresh_id},
        }

    def _refresh(self, refresh_id: str) -> str | None:
        with self._lock:
            entry = self._refresh_tokens.get(refresh_id)
            if entry is None:
                return None
            if entry[1] < time.monotonic():
                del self._refresh_tokens[refresh_id]
                return None
        return self._issue_access_token(entry[0])

    def _invalidate(self, refresh_id: str) -> None:
        with self._lock:
            self._refresh_tokens.pop(refresh_id, None)

    def _bearer_role(self, header: str | None) -> str | None:
        if not header or not header.startswith("Bearer "):
            return None
        parts = header[len("Bearer ") :].strip().split(".")
        if len(parts) != 3:
            return None
        with self._lock:
            key = self._jwt_key
        expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256)
        try:
            if not hmac.compare_digest(_b64url(expected.digest()), parts[2]):
                return None
            claims = json.loads(_b64url_decode(parts[1]))
        except (ValueError, UnicodeError):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) <= time.time():
            return None
        user = self._users.get(str(claims.get("sub")))
        return user[1] if user else None

    def _fleet_route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        authorization: str | None,
    ) -> tuple[int, Any]:
        with self._lock:
            return self._fleet.route(method, path, query, body, authorization)

    def _credentials_page(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        filters = {k: query[k][0] for k in _FILTERS if k in query}
        try:
            number = _non_negative(query.get("pageNumber", ["0"])[0])
            size = _non_negative(query.get("pageSize", ["0"])[0])
        except ValueError:
            return 400, _error("INVALID_INPUT", "pageNumber and pageSize must be numbers >= 0")
        with self._lock:
            self._operations.advance()
            quirks = self._quirks
            everything = self._inventory.credentials
            if filters:
                matched = [e for e in everything if Inventory.matches(e, filters)]
            else:
                matched = everything
            if size == 0:
                start, page = 0, matched
            else:
                if "ignore_page_number" in quirks:
                    number = 0
                start = number * size
                page = matched[start : start + size]
            page = Inventory.apply_quirks(page, quirks, offset=start)
            body_elements = json.dumps(page, ensure_ascii=False, separators=(",", ":"))
        total = len(matched)
        metadata = {
            "pageNumber": number,
            "pageSize": len(page),
            "totalElements": total,
            "totalPages": (1 if total else 0) if size == 0 else math.ceil(total / size),
        }
        if "wrong_shape" in quirks:
            return 200, _Raw(f'{{"content":{body_elements},"page":{number}}}')
        if "no_page_metadata" in quirks:
            return 200, _Raw(f'{{"elements":{body_elements}}}')
        meta = json.dumps(metadata, separators=(",", ":"))
        return 200, _Raw(f'{{"elements":{body_elements},"pageMetadata":{meta}}}')

    def _credential(self, credential_id: str) -> tuple[int, Any]:
        with self._lock:
            self._operations.advance()
            element = self._inventory.by_id.get(credential_id)
            if element is None:
                return 404, _error("CREDENTIAL_NOT_FOUND", "Credential not found")
            return 200, Inventory.apply_quirks([element], self._quirks)[0]

    def _credential_operation(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        """The lifecycle paths: PATCH /v1/credentials, credentials tasks, expirations."""
        ops = self._operations
        if path == "/v1/credentials":
            with self._lock:
                return ops.update(_json_or_none(body))
        if path.startswith("/v1/tasks/"):
            task_id = unquote(path[len("/v1/tasks/") :])
            if method != "GET":
                return 405, _error("METHOD_NOT_ALLOWED", "Method not allowed")
            with self._lock:
                return ops.get_task(task_id, generic=True)
        if path == "/v1/credentials/tasks":
            if method != "GET":
                return 405, _error("METHOD_NOT_ALLOWED", "Method not allowed")
            with self._lock:
                return ops.tasks_page(query)
        if path.startswith("/v1/credentials/tasks/"):
            rest = unquote(path[len("/v1/credentials/tasks/") :])
            with self._lock:
                if rest.endswith("/resource-credentials") and method == "GET":
                    return ops.resource_credentials(rest[: -len("/resource-credentials")])
                if "/" in rest:
                    return 404, _error("NOT_FOUND", "No such API")
                if method == "GET":
                    return ops.get_task(rest)
                if method == "PATCH":
                    return ops.retry(rest, _json_or_none(body))
                if method == "DELETE":
                    return ops.cancel(rest)
            return 405, _error("METHOD_NOT_ALLOWED", "Method not allowed")
        if path == "/v1/credentials/expirations":
            if method != "POST":
                return 405, _error("METHOD_NOT_ALLOWED", "Method not allowed")
            with self._lock:
                return ops.start_expiration(_json_or_none(body))
        if path.startswith("/v1/credentials/expirations/"):
            if method != "GET":
                return 405, _error("METHOD_NOT_ALLOWED", "Method not allowed")
            with self._lock:
                return ops.get_expiration(unquote(path[len("/v1/credentials/expirations/") :]))
        return 404, _error("NOT_FOUND", "No such API")

    def _installer(self, path: str) -> tuple[int, Any]:
        with self._lock:
            tasks = self._inventory.tasks
            specs = self._inventory.specs
            if path == "/v1/sddcs":
                elements = copy.deepcopy(tasks)
                meta = {
                    "pageNumber": 0,
                    "pageSize": len(elements),
                    "totalElements": len(elements),
                    "totalPages": 1 if elements else 0,
                }
                return 200, {"elements": elements, "pageMetadata": meta}
            if path == "/v1/sddcs/latest":
                return 200, copy.deepcopy(tasks[-1])
            rest = unquote(path[len("/v1/sddcs/") :])
            want_spec = rest.endswith("/spec")
            task_id = rest[: -len("/spec")] if want_spec else rest
            task = next((t for t in tasks if t["id"] == task_id), None)
            if task is None or "/" in task_id:
                return 404, _error("SDDC_NOT_FOUND", "Installation task not found")
            if not want_spec:
                return 200, copy.deepcopy(task)
            spec = specs.get(task_id)
            if spec is None:
                return 404, _error("SDDC_SPEC_NOT_FOUND", "Installation spec not found")
            return 200, copy.deepcopy(spec)

    def _control(self, payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict):
            return 400, _error("INVALID_INPUT", "expected a JSON object")
        action = payload.get("action")
        try:
            if action == "rotate":
                return 200, {"rotated": self.rotate(float(payload.get("fraction", 0.1)))}
            if action == "fail":
                delay = payload.get("delay")
                self.inject_failure(
                    str(payload.get("mode")),
                    int(payload.get("count", 1)),
                    str(payload.get("path_prefix", "/v1/")),
                    float(delay) if delay is not None else None,
                    payload.get("message"),
                )
                return 200, {"ok": True}
            if action == "clear":
                self.clear_failures()
                return 200, {"ok": True}
            if action == "remove":
                return 200, {"removed": len(self.remove(int(payload.get("count", 1))))}
            if action == "add":
                return 200, {"added": len(self.add(int(payload.get("count", 1))))}
            if action == "hostile":
                self.set_hostile(bool(payload.get("enabled", True)))
                return 200, {"ok": True}
            if action == "quirks":
                self.set_quirks(*payload.get("names", []))
                return 200, {"ok": True}
            if action == "reset_hits":
                self.reset_hits()
                return 200, {"ok": True}
            if action == "credential_fault":
                count = payload.get("count")
                self.inject_credential_fault(
                    str(payload.get("resource", "")),
                    str(payload.get("kind", "fail")),
                    payload.get("operation"),
                    payload.get("message"),
                    int(count) if count is not None else None,
                )
                return 200, {"ok": True}
            if action == "task_delay":
                self.task_delay = float(payload.get("seconds", 0.2))
                return 200, {"ok": True}
            if action == "settle_tasks":
                self.settle_tasks()
                return 200, {"ok": True}
            if action == "fleet_rotate":
                return 200, {"rotated": len(self.fleet_rotate(int(payload.get("count", 1))))}
            if action == "fleet_scale":
                count = self.fleet_scale(
                    int(payload.get("appliances", 50)), int(payload.get("accounts", 200))
                )
                return 200, {"accounts": count}
            if action == "fleet_workflow_fault":
                self.fleet_fail_workflows(
                    int(payload.get("count", 1)),
                    str(payload.get("message") or "Unable to update the password"),
                )
                return 200, {"ok": True}
            if action == "fleet_root_password":
                self.fleet_root_password = str(payload.get("password", ""))
                return 200, {"ok": True}
        except (TypeError, ValueError) as exc:
            return 400, _error("INVALID_INPUT", str(exc))
        return 400, _error("INVALID_INPUT", "unknown action")

    def _stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "hits": dict(self._hits),
                "credentials": len(self._inventory.credentials),
                "hostile": self._inventory.hostile,
                "quirks": sorted(self._quirks),
                "credential_tasks": {
                    status: sum(1 for t in self._operations.tasks.values() if t.status == status)
                    for status in ("IN_PROGRESS", "SUCCESSFUL", "FAILED", "USER_CANCELLED")
                },
                "task_delay": self._operations.task_delay,
                "fleet_version": self._fleet.version,
                "fleet_accounts": len(self._fleet.accounts),
            }


def _matches(path: str, prefix: str) -> bool:
    if prefix.endswith("$"):
        return path == prefix[:-1]
    return path.startswith(prefix)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeError):
        return None
