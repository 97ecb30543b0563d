"""Acting on credentials through SDDC Manager: rotate, update, remediate, auto-rotate policy.

A person queues an action (`queue`); the scheduler's process (action_runs.py) submits it to
SDDC Manager as one credentials task and follows the task to its end (`advance`), then syncs
the source so the new passwords and their history appear. Every credential's outcome is audited.

Secrets: the password of an update or remediation is kept encrypted on the action only until
SDDC Manager has accepted it, then erased; task views from SDDC Manager carry old and new
passwords, which the VCF client removes before anything here sees them.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections import defaultdict
from datetime import timedelta

from flask import current_app
from sqlalchemy import insert, select

from .. import audit
from ..environments.service import endpoint_settings
from ..models import Credential, CredentialAction, CredentialActionItem, Endpoint, Environment
from ..platform import clock, wakeup
from ..platform.crypto import ACTION_PASSWORD, cipher
from ..platform.extensions import db
from ..vcf import SddcManagerClient, VcfError, client_for

log = logging.getLogger("portal.lifecycle.actions")

OPERATIONS = {
    "rotate": "ROTATE",
    "update": "UPDATE",
    "remediate": "REMEDIATE",
    "auto_rotate": "UPDATE_AUTO_ROTATE_POLICY",
}
FINAL_STATES = ("success", "partial", "failed", "cancelled")
# An update through VCF Operations fleet management (fleet_updates.py), not SDDC Manager.
FLEET_UPDATE = "fleet_update"
MAX_ITEMS = 500
MAX_PASSWORD = 128
AUTO_ROTATE_DAYS = (1, 90)
BUSY_WAIT = timedelta(seconds=30)
LOST_AFTER = timedelta(minutes=30)
# Credentials per transaction when an action ends (each has an audit line, an ORM INSERT).
AUDIT_SLICE = 100
_GENERATED_SPECIALS = "@!#$%^&*"


class ActionError(Exception):
    """A request we refuse, with the field it is about."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def generate_password(length: int = 20) -> str:
    """A password SDDC Manager accepts for ESXi, vCenter, NSX and appliances: 20 characters with
    upper and lower case letters, digits and one of @!#$%^&*, no character three times in a
    row, starting with a letter."""
    alphabet = string.ascii_letters + string.digits + _GENERATED_SPECIALS
    while True:
        chars = [secrets.choice(string.ascii_letters)]
        chars += [secrets.choice(alphabet) for _ in range(length - 1)]
        text = "".join(chars)
        if (
            any(c.islower() for c in text)
            and any(c.isupper() for c in text)
            and any(c.isdigit() for c in text)
            and any(c in _GENERATED_SPECIALS for c in text)
            and not any(text[i] == text[i + 1] == text[i + 2] for i in range(len(text) - 2))
        ):
            return text


# --- requests -------------------------------------------------------------------------------


def selection(credential_ids: list[int]) -> tuple[Environment, list[Credential]]:
    """The credentials of an action, checked: they exist, are SDDC Manager's, are present,
    and belong to one environment whose SDDC Manager is configured."""
    ids = list(dict.fromkeys(credential_ids))
    if not ids:
        raise ActionError("credential_ids", "Select at least one credential.")
    if len(ids) > MAX_ITEMS:
        raise ActionError("credential_ids", f"At most {MAX_ITEMS} credentials per action.")
    creds = list(db.session.scalars(select(Credential).where(Credential.id.in_(ids))))
    found = {c.id for c in creds}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ActionError("credential_ids", f"No such credential: {missing[0]}.")
    if any(c.source != "manager" for c in creds):
        raise ActionError(
            "credential_ids", "Only credentials from SDDC Manager can be acted on there."
        )
    if any(not c.present for c in creds):
        raise ActionError("credential_ids", "A credential absent from SDDC Manager is selected.")
    environments = {c.environment_id for c in creds}
    if len(environments) != 1:
        raise ActionError("credential_ids", "Select credentials of one environment per action.")
    environment = db.session.get(Environment, environments.pop())
    if environment is None or _manager(environment.id) is None:
        raise ActionError("credential_ids", "This environment has no SDDC Manager configured.")
    order = {cred_id: index for index, cred_id in enumerate(ids)}
    return environment, sorted(creds, key=lambda c: order[c.id])


