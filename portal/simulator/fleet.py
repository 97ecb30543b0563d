"""The simulator's VCF Operations fleet management (VCF9-FLEET.md sections 2-3).

Both surfaces read one list of accounts, built from the installer spec's management
appliances (VCF Operations and its nodes, the collector as a cloud proxy, VCF Automation, the
fleet management appliance on 9.0, the services runtime on 9.1) with the spec's values:

- 9.0 and 9.1: the locker, HTTP Basic: ``GET /lcm/locker/api/passwords`` (``from``, ``size``;
  ``{total, passwords[]}``, values masked) and ``POST
  /lcm/locker/api/v2/passwords/{vmid}/decrypted {"rootPassword"}`` (400 when the root
  password is not the fleet appliance's);
- 9.1 only: VCF Operations ``POST /suite-api/api/auth/token/acquire`` (an OpsToken), ``POST
  …/auth/token/exchange`` (the Bearer token the fleet paths take; an OpsToken is refused there
  with 401, as seen in one lab), ``POST
  …/fleet-management/password-management/accounts/query`` (``page``, ``pageSize``, body
  filters), ``PUT …/accounts/{key}/password`` (a workflow request, polled at ``GET
  /suite-api/api/workflows/requests/{id}``, that changes the value once it completes).

On 9.0 every ``/suite-api/`` path answers 404: that is how a client tells the versions apart.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .handler import _error
from .inventory import HOSTILE_PASSWORDS

# What hostile mode puts into the last account: a name that bends text direction, markup as a
# user name, a formula as the password.
_HOSTILE = ("\u202eexe.cod.rainpole.io", "<script>alert(1)</script>", HOSTILE_PASSWORDS[1])

DAY_MS = 86_400_000
MAX_AGE_DAYS = 90
_FILTERS = {
    "appliance": "appliance",
    "applianceFqdn": "applianceFqdn",
    "username": "userName",
    "vcfDomainId": "vcfDomainId",
    "status": "status",
}
_LOCKER = "/lcm/locker/api/passwords"
_DECRYPT_PREFIX = "/lcm/locker/api/v2/passwords/"
_SUITE = "/suite-api/api"
_ACCOUNTS = _SUITE + "/fleet-management/password-management/accounts"
_WORKFLOWS = _SUITE + "/workflows/requests/"
_DISPLAY = {
    "VCF_OPERATIONS": "VCF Operations",
    "LOG_MANAGEMENT": "VCF Operations for Logs",
    "VCF_OPS_NETWORK": "VCF Operations for Networks",
    "IDENTITY_BROKER": "VCF Identity Broker",
    "CLOUD_PROXY": "Cloud Proxy",
    "VCF_AUTOMATION": "VCF Automation",
    "FLEET_MANAGEMENT": "Fleet Management",
    "VCF_SERVICES_RUNTIME": "VCF Services Runtime",
}


@dataclass
class FleetAccount:
    """One management appliance account as fleet management holds it."""

    key: str
    vmid: str
    alias: str
    appliance: str
    fqdn: str
    username: str
    credential_type: str
    account_type: str
    password: str
    updated_ms: int
    domain: str
    unknown: bool = False

    def status(self, now_ms: int) -> str:
        """ACTIVE, EXPIRING (within 14 days), EXPIRED, or UNKNOWN (never checked)."""
        if self.unknown:
            return "UNKNOWN"
        left = self.expiry_ms - now_ms
        if left <= 0:
            return "EXPIRED"
        return "EXPIRING" if left <= 14 * DAY_MS else "ACTIVE"

    @property
    def expiry_ms(self) -> int:
        """When the password expires: MAX_AGE_DAYS after it was last set."""
        return self.updated_ms + MAX_AGE_DAYS * DAY_MS


@dataclass
class _Workflow:
    request_id: str
    account_key: str
    new_password: str
    due: float
    status: str = "IN_PROGRESS"
    error: str | None = None


def accounts_from_spec(
    spec: dict[str, Any], version: str, uid: Callable[[], str], now_ms: int
) -> list[FleetAccount]:
    """The management appliances' accounts the installer spec names, with its values; their
    ages spread so that some expire soon, some have expired and one was never checked."""
    rows: list[tuple[str, str, str, str]] = []  # appliance, fqdn, user, password
    ops = spec.get("vcfOperationsSpec") or {}
    if ops.get("adminUserPassword"):
        rows.append(("VCF_OPERATIONS", ops["loadBalancerFqdn"], "admin", ops["adminUserPassword"]))
    for node in ops.get("nodes") or []:
        rows.append(("VCF_OPERATIONS", node["hostname"], "root", node["rootUserPassword"]))
    collector = spec.get("vcfOperationsCollectorSpec") or {}
    if collector.get("rootUserPassword"):
        rows.append(("CLOUD_PROXY", collector["hostname"], "root", collector["rootUserPassword"]))
    automation = spec.get("vcfAutomationSpec") or {}
    if automation.get("adminUserPassword"):
        rows.append(
            ("VCF_AUTOMATION", automation["hostname"], "admin", automation["adminUserPassword"])
        )
    fleet = spec.get("vcfOperationsFleetManagementSpec") or {}
    for field, user in (("rootUserPassword", "root"), ("adminUserPassword", "admin@local")):
        if fleet.get(field):
            rows.append(("FLEET_MANAGEMENT", fleet["hostname"], user, fleet[field]))
    vsp = spec.get("vspClusterSpec") or {}
    if vsp.get("systemUserPassword"):
        rows.append(
            (
                "VCF_SERVICES_RUNTIME",
                vsp["platformFqdn"],
                "vmware-system-user",
                vsp["systemUserPassword"],
            )
        )
    domain = str(spec.get("sddcId") or "")
    return [
        _account(
            uid,
            number,
            appliance,
            fqdn,
            user,
            password,
            now_ms,
            domain,
            unknown=version == "9.1" and number == 3,
        )
        for number, (appliance, fqdn, user, password) in enumerate(rows)
    ]


# Password ages in days, in turn: most recent, one within 14 days of expiry, one past it.
AGES_DAYS = (5, 80, 95, 20, 40)


def _account(
    uid: Callable[[], str],
    number: int,
    appliance: str,
    fqdn: str,
    user: str,
    password: str,
    now_ms: int,
    domain: str,
    account_type: str = "USER",
    unknown: bool = False,
) -> FleetAccount:
    """One fleet account, aged by its place in the list (`AGES_DAYS`)."""
    return FleetAccount(
        key=uid(),
        vmid=uid(),
        alias=f"{fqdn} {user}",
        appliance=appliance,
        fqdn=fqdn,
        username=user,
        credential_type="SSH" if user in ("root", "vmware-system-user") else "API",
        account_type=account_type,
        password=password,
        updated_ms=now_ms - AGES_DAYS[number % len(AGES_DAYS)] * DAY_MS,
        domain=domain,
        unknown=unknown,
    )


# A large estate's appliance types, in turn (benchmarks: "fleet_scale").
SCALE_TYPES = (
    "VCF_OPERATIONS",
    "LOG_MANAGEMENT",
    "VCF_OPS_NETWORK",
    "VCF_AUTOMATION",
    "IDENTITY_BROKER",
    "CLOUD_PROXY",
)
SCALE_USERS = ("root", "admin", "svc-monitor", "svc-backup")


def generated_accounts(
    appliances: int,
    count: int,
    uid: Callable[[], str],
    password: Callable[[], str],
    now_ms: int,
    domain: str,
) -> list[FleetAccount]:
    """A large estate: ``count`` accounts over ``appliances`` management appliances (their
    types in turn), the same ages as the spec's accounts."""
    if appliances < 1 or count < 0:
        raise ValueError("appliances must be at least 1 and accounts not negative")
    accounts = []
    for number in range(count):
        index, slot = number % appliances, number // appliances
        appliance = SCALE_TYPES[index % len(SCALE_TYPES)]
        fqdn = f"sfo-{appliance.lower().replace('_', '')}{index + 1:03d}.sfo.rainpole.io"
        user = SCALE_USERS[slot] if slot < len(SCALE_USERS) else f"svc-user{slot}"
        kind = "SERVICE" if user.startswith("svc-") else "USER"
        accounts.append(
            _account(uid, number, appliance, fqdn, user, password(), now_ms, domain, kind)
        )
    return accounts


