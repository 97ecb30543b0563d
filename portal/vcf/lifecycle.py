"""Credential lifecycle through SDDC Manager: the bodies sent and the answers read back.

``PATCH /v1/credentials`` takes a ``CredentialsUpdateSpec`` and answers a ``Task``;
``/v1/credentials/tasks/{id}`` answers a ``CredentialsTask`` whose sub-tasks may carry
``oldPassword`` and ``newPassword`` (spec 9.1.0.0). Those two never leave this package:
their values are masked in every text of the task and the fields dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .models import CredentialExpiry, ExpirationCheck, VcfError, text_of

OPERATIONS = ("UPDATE", "ROTATE", "REMEDIATE", "UPDATE_AUTO_ROTATE_POLICY")
# Resource types an expiry check accepts (CredentialsExpirationSpec.resourceType, 9.1).
EXPIRATION_RESOURCE_TYPES = (
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
TASK_SECRETS = ("oldPassword", "newPassword", "password")
MAX_ID = 256


def update_spec(
    operation: str, elements: list[dict[str, Any]], auto_rotate: dict[str, Any] | None
) -> dict[str, Any]:
    """Build a CredentialsUpdateSpec; ValueError for what SDDC Manager would refuse anyway."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}")
    if not isinstance(elements, list) or not elements:
        raise ValueError("elements must list at least one ResourceCredentials")
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get("credentials"), list):
            raise ValueError("each element needs resourceType and credentials")
    body: dict[str, Any] = {"operationType": operation, "elements": elements}
    if operation == "UPDATE_AUTO_ROTATE_POLICY":
        if not isinstance(auto_rotate, dict) or "enableAutoRotatePolicy" not in auto_rotate:
            raise ValueError(
                "UPDATE_AUTO_ROTATE_POLICY needs auto_rotate with enableAutoRotatePolicy"
            )
        body["autoRotatePolicy"] = auto_rotate
    elif auto_rotate is not None:
        raise ValueError("auto_rotate goes with UPDATE_AUTO_ROTATE_POLICY only")
    return body


def passwords_in(elements: Any) -> tuple[str, ...]:
    """Every password in a list of ResourceCredentials (to mask in error messages)."""
    found = []
    for element in elements if isinstance(elements, list) else []:
        credentials = element.get("credentials") if isinstance(element, dict) else None
        for credential in credentials if isinstance(credentials, list) else []:
            password = credential.get("password") if isinstance(credential, dict) else None
            if isinstance(password, str) and password:
                found.append(password)
    return tuple(found)


def task_id_of(task_id: str) -> str:
    """Check an id before it goes into a URL path (it is quoted there too)."""
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_ID:
        raise ValueError("a task id is a non-empty string of at most 256 characters")
    return task_id


