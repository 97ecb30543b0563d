"""Credential lifecycle of the simulator: password tasks and expiry checks (spec 9.1.0.0).

``PATCH /v1/credentials`` (``CredentialsUpdateSpec``) starts a credentials task, read back
as ``CredentialsTask`` from ``/v1/credentials/tasks[/{id}]`` and as the generic ``Task``
from ``/v1/tasks/{id}``; ``PATCH`` and ``DELETE /v1/credentials/tasks/{id}`` retry and cancel
a failed one. ``POST /v1/credentials/expirations`` (``CredentialsExpirationSpec``) starts an
expiry check read back from ``/v1/credentials/expirations/{id}`` (``CredentialsExpiration``).

Tasks move by the clock rather than by a thread: every request first settles the tasks
whose time has come (``advance``), so a task is IN_PROGRESS for ``task_delay`` seconds and
then SUCCESSFUL or FAILED, and the inventory changes at that moment, whoever asks first.

Behaviour the spec does not give, taken from the sources in CONTRACT.md section 2.5:

* at most 10 operations IN_PROGRESS at once; the 11th gets 403 (HOL notes);
* a resource must be ACTIVE (``RESOURCE_IS_NOT_IN_ACTIVE_STATE``, HOL notes) and in no other
  unfinished task; a FAILED task keeps its resources until it is retried to success or
  cancelled (PowerVCF: ``Stop-VCFCredentialTask`` "cancels a failed ... task");
* only a FAILED task can be retried or cancelled; REMEDIATE takes one account at a time
  (VCF administration guide, "Remediate Passwords");
* each credential is a sub-task: those that succeed change the inventory, those that fail
  do not, and the task is FAILED when any sub-task failed [INFERRED];
* error codes and texts other than the two named above are [INFERRED].

Not thread-safe on its own: the server calls every method under its lock.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .handler import _error
from .inventory import Inventory, iso

OPERATIONS = ("UPDATE", "ROTATE", "REMEDIATE", "UPDATE_AUTO_ROTATE_POLICY")
RESOURCE_TYPES = (
    "ESXI",
    "VCENTER",
    "PSC",
    "NSXT_MANAGER",
    "NSXT_EDGE",
    "NSX_ALB",
    "BACKUP",
    "HCX_MANAGER",
    "VSP",
)
FAULT_KINDS = ("fail", "inactive", "busy")
FAULT_OPERATIONS = (*OPERATIONS, "EXPIRATION")
MAX_CONCURRENT = 10
LIMIT_MESSAGE = (
    "You have reached the maximum number of 10 concurrent update/rotate passwords "
    "operations. Try again after the running operations complete."
)
# What SDDC Manager 9.1 says to do about an account it cannot reach (text of the simulator).
REMEDIATION_MESSAGE = (
    "Verify that the resource is reachable and that the password SDDC Manager holds is the "
    "one set on the resource; if it was changed outside VCF, remediate the password."
)
# A changed password is good for this long; the check reports it from then on.
NEW_PASSWORD_DAYS = 90
EXPIRING_DAYS = 14
_OPEN = ("IN_PROGRESS", "FAILED")  # statuses that hold their resources


@dataclass
class _Fault:
    resource: str  # resourceName, or "*" for every resource
    kind: str
    operation: str | None
    message: str | None
    remaining: int | None

    def matches(self, resource_name: str, operation: str) -> bool:
        return self.resource in ("*", resource_name) and self.operation in (None, operation)


@dataclass
class _Item:
    """One credential of a task: the sub-task and what it needs to run."""

    credential_id: str
    password: str | None
    subtask: dict[str, Any]


@dataclass
class _Task:
    id: str
    operation: str
    created: str
    due: float
    status: str = "IN_PROGRESS"
    completed: str | None = None
    policy: dict[str, Any] | None = None
    items: list[_Item] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Expiration:
    id: str
    created: str
    due: float
    credential_ids: list[str]
    status: str = "IN_PROGRESS"
    completed: str | None = None
    elements: list[dict[str, Any]] = field(default_factory=list)


def _now() -> str:
    return iso(dt.datetime.now(dt.timezone.utc))


def _rejected(code: str, message: str, status: int = 400) -> tuple[int, Any]:
    return status, _error(code, message)


class _Refused(Exception):
    """A request SDDC Manager would refuse: the status and the Error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.answer = _rejected(code, message, status)