def _manager(environment_id: int) -> Endpoint | None:
    return db.session.scalar(
        select(Endpoint).where(
            Endpoint.environment_id == environment_id, Endpoint.source == "manager"
        )
    )


def wake(settings) -> None:
    """After queueing (committed): wake the scheduler's process to start it now."""
    wakeup.poke(settings)


def queue(
    requested_by: str,
    operation: str,
    credential_ids: list[int],
    password: str | None = None,
    auto_rotate: dict | None = None,
) -> CredentialAction:
    """Check and queue an action (the caller commits, then calls `wake`); every credential is
    audited as requested. On PostgreSQL the commit itself wakes the scheduler."""
    if operation not in OPERATIONS:
        raise ActionError("operation", f"The operation is one of: {', '.join(OPERATIONS)}.")
    environment, creds = selection(credential_ids)
    action = CredentialAction(
        environment_id=environment.id, operation=operation, requested_by=requested_by[:128]
    )
    if operation in ("update", "remediate"):
        if not password or len(password) > MAX_PASSWORD:
            raise ActionError("password", f"Give the password (1 to {MAX_PASSWORD} characters).")
        if operation == "remediate" and len(creds) != 1:
            raise ActionError("credential_ids", "Remediate one credential at a time.")
        action.password_enc = cipher().encrypt(password, ACTION_PASSWORD)
    elif password:
        raise ActionError("password", "Only update and remediate take a password.")
    if operation == "auto_rotate":
        if not isinstance(auto_rotate, dict) or not isinstance(auto_rotate.get("enabled"), bool):
            raise ActionError("auto_rotate", "Say whether auto-rotation is enabled.")
        action.auto_rotate_enabled = auto_rotate["enabled"]
        if auto_rotate["enabled"]:
            days = auto_rotate.get("frequency_days")
            low, high = AUTO_ROTATE_DAYS
            if not isinstance(days, int) or isinstance(days, bool) or not low <= days <= high:
                raise ActionError(
                    "auto_rotate.frequency_days", f"Rotate every {low} to {high} days."
                )
            action.auto_rotate_days = days
    elif auto_rotate is not None:
        raise ActionError("auto_rotate", "Only auto_rotate takes a policy.")
    db.session.add(action)
    db.session.flush()
    # One statement for every item (hundreds in a bulk action), not one INSERT each.
    db.session.execute(
        insert(CredentialActionItem),
        [
            {
                "action_id": action.id,
                "credential_id": cred.id,
                "resource_name": cred.hostname,
                "resource_type": cred.resource_type,
                "username": cred.username,
                "credential_type": cred.credential_type,
            }
            for cred in creds
        ],
    )
    db.session.expire(action, ["items"])
    wakeup.announce(db.session, current_app.config["PORTAL_SETTINGS"])
    audit.record_many(
        f"credential.{operation}",
        [
            (
                audit_target(environment.name, cred.hostname, cred.username, cred.credential_type),
                "requested",
                {"action": action.id},
            )
            for cred in creds
        ],
    )
    return action


def audit_target(environment: str, host: str, username: str, credential_type: str) -> str:
    return f"{environment}/{host}/{username} ({credential_type})"