def scrub_task(body: Any, what: str, mask: Callable[[str, tuple[str, ...]], str]) -> dict:
    """A task answer without any password: the fields dropped, their values masked in text."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise VcfError("malformed", f"{what} did not answer a task")
    if not isinstance(body.get("status"), str):
        raise VcfError("malformed", f"{what} answered a task without a status")
    secrets = tuple(sorted(set(_secret_values(body)), key=len, reverse=True))
    return _scrubbed(body, secrets, mask)


def _secret_values(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in TASK_SECRETS and isinstance(value, str) and value:
                found.append(value)
            else:
                found.extend(_secret_values(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_secret_values(item))
    return found


def _scrubbed(node: Any, secrets: tuple[str, ...], mask: Callable) -> Any:
    if isinstance(node, dict):
        return {
            key: _scrubbed(value, secrets, mask)
            for key, value in node.items()
            if key not in TASK_SECRETS
        }
    if isinstance(node, list):
        return [_scrubbed(item, secrets, mask) for item in node]
    if isinstance(node, str) and secrets:
        return mask(node, secrets)
    return node


def retry_spec(task: dict[str, Any]) -> dict[str, Any]:
    """The CredentialsUpdateSpec of a retry, rebuilt from a CredentialsTask's sub-tasks
    (the failed ones, or all when none says FAILED); passwords are not in it."""
    operation = task.get("type")
    if operation not in OPERATIONS:
        raise VcfError("malformed", "the credentials task does not say its operation type")
    subtasks = [s for s in task.get("subTasks") or [] if isinstance(s, dict)]
    failed = [s for s in subtasks if s.get("status") == "FAILED"] or subtasks
    elements: dict[tuple[str, str], dict[str, Any]] = {}
    for sub in failed:
        name, rtype, username = sub.get("resourceName"), sub.get("entityType"), sub.get("username")
        if not (
            isinstance(name, str)
            and name
            and isinstance(rtype, str)
            and rtype
            and isinstance(username, str)
            and username
        ):
            continue
        credential: dict[str, Any] = {"username": username}
        if isinstance(sub.get("credentialType"), str):
            credential["credentialType"] = sub["credentialType"]
        entry = elements.setdefault(
            (name, rtype), {"resourceName": name, "resourceType": rtype, "credentials": []}
        )
        entry["credentials"].append(credential)
    if not elements:
        raise VcfError("malformed", "the credentials task names no resource to retry")
    return {"operationType": operation, "elements": list(elements.values())}


def expiration_spec(
    resource_type: str, domain_name: str | None, credential_ids: list[str] | None
) -> dict[str, Any]:
    """Build a CredentialsExpirationSpec."""
    if not isinstance(resource_type, str) or not resource_type:
        raise ValueError(f"resource_type is required, e.g. one of {EXPIRATION_RESOURCE_TYPES}")
    spec: dict[str, Any] = {"resourceType": resource_type}
    if domain_name:
        spec["domainName"] = domain_name
    if credential_ids is not None:
        spec["credentialIds"] = list(credential_ids)
    return spec


def parse_expiration(body: Any, clean: Callable[[str], str]) -> ExpirationCheck:
    """Turn a CredentialsExpiration into an ExpirationCheck (VcfError if unusable)."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise VcfError("malformed", "the expiry check answer has no status")
    check_id = body.get("id")
    elements = body.get("elements") or []
    if not isinstance(elements, list):
        raise VcfError("malformed", "the expiry check answer has no list of elements")
    parsed = []
    for element in elements:
        if not isinstance(element, dict) or not isinstance(element.get("id"), str):
            continue
        resource = element.get("resource")
        resource = resource if isinstance(resource, dict) else {}
        expiry = element.get("expiry")
        expiry = expiry if isinstance(expiry, dict) else {}
        details = expiry.get("connectivityErrorDetails")
        details = details if isinstance(details, dict) else {}
        parsed.append(
            CredentialExpiry(
                credential_id=element["id"],
                username=text_of(element.get("username")),
                resource_name=text_of(resource.get("resourceName")),
                resource_type=text_of(resource.get("resourceType")),
                expiry_date=text_of(expiry.get("expiryDate")),
                status=text_of(expiry.get("status")),
                connectivity_status=text_of(expiry.get("connectivityStatus")),
                last_checked=text_of(expiry.get("lastCheckedDate")),
                error=_element_error(element, expiry, clean),
                connectivity_error=_cleaned(details.get("errorMessage"), clean),
                remediation=_cleaned(details.get("remediationMessage"), clean),
            )
        )
    return ExpirationCheck(
        id=check_id if isinstance(check_id, str) else "",
        status=body["status"],
        elements=tuple(parsed),
    )


def _element_error(element: dict, expiry: dict, clean: Callable[[str], str]) -> str | None:
    for error in element.get("errors") or []:
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return clean(error["message"])
    details = expiry.get("connectivityErrorDetails")
    if isinstance(details, dict) and isinstance(details.get("errorMessage"), str):
        return clean(details["errorMessage"])
    return None


def _cleaned(value: Any, clean: Callable[[str], str]) -> str | None:
    return clean(value) if isinstance(value, str) and value.strip() else None