class CredentialOperations:
    """Password tasks, expiry checks and the faults injected into them."""

    def __init__(self, inventory: Inventory, seed: int, task_delay: float) -> None:
        self.inventory = inventory
        self.seed = seed
        self.task_delay = task_delay
        self.tasks: dict[str, _Task] = {}
        self.expirations: dict[str, _Expiration] = {}
        self.faults: list[_Fault] = []
        self._expiry_after_change: dict[str, dt.datetime] = {}

    # -- controls ------------------------------------------------------------------------

    def add_fault(
        self,
        resource: str,
        kind: str = "fail",
        operation: str | None = None,
        message: str | None = None,
        count: int | None = None,
    ) -> None:
        """Make operations on ``resource`` (a resourceName, or ``*``) fail in ``kind``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        if operation is not None and operation not in FAULT_OPERATIONS:
            raise ValueError(f"operation must be one of {FAULT_OPERATIONS}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if not resource:
            raise ValueError("resource must name a resource or be '*'")
        self.faults.append(_Fault(resource, kind, operation, message, count))

    def clear_faults(self) -> None:
        """Drop every injected credential fault."""
        self.faults.clear()

    def _fault(self, kind: str, resource_name: str, operation: str) -> _Fault | None:
        for fault in self.faults:
            if fault.kind == kind and fault.matches(resource_name, operation):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    # -- the clock -----------------------------------------------------------------------

    def advance(self) -> None:
        """Finish every task and expiry check whose time has come."""
        now = time.monotonic()
        for task in self.tasks.values():
            if task.status == "IN_PROGRESS" and task.due <= now:
                self._finish(task)
        for check in self.expirations.values():
            if check.status == "IN_PROGRESS" and check.due <= now:
                self._finish_expiration(check)

    # -- PATCH /v1/credentials -----------------------------------------------------------

    def update(self, spec: Any) -> tuple[int, Any]:
        """Start a credentials task from a CredentialsUpdateSpec; 202 with a Task."""
        self.advance()
        try:
            operation, targets, policy = self._parse_spec(spec)
            if self._running() >= MAX_CONCURRENT:
                raise _Refused(
                    "PASSWORD_MANAGEMENT_CONCURRENT_OPERATIONS_LIMIT", LIMIT_MESSAGE, 403
                )
            self._check_resources(operation, targets)
        except _Refused as refused:
            return refused.answer
        now = _now()
        task = _Task(
            id=str(uuid.uuid4()),
            operation=operation,
            created=now,
            due=time.monotonic() + self.task_delay,
            policy=policy,
        )
        seen_resources: set[str] = set()
        for element, password in targets:
            resource = element["resource"]
            task.items.append(
                _Item(element["id"], password, self._subtask(operation, element, now))
            )
            if resource["resourceId"] not in seen_resources:
                seen_resources.add(resource["resourceId"])
                task.resources.append(
                    {
                        "resourceId": resource["resourceId"],
                        "fqdn": resource["resourceName"],
                        "name": resource["resourceName"],
                        "type": resource["resourceType"],
                    }
                )
        self.tasks[task.id] = task
        return 202, self.task_view(task)

    def _parse_spec(
        self, spec: Any
    ) -> tuple[str, list[tuple[dict[str, Any], str | None]], dict[str, Any] | None]:
        if not isinstance(spec, dict):
            raise _Refused("INVALID_INPUT", "The request body must be a CredentialsUpdateSpec")
        operation = spec.get("operationType")
        if operation not in OPERATIONS:
            raise _Refused(
                "INVALID_INPUT", f"operationType must be one of: {', '.join(OPERATIONS)}"
            )
        elements = spec.get("elements")
        if not isinstance(elements, list) or not elements:
            raise _Refused("INVALID_INPUT", "elements must list at least one resource")
        policy = None
        if operation == "UPDATE_AUTO_ROTATE_POLICY":
            policy = spec.get("autoRotatePolicy")
            if not isinstance(policy, dict) or not isinstance(
                policy.get("enableAutoRotatePolicy"), bool
            ):
                raise _Refused(
                    "INVALID_INPUT", "autoRotatePolicy.enableAutoRotatePolicy is required"
                )
            days = policy.get("frequencyInDays")
            if policy["enableAutoRotatePolicy"] and (
                not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 90
            ):
                raise _Refused(
                    "INVALID_AUTO_ROTATE_FREQUENCY",
                    "autoRotatePolicy.frequencyInDays must be between 1 and 90",
                )
        targets: list[tuple[dict[str, Any], str | None]] = []
        for element in elements:
            targets.extend(self._resolve(element, operation))
        ids = [element["id"] for element, _ in targets]
        if len(set(ids)) != len(ids):
            raise _Refused("INVALID_INPUT", "The same credential is listed twice")
        if operation == "REMEDIATE" and len(targets) != 1:
            raise _Refused(
                "INVALID_INPUT", "Passwords can be remediated for only one account at a time"
            )
        return operation, targets, policy

    def _resolve(self, element: Any, operation: str) -> list[tuple[dict[str, Any], str | None]]:
        if not isinstance(element, dict) or not isinstance(element.get("credentials"), list):
            raise _Refused("INVALID_INPUT", "Each element needs resourceType and credentials")
        rtype = element.get("resourceType")
        name = element.get("resourceName")
        rid = element.get("resourceId")
        if not isinstance(rtype, str) or not (isinstance(name, str) or isinstance(rid, str)):
            raise _Refused("INVALID_INPUT", "Each element needs resourceType and resourceName")
        if not element["credentials"]:
            raise _Refused("INVALID_INPUT", "Each element needs at least one credential")
        out = []
        for credential in element["credentials"]:
            if not isinstance(credential, dict) or not isinstance(credential.get("username"), str):
                raise _Refused("INVALID_INPUT", "Each credential needs a username")
            match = next(
                (
                    e
                    for e in self.inventory.credentials
                    if e["resource"]["resourceType"] == rtype
                    and (name is None or e["resource"]["resourceName"] == name)
                    and (rid is None or e["resource"]["resourceId"] == rid)
                    and e["username"] == credential["username"]
                    and credential.get("credentialType") in (None, e["credentialType"])
                ),
                None,
            )
            if match is None:
                shown = name if isinstance(name, str) else rid
                raise _Refused(
                    "CREDENTIAL_NOT_FOUND",
                    f"No {rtype} credential for user {credential['username']} on {shown}",
                )
            password = credential.get("password")
            if operation in ("UPDATE", "REMEDIATE"):
                if not isinstance(password, str) or not password:
                    raise _Refused("INVALID_INPUT", f"{operation} needs a password")
            out.append((match, password if isinstance(password, str) else None))
        return out

    def _running(self) -> int:
        return sum(1 for task in self.tasks.values() if task.status == "IN_PROGRESS")

    def _check_resources(
        self, operation: str, targets: list[tuple[dict[str, Any], str | None]], skip: str = ""
    ) -> None:
        held = {
            item.subtask["_resourceId"]
            for task in self.tasks.values()
            if task.status in _OPEN and task.id != skip
            for item in task.items
        }
        for element, _ in targets:
            resource = element["resource"]
            name = resource["resourceName"]
            fault = self._fault("inactive", name, operation)
            if fault is not None:
                raise _Refused(
                    "RESOURCE_IS_NOT_IN_ACTIVE_STATE",
                    fault.message or f"Resource {name} is not in ACTIVE state",
                )
            if resource["resourceId"] in held or self._fault("busy", name, operation):
                raise _Refused(
                    "PASSWORD_OPERATION_IN_PROGRESS_FOR_RESOURCE",
                    f"A password operation is already in progress for resource {name}",
                )

    def _subtask(self, operation: str, element: dict[str, Any], now: str) -> dict[str, Any]:
        resource = element["resource"]
        verb = {
            "UPDATE": "Update password",
            "ROTATE": "Rotate password",
            "REMEDIATE": "Remediate password",
            "UPDATE_AUTO_ROTATE_POLICY": "Update auto-rotate policy",
        }[operation]
        return {
            "id": str(uuid.uuid4()),
            "resourceName": resource["resourceName"],
            "name": f"{verb} of {element['username']}",
            "description": f"{verb} of {element['username']} on {resource['resourceName']}",
            "creationTimestamp": now,
            "status": "IN_PROGRESS",
            "entityType": resource["resourceType"],
            "username": element["username"],
            "credentialType": element["credentialType"],
            # Not part of any view: which resource this sub-task holds.
            "_resourceId": resource["resourceId"],
        }

    # -- running ------------------------------------------------------------------------

    def _finish(self, task: _Task) -> None:
        now_dt = dt.datetime.now(dt.timezone.utc)
        now = iso(now_dt)
        for item in task.items:
            sub = item.subtask
            if sub["status"] != "IN_PROGRESS":
                continue
            element = self.inventory.by_id.get(item.credential_id)
            fault = self._fault("fail", sub["resourceName"], task.operation)
            sub["completionTimestamp"] = now
            if element is None or fault is not None:
                message = (
                    fault.message
                    if fault is not None and fault.message
                    else f"{sub['name']} failed on {sub['resourceName']}"
                )
                sub["status"] = "FAILED"
                sub["errors"] = [_error("PASSWORD_OPERATION_FAILED", message)]
                continue
            self._apply(task, item, element, now_dt)
            sub["status"] = "SUCCESSFUL"
            sub.pop("errors", None)
        failed = any(item.subtask["status"] == "FAILED" for item in task.items)
        task.status = "FAILED" if failed else "SUCCESSFUL"
        task.completed = now

    def _apply(self, task: _Task, item: _Item, element: dict[str, Any], now: dt.datetime) -> None:
        if task.operation == "UPDATE_AUTO_ROTATE_POLICY":
            assert task.policy is not None  # noqa: S101 - checked by _parse_spec
            if task.policy["enableAutoRotatePolicy"]:
                days = task.policy["frequencyInDays"]
                element["autoRotatePolicy"] = {
                    "frequencyInDays": days,
                    "nextSchedule": iso(now + dt.timedelta(days=days)),
                }
            else:
                element.pop("autoRotatePolicy", None)
            return
        old = element.get("password")
        new = self.inventory.password() if task.operation == "ROTATE" else item.password
        assert new is not None  # noqa: S101 - UPDATE and REMEDIATE carry one
        element["password"] = new
        element["modificationTimestamp"] = iso(now)
        if old is not None:
            item.subtask["oldPassword"] = old
        item.subtask["newPassword"] = new
        self._expiry_after_change[element["id"]] = now + dt.timedelta(days=NEW_PASSWORD_DAYS)
        policy = element.get("autoRotatePolicy")
        if policy and policy.get("frequencyInDays"):
            policy["nextSchedule"] = iso(now + dt.timedelta(days=policy["frequencyInDays"]))

    # -- retry and cancel ----------------------------------------------------------------

    def retry(self, task_id: str, spec: Any) -> tuple[int, Any]:
        """Run the failed sub-tasks of a FAILED task again; 202 with the Task."""
        self.advance()
        task = self.tasks.get(task_id)
        if task is None:
            return _rejected("TASK_NOT_FOUND", "Credentials task not found", 404)
        if not isinstance(spec, dict) or spec.get("operationType") != task.operation:
            return _rejected(
                "INVALID_INPUT", f"The retry spec must have operationType {task.operation}"
            )
        if task.status != "FAILED":
            return _rejected("TASK_NOT_RETRYABLE", f"The task is {task.status}; only FAILED")
        if self._running() >= MAX_CONCURRENT:
            return _rejected("PASSWORD_MANAGEMENT_CONCURRENT_OPERATIONS_LIMIT", LIMIT_MESSAGE, 403)
        again: list[tuple[dict[str, Any], str | None]] = [
            (self.inventory.by_id[item.credential_id], None)
            for item in task.items
            if item.subtask["status"] == "FAILED" and item.credential_id in self.inventory.by_id
        ]
        try:
            self._check_resources(task.operation, again, skip=task.id)
        except _Refused as refused:
            return refused.answer
        passwords = _passwords_in(spec)
        for item in task.items:
            sub = item.subtask
            if sub["status"] == "FAILED":
                key = (sub["resourceName"], sub["username"])
                if task.operation in ("UPDATE", "REMEDIATE") and passwords.get(key):
                    item.password = passwords[key]
                sub["status"] = "IN_PROGRESS"
                sub.pop("completionTimestamp", None)
                sub.pop("errors", None)
        task.status = "IN_PROGRESS"
        task.completed = None
        task.due = time.monotonic() + self.task_delay
        return 202, self.task_view(task)

    def cancel(self, task_id: str) -> tuple[int, Any]:
        """Cancel a FAILED task and free its resources; 202 with the Task."""
        self.advance()
        task = self.tasks.get(task_id)
        if task is None:
            return _rejected("TASK_NOT_FOUND", "Credentials task not found", 404)
        if task.status != "FAILED":
            return _rejected("TASK_NOT_CANCELLABLE", f"The task is {task.status}; only FAILED")
        now = _now()
        for item in task.items:
            if item.subtask["status"] in ("FAILED", "IN_PROGRESS", "PENDING"):
                item.subtask["status"] = "USER_CANCELLED"
                item.subtask["completionTimestamp"] = now
        task.status = "USER_CANCELLED"
        task.completed = now
        return 202, self.task_view(task)

    # -- views ---------------------------------------------------------------------------

    def task_view(self, task: _Task) -> dict[str, Any]:
        """The generic ``Task`` (PATCH answers, /v1/tasks/{id}); never a password."""
        status = "CANCELLED" if task.status == "USER_CANCELLED" else task.status
        view: dict[str, Any] = {
            "id": task.id,
            "name": _task_name(task.operation),
            "type": f"CREDENTIALS_{task.operation}",
            "status": status,
            "creationTimestamp": task.created,
            "subTasks": [_generic_subtask(item.subtask, task.resources) for item in task.items],
            "resources": copy.deepcopy(task.resources),
            "isCancellable": task.status == "FAILED",
            "isRetryable": task.status == "FAILED",
        }
        if task.completed:
            view["completionTimestamp"] = task.completed
        errors = _errors_of(task)
        if errors:
            view["errors"] = errors
        return view

    def credentials_task_view(self, task: _Task) -> dict[str, Any]:
        """``CredentialsTask``: sub-tasks carry oldPassword/newPassword as the spec allows."""
        view: dict[str, Any] = {
            "id": task.id,
            "name": _task_name(task.operation),
            "type": task.operation,
            "creationTimestamp": task.created,
            "status": task.status,
            "subTasks": [
                {k: v for k, v in item.subtask.items() if not k.startswith("_")}
                for item in task.items
            ],
            "isAutoRotate": False,
        }
        if task.completed:
            view["completionTimestamp"] = task.completed
        errors = _errors_of(task)
        if errors:
            view["errors"] = errors
        return copy.deepcopy(view)

    def get_task(self, task_id: str, generic: bool = False) -> tuple[int, Any]:
        """GET /v1/credentials/tasks/{id} (or /v1/tasks/{id} when ``generic``)."""
        self.advance()
        task = self.tasks.get(task_id)
        if task is None:
            return _rejected("TASK_NOT_FOUND", "Task not found", 404)
        return 200, self.task_view(task) if generic else self.credentials_task_view(task)

    def tasks_page(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        """GET /v1/credentials/tasks?limit=N: newest first."""
        self.advance()
        limit_text = query.get("limit", [""])[0]
        tasks = list(reversed(self.tasks.values()))
        if limit_text:
            if not limit_text.isdigit():
                return _rejected("INVALID_INPUT", "limit must be a number >= 0")
            tasks = tasks[: int(limit_text)]
        elements = [self.credentials_task_view(task) for task in tasks]
        meta = {
            "pageNumber": 0,
            "pageSize": len(elements),
            "totalElements": len(elements),
            "totalPages": 1 if elements else 0,
        }
        return 200, {"elements": elements, "pageMetadata": meta}

    def resource_credentials(self, task_id: str) -> tuple[int, Any]:
        """GET /v1/credentials/tasks/{id}/resource-credentials: what the task changes."""
        self.advance()
        task = self.tasks.get(task_id)
        if task is None:
            return _rejected("TASK_NOT_FOUND", "Task not found", 404)
        grouped: dict[str, dict[str, Any]] = {}
        for item in task.items:
            sub = item.subtask
            entry = grouped.setdefault(
                sub["_resourceId"],
                {
                    "resourceId": sub["_resourceId"],
                    "resourceName": sub["resourceName"],
                    "resourceType": sub["entityType"],
                    "credentials": [],
                },
            )
            entry["credentials"].append(
                {"credentialType": sub["credentialType"], "username": sub["username"]}
            )
        return 200, list(grouped.values())

    # -- expirations ---------------------------------------------------------------------

    def start_expiration(self, spec: Any) -> tuple[int, Any]:
        """POST /v1/credentials/expirations: 202 with a CredentialsExpiration IN_PROGRESS."""
        self.advance()
        if not isinstance(spec, dict) or spec.get("resourceType") not in RESOURCE_TYPES:
            return _rejected(
                "INVALID_INPUT", f"resourceType must be one of: {', '.join(RESOURCE_TYPES)}"
            )
        domain = spec.get("domainName")
        wanted = spec.get("credentialIds")
        if domain is not None and not isinstance(domain, str):
            return _rejected("INVALID_INPUT", "domainName must be a string")
        if wanted is not None and (
            not isinstance(wanted, list) or not all(isinstance(i, str) for i in wanted)
        ):
            return _rejected("INVALID_INPUT", "credentialIds must be a list of ids")
        filters = {"resourceType": spec["resourceType"]}
        if domain:
            filters["domainName"] = domain
        ids = [
            e["id"]
            for e in self.inventory.credentials
            if Inventory.matches(e, filters) and (wanted is None or e["id"] in wanted)
        ]
        check = _Expiration(
            id=str(uuid.uuid4()),
            created=_now(),
            due=time.monotonic() + self.task_delay,
            credential_ids=ids,
        )
        self.expirations[check.id] = check
        return 202, self._expiration_view(check)

    def get_expiration(self, check_id: str) -> tuple[int, Any]:
        """GET /v1/credentials/expirations/{id}."""
        self.advance()
        check = self.expirations.get(check_id)
        if check is None:
            return _rejected("EXPIRATION_TASK_NOT_FOUND", "Expiration task not found", 404)
        return 200, self._expiration_view(check)

    def _expiration_view(self, check: _Expiration) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": check.id,
            "status": check.status,
            "elements": copy.deepcopy(check.elements),
            "creationTimestamp": check.created,
        }
        if check.completed:
            view["completionTimestamp"] = check.completed
        return view

    def _finish_expiration(self, check: _Expiration) -> None:
        now_dt = dt.datetime.now(dt.timezone.utc)
        now = iso(now_dt)
        failures = 0
        for credential_id in check.credential_ids:
            element = self.inventory.by_id.get(credential_id)
            if element is None:
                continue
            resource = element["resource"]
            entry: dict[str, Any] = {
                "id": element["id"],
                "username": element["username"],
                "resource": copy.deepcopy(resource),
                "creationTimestamp": check.created,
                "completionTimestamp": now,
            }
            fault = self._fault("fail", resource["resourceName"], "EXPIRATION")
            if fault is not None:
                failures += 1
                message = fault.message or f"Unable to connect to {resource['resourceName']}"
                expiry = {
                    "lastCheckedDate": now,
                    "connectivityStatus": "ERROR",
                    "status": "UNKNOWN",
                    "connectivityErrorDetails": {
                        "errorCode": "CREDENTIAL_CONNECTIVITY_CHECK_FAILED",
                        "arguments": [resource["resourceName"]],
                        "errorMessage": message,
                        "remediationMessage": REMEDIATION_MESSAGE,
                        "referenceToken": check.id[:6].upper(),
                    },
                }
                entry["errors"] = [_error("CREDENTIAL_EXPIRATION_CHECK_FAILED", message)]
            else:
                expiry = self._expiry(element, now_dt)
            entry["expiry"] = expiry
            element["expiry"] = copy.deepcopy(expiry)
            check.elements.append(entry)
        check.status = "FAILED" if failures and failures == len(check.elements) else "COMPLETED"
        check.completed = now

    def _expiry(self, element: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        """Deterministic per seed and credential: about 10% expired, 15% within 14 days,
        the rest 30 to 365 days away; a password changed here expires 90 days later."""
        expires = self._expiry_after_change.get(element["id"])
        if expires is None:
            digest = hashlib.sha256(f"{self.seed}:{element['id']}".encode()).digest()
            number = int.from_bytes(digest[:8], "big")
            bucket, rest = number % 20, number // 20
            if bucket < 2:
                days = -(1 + rest % 60)
            elif bucket < 5:
                days = 1 + rest % (EXPIRING_DAYS - 1)
            else:
                days = 30 + rest % 336
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            expires = midnight + dt.timedelta(days=days, hours=12)
        left = expires - now
        if left.total_seconds() <= 0:
            status = "EXPIRED"
        elif left <= dt.timedelta(days=EXPIRING_DAYS):
            status = "EXPIRING"
        else:
            status = "ACTIVE"
        return {
            "expiryDate": iso(expires),
            "lastCheckedDate": iso(now),
            "connectivityStatus": "ACTIVE",
            "status": status,
        }


def _task_name(operation: str) -> str:
    return {
        "UPDATE": "Update passwords",
        "ROTATE": "Rotate passwords",
        "REMEDIATE": "Remediate password",
        "UPDATE_AUTO_ROTATE_POLICY": "Update auto-rotate policy",
    }[operation]


def _generic_subtask(sub: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, Any]:
    status = "CANCELLED" if sub["status"] == "USER_CANCELLED" else sub["status"]
    view: dict[str, Any] = {
        "name": sub["name"],
        "description": sub["description"],
        "status": status,
        "creationTimestamp": sub["creationTimestamp"],
        "resources": [copy.deepcopy(r) for r in resources if r["resourceId"] == sub["_resourceId"]],
    }
    if "completionTimestamp" in sub:
        view["completionTimestamp"] = sub["completionTimestamp"]
    if sub.get("errors"):
        view["errors"] = copy.deepcopy(sub["errors"])
    return view


def _errors_of(task: _Task) -> list[dict[str, Any]]:
    return [
        copy.deepcopy(error)
        for item in task.items
        if item.subtask["status"] == "FAILED"
        for error in item.subtask.get("errors", [])
    ]


def _passwords_in(spec: dict[str, Any]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    elements = spec.get("elements")
    for element in elements if isinstance(elements, list) else []:
        if not isinstance(element, dict) or not isinstance(element.get("credentials"), list):
            continue
        for credential in element["credentials"]:
            if (
                isinstance(credential, dict)
                and isinstance(credential.get("username"), str)
                and isinstance(credential.get("password"), str)
            ):
                name = element.get("resourceName")
                found[(str(name), credential["username"])] = credential["password"]
    return found