def as_dict(action: CredentialAction) -> dict:
    """An action and its items as the API and the page show them (no password, ever)."""
    return {
        "id": action.id,
        "environment_id": action.environment_id,
        "operation": action.operation,
        "state": action.state,
        "requested_by": action.requested_by,
        "created_at": clock.iso(action.created_at),
        "started_at": clock.iso(action.started_at),
        "finished_at": clock.iso(action.finished_at),
        "upstream_task_id": action.upstream_task_id,
        "error": action.error,
        "auto_rotate": (
            {"enabled": action.auto_rotate_enabled, "frequency_days": action.auto_rotate_days}
            if action.operation == "auto_rotate"
            else None
        ),
        "retryable": action.operation != FLEET_UPDATE
        and action.state in ("failed", "partial")
        and bool(action.upstream_task_id),
        "cancellable": action.state == "queued"
        or (
            action.operation != FLEET_UPDATE
            and action.state in ("failed", "partial")
            and bool(action.upstream_task_id)
        ),
        "items": [
            {
                "credential_id": item.credential_id,
                "hostname": item.resource_name,
                "username": item.username,
                "credential_type": item.credential_type,
                "state": item.state,
                "error": item.error,
            }
            for item in sorted(action.items, key=lambda i: i.id)
        ],
    }


def recent(environment_id: int, limit: int = 20) -> list[CredentialAction]:
    return list(
        db.session.scalars(
            select(CredentialAction)
            .where(CredentialAction.environment_id == environment_id)
            .order_by(CredentialAction.id.desc())
            .limit(limit)
        )
    )


# --- the request SDDC Manager gets (carried out in action_runs.py) ----------------------------


def task_elements(action: CredentialAction, items: list[CredentialActionItem]) -> list[dict]:
    password = (
        cipher().decrypt(action.password_enc, ACTION_PASSWORD) if action.password_enc else None
    )
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for item in items:
        entry = {"credentialType": item.credential_type, "username": item.username}
        if password is not None:
            entry["password"] = password
        grouped[(item.resource_name, item.resource_type)].append(entry)
    return [
        {"resourceName": name, "resourceType": rtype, "credentials": credentials}
        for (name, rtype), credentials in grouped.items()
    ]


def manager_client(action: CredentialAction) -> SddcManagerClient:
    endpoint = _manager(action.environment_id)
    if endpoint is None:
        raise VcfError("not_found", "the environment's SDDC Manager is no longer configured")
    return client_for("manager", endpoint_settings(endpoint))


# --- retry and cancel (a person, from a page or the API) --------------------------------------


def retry(action: CredentialAction, password: str | None = None) -> None:
    """Retry the failed credentials of an ended action through SDDC Manager's task retry."""
    if action.operation == FLEET_UPDATE:
        raise ActionError("state", "A fleet management update is not retried: start a new one.")
    if action.state not in ("failed", "partial") or not action.upstream_task_id:
        raise ActionError("state", "Only a failed or partial action SDDC Manager ran is retried.")
    failed = [i for i in action.items if i.state == "failed"]
    if action.operation in ("update", "remediate") and not password:
        raise ActionError("password", "Give the password again to retry.")
    elements = None
    if password:
        action.password_enc = cipher().encrypt(password, ACTION_PASSWORD)
        elements = task_elements(action, failed)
    try:
        with manager_client(action) as client:
            task = client.retry_credentials_task(
                action.upstream_task_id,
                OPERATIONS[action.operation] if elements else None,
                elements,
            )
    finally:
        action.password_enc = None
    action.upstream_task_id = str(task.get("id") or action.upstream_task_id)[:128]
    action.state, action.finished_at, action.error = "running", None, None
    action.heartbeat_at = clock.now()
    for item in failed:
        item.state, item.error = "running", None


def cancel(action: CredentialAction) -> None:
    """Cancel a queued action here, or a failed task in SDDC Manager."""
    if action.state == "queued":
        action.password_enc = None
        action.state, action.finished_at = "cancelled", clock.now()
        for item in action.items:
            item.state, item.error = "cancelled", "Cancelled before it was sent."
        return
    if (
        action.operation == FLEET_UPDATE
        or action.state not in ("failed", "partial")
        or not action.upstream_task_id
    ):
        raise ActionError(
            "state", "Only a queued action or a failed SDDC Manager task is cancelled."
        )
    with manager_client(action) as client:
        client.cancel_credentials_task(action.upstream_task_id)
    action.state = "cancelled"
    for item in action.items:
        if item.state == "failed":
            item.state = "cancelled"