class FleetSurface:
    """Fleet management's two APIs over one account list (the simulator's lock held)."""

    def __init__(
        self,
        accounts: list[FleetAccount],
        version: str,
        root_password: str,
        check_user: Callable[[str, str], bool],
        new_password: Callable[[], str],
        task_delay: Callable[[], float],
    ) -> None:
        self.accounts = accounts
        self.version = version
        self.root_password = root_password
        self._check_user = check_user
        self._new_password = new_password
        self._task_delay = task_delay
        self._ops_tokens: dict[str, tuple[str, float]] = {}
        self._bearer_tokens: dict[str, tuple[str, float]] = {}
        self._workflows: dict[str, _Workflow] = {}
        self.token_lifetime = 1800.0
        # Password updates whose workflow fails (the value stays as it was), with the message.
        self._failing: list[str] = []
        self._hostile_original: tuple[str, str, str, str] | None = None

    # -- controls --------------------------------------------------------------------------

    def rotate(self, count: int, now_ms: int) -> list[str]:
        """Give the first ``count`` accounts (all when count exceeds them) a new value, as a
        rotation in fleet management would; returns their aliases."""
        changed = []
        for account in self.accounts[: max(0, count)]:
            account.password = self._new_password()
            account.updated_ms = now_ms
            account.unknown = False
            changed.append(account.alias)
        return changed

    def fail_workflows(self, count: int, message: str) -> None:
        """The next ``count`` password update workflows fail with ``message``; the accounts
        keep their values."""
        self._failing.extend([message] * max(0, count))

    def set_hostile(self, enabled: bool) -> None:
        """Put hostile strings in the last account's FQDN, user and password (or restore)."""
        if not self.accounts or enabled == (self._hostile_original is not None):
            return
        account = self.accounts[-1]
        if enabled:
            self._hostile_original = (
                account.fqdn,
                account.username,
                account.password,
                account.alias,
            )
            account.fqdn, account.username, account.password = _HOSTILE
            account.alias = f"{account.fqdn} {account.username}"
        elif self._hostile_original is not None:
            account.fqdn, account.username, account.password, account.alias = self._hostile_original
            self._hostile_original = None

    def revoke(self) -> None:
        """Forget every token."""
        self._ops_tokens.clear()
        self._bearer_tokens.clear()

    def settle(self) -> None:
        """Finish every workflow now."""
        for workflow in self._workflows.values():
            workflow.due = 0.0
        self._advance()

    def settle_due(self) -> None:
        """Finish the workflows whose time has come."""
        self._advance()

    def account(self, fqdn: str, username: str) -> FleetAccount | None:
        """The account of this appliance and user."""
        return next((a for a in self.accounts if a.fqdn == fqdn and a.username == username), None)

    # -- routing ---------------------------------------------------------------------------

    def route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        authorization: str | None,
    ) -> tuple[int, Any]:
        """Answer one fleet management request."""
        self._advance()
        if path == _LOCKER or path.startswith(_DECRYPT_PREFIX):
            if not self._basic_ok(authorization):
                return 401, _error("UNAUTHORIZED", "Full authentication is required")
            if path == _LOCKER:
                return (405, _not_allowed()) if method != "GET" else self._locker_page(query)
            if method != "POST":
                return 405, _not_allowed()
            return self._decrypt(path, body)
        if not path.startswith(_SUITE + "/") or self.version != "9.1":
            return 404, _error("NOT_FOUND", "No such API")
        if path == _SUITE + "/auth/token/acquire":
            return self._acquire(method, body)
        if path == _SUITE + "/auth/token/exchange":
            if method != "POST":
                return 405, _not_allowed()
            user = self._token_user(authorization, "OpsToken ", self._ops_tokens)
            if user is None:
                return 401, _error("UNAUTHORIZED", "A valid OpsToken is required")
            token = secrets.token_urlsafe(32)
            self._bearer_tokens[token] = (user, time.monotonic() + self.token_lifetime)
            return 200, {"token": token, "tokenType": "Bearer"}
        if self._token_user(authorization, "Bearer ", self._bearer_tokens) is None:
            return 401, _error("UNAUTHORIZED", "The fleet management APIs need a fleet token")
        if path == _ACCOUNTS + "/query":
            return (405, _not_allowed()) if method != "POST" else self._query(query, body)
        if path.startswith(_ACCOUNTS + "/") and path.endswith("/password"):
            if method != "PUT":
                return 405, _not_allowed()
            return self._update(unquote(path[len(_ACCOUNTS) + 1 : -len("/password")]), body)
        if path.startswith(_WORKFLOWS) and method == "GET":
            workflow = self._workflows.get(unquote(path[len(_WORKFLOWS) :]))
            if workflow is None:
                return 404, _error("NOT_FOUND", "No such workflow request")
            view = {
                "requestId": workflow.request_id,
                "status": workflow.status,
                "resourceKey": workflow.account_key,
            }
            if workflow.error:
                view["errorMessage"] = workflow.error
            return 200, view
        return 404, _error("NOT_FOUND", "No such API")

    # -- the locker ------------------------------------------------------------------------

    def _basic_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            pair = base64.b64decode(header[len("Basic ") :].strip(), validate=True).decode()
        except (binascii.Error, UnicodeError):
            return False
        user, _, password = pair.partition(":")
        return self._check_user(user, password)

    def _locker_page(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            start = int(query.get("from", ["0"])[0])
            size = int(query.get("size", ["50"])[0])
        except ValueError:
            return 400, _error("INVALID_INPUT", "from and size must be numbers")
        if start < 0 or not 1 <= size <= 1000:
            return 400, _error("INVALID_INPUT", "from must be >= 0 and size 1-1000")
        page = self.accounts[start : start + size]
        return 200, {
            "total": len(self.accounts),
            "passwords": [
                {
                    "vmid": a.vmid,
                    "tenant": "default",
                    "alias": a.alias,
                    "password": "PASSWORD****",
                    "passwordDescription": f"{_DISPLAY.get(a.appliance, a.appliance)} {a.username}",
                    "userName": a.username,
                    "createdOn": a.updated_ms,
                    "lastUpdated": a.updated_ms,
                    "referenced": True,
                }
                for a in page
            ],
        }

    def _decrypt(self, path: str, body: bytes) -> tuple[int, Any]:
        rest = unquote(path[len(_DECRYPT_PREFIX) :])
        if not rest.endswith("/decrypted"):
            return 404, _error("NOT_FOUND", "No such API")
        vmid = rest[: -len("/decrypted")]
        spec = _json(body)
        root = spec.get("rootPassword") if isinstance(spec, dict) else None
        if not isinstance(root, str):
            return 400, _error("INVALID_INPUT", "rootPassword is required")
        if not hmac.compare_digest(root.encode(), self.root_password.encode()):
            return 400, _error("LCMLOCKER10003", "Root password of the appliance is not valid")
        account = next((a for a in self.accounts if a.vmid == vmid), None)
        if account is None:
            return 404, _error("LCMLOCKER10001", "Password not found in the locker")
        return 200, {"vmid": account.vmid, "alias": account.alias, "password": account.password}

    # -- VCF Operations ----------------------------------------------------------------------

    def _acquire(self, method: str, body: bytes) -> tuple[int, Any]:
        if method != "POST":
            return 405, _not_allowed()
        spec = _json(body)
        if not isinstance(spec, dict) or not all(
            isinstance(spec.get(k), str) for k in ("username", "password")
        ):
            return 400, _error("INVALID_INPUT", "username and password are required")
        if spec.get("authSource") not in (None, "localItem"):
            return 401, _error("UNAUTHORIZED", "Unknown authentication source")
        if not self._check_user(spec["username"], spec["password"]):
            return 401, _error("UNAUTHORIZED", "Invalid username or password")
        token = secrets.token_urlsafe(32)
        expires = time.time() + self.token_lifetime
        self._ops_tokens[token] = (spec["username"], time.monotonic() + self.token_lifetime)
        return 200, {"token": token, "validity": int(expires * 1000), "roles": []}

    @staticmethod
    def _token_user(
        header: str | None, scheme: str, tokens: dict[str, tuple[str, float]]
    ) -> str | None:
        if not header or not header.startswith(scheme):
            return None
        entry = tokens.get(header[len(scheme) :].strip())
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def _query(self, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        try:
            page = int(query.get("page", ["0"])[0])
            size = int(query.get("pageSize", ["50"])[0])
        except ValueError:
            return 400, _error("INVALID_INPUT", "page and pageSize must be numbers")
        if page < 0 or not 1 <= size <= 1000:
            return 400, _error("INVALID_INPUT", "page must be >= 0 and pageSize 1-1000")
        filters = _json(body) if body.strip() else {}
        if not isinstance(filters, dict):
            return 400, _error("INVALID_INPUT", "the filters are a JSON object")
        now_ms = int(time.time() * 1000)
        rows = [self._account_json(a, now_ms) for a in self.accounts]
        for name, key in _FILTERS.items():
            if filters.get(name):
                rows = [r for r in rows if r.get(key) == filters[name]]
        chunk = rows[page * size : (page + 1) * size]
        return 200, {
            "links": [],
            "pageInfo": {
                "page": page,
                "pageSize": size,
                "sortBy": "applianceFqdn",
                "sortOrder": "ASC",
                "totalCount": len(rows),
            },
            "vcfPasswordAccounts": chunk,
        }

    def _account_json(self, account: FleetAccount, now_ms: int) -> dict[str, Any]:
        return {
            "accountType": account.account_type,
            "appliance": account.appliance,
            "applianceFqdn": account.fqdn,
            "applianceOpsResourceId": f"ops-{account.vmid[:8]}",
            "clusterInfo": {"accountType": "PER_NODE_ACCOUNT"},
            "credentialType": account.credential_type,
            "displayApplianceType": _DISPLAY.get(account.appliance, account.appliance),
            "expiryDate": account.expiry_ms,
            "lastPasswordUpdateTimestamp": account.updated_ms,
            "managedByFqdn": next(
                (a.fqdn for a in self.accounts if a.appliance == "VCF_OPERATIONS"), ""
            ),
            "passwordAccountKey": account.key,
            "passwordAlias": account.alias,
            "status": account.status(now_ms),
            "userName": account.username,
            "vcfDomainId": account.domain,
        }

    def _update(self, key: str, body: bytes) -> tuple[int, Any]:
        account = next((a for a in self.accounts if a.key == key), None)
        if account is None:
            return 404, _error("NOT_FOUND", "No such password account")
        spec = _json(body)
        if not isinstance(spec, dict) or not all(
            isinstance(spec.get(k), str) and spec.get(k) for k in ("currentPassword", "newPassword")
        ):
            return 400, _error("INVALID_INPUT", "currentPassword and newPassword are required")
        if not hmac.compare_digest(spec["currentPassword"].encode(), account.password.encode()):
            return 400, _error("INVALID_CURRENT_PASSWORD", "The current password does not match")
        request_id = secrets.token_hex(16)
        self._workflows[request_id] = _Workflow(
            request_id,
            key,
            spec["newPassword"],
            time.monotonic() + self._task_delay(),
            error=self._failing.pop(0) if self._failing else None,
        )
        return 202, {"requestId": request_id, "status": "IN_PROGRESS"}

    def _advance(self) -> None:
        now = time.monotonic()
        for workflow in self._workflows.values():
            if workflow.status == "IN_PROGRESS" and workflow.due <= now:
                account = next((a for a in self.accounts if a.key == workflow.account_key), None)
                if account is None or workflow.error:
                    workflow.status = "FAILED"
                    workflow.error = workflow.error or "The password account is gone"
                    continue
                account.password = workflow.new_password
                account.updated_ms = int(time.time() * 1000)
                account.unknown = False
                workflow.status = "COMPLETED"


def build_surface(
    inventory: Any,
    users: dict[str, tuple[str, str]],
    version: str,
    task_delay: Callable[[], float],
    root_password: str | None = None,
) -> FleetSurface:
    """Fleet management over the primary installer spec's appliances; its service accounts are
    the simulator's ADMIN users. The root password: the one given, else on 9.0 the spec's
    fleet appliance root, else (9.1 names no fleet appliance account) one drawn for it."""
    spec = inventory.specs[inventory.tasks[0]["id"]]
    accounts = accounts_from_spec(spec, version, inventory._uuid, now_ms())
    fleet_spec = spec.get("vcfOperationsFleetManagementSpec") or {}
    root = root_password or fleet_spec.get("rootUserPassword") or inventory.password()

    def check_user(username: str, password: str) -> bool:
        expected = users.get(username)
        return (
            expected is not None
            and expected[1] == "ADMIN"
            and hmac.compare_digest(expected[0].encode("utf-8"), password.encode("utf-8"))
        )

    return FleetSurface(accounts, version, root, check_user, inventory.password, task_delay)


def now_ms() -> int:
    """The current time in epoch milliseconds, as fleet management counts it."""
    return int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)


def _not_allowed() -> dict[str, Any]:
    return _error("METHOD_NOT_ALLOWED", "Method not allowed")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeError):
        return None
