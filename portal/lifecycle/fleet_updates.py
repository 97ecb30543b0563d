"""Changing a management appliance's password through VCF Operations fleet password management
(VCF 9.1): ``PUT …/fleet-management/password-management/accounts/{passwordAccountKey}/password``
with ``VcfUpdatePasswordSpec {currentPassword, newPassword, userName}``, which answers a
workflow request polled at ``GET /suite-api/api/workflows/requests/{id}``
(../shared/vcf-api/VCF9-FLEET.md section 3; paths from spec diffs, not a tested appliance).

An operator's *update* of a credential of the fleet source is queued as an action of its own
kind (`fleet_update`), one account per action, and carried out by the scheduler's process as
the actions through SDDC Manager are (action_runs.py): claimed, submitted with the current
password the portal holds, the workflow followed to its end, every step audited. The new
password is kept encrypted on the action until then: stored as the credential's value (the
former one into its history) only once the workflow has succeeded, and erased whatever the
outcome. A workflow that fails or cannot be started changes nothing stored. The 9.0 locker
has no such operation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select, update

from .. import audit
from ..environments.service import endpoint_settings, locker_password
from ..models import (
    Credential,
    CredentialAction,
    CredentialActionItem,
    Endpoint,
    Environment,
    PasswordHistory,
)
from ..platform import clock, wakeup
from ..platform.crypto import (
    ACTION_PASSWORD,
    CREDENTIAL_PASSWORD,
    CREDENTIAL_PASSWORD_MAC,
    HISTORY_PASSWORD,
    cipher,
)
from ..platform.extensions import db
from ..platform.text import escape_controls
from ..vcf import API_90, FleetClient, VcfError, client_for
from .actions import FLEET_UPDATE, LOST_AFTER, MAX_PASSWORD, ActionError, audit_target

log = logging.getLogger("portal.lifecycle.fleet_updates")

OPERATION = FLEET_UPDATE
DONE = ("COMPLETED", "SUCCEEDED", "SUCCESSFUL", "SUCCESS")
RUNNING = ("IN_PROGRESS", "PENDING", "RUNNING", "QUEUED", "INPROGRESS", "")
# Who stored a value in the history: the portal, once fleet management had changed it.
CHANGED_BY = "FLEET_UPDATE"

End = Callable[[CredentialAction, str, str | None], None]


def is_fleet(credential_ids: list[int]) -> bool:
    """Whether the selection holds a credential of fleet management (then it is changed here,
    never through SDDC Manager)."""
    ids = list(dict.fromkeys(credential_ids))[:501]
    return bool(
        ids
        and db.session.scalar(
            select(Credential.id)
            .where(Credential.id.in_(ids), Credential.source == "fleet")
            .limit(1)
        )
    )


def _fleet_endpoint(environment_id: int) -> Endpoint | None:
    return db.session.scalar(
        select(Endpoint).where(
            Endpoint.environment_id == environment_id, Endpoint.source == "fleet"
        )
    )


def selection(operation: str, credential_ids: list[int]) -> tuple[Environment, Credential]:
    """The one fleet credential of an update, checked (ActionError naming the field)."""
    if operation != "update":
        raise ActionError(
            "operation",
            "Fleet management's passwords are changed with update only (VCF 9.1 fleet password "
            "management has no rotate or remediate).",
        )
    ids = list(dict.fromkeys(credential_ids))
    if len(ids) != 1:
        raise ActionError("credential_ids", "Update one fleet management account at a time.")
    cred = db.session.get(Credential, ids[0])
    if cred is None or cred.source != "fleet":
        raise ActionError("credential_ids", "Select one account of fleet management.")
    if not cred.present:
        raise ActionError("credential_ids", "This account is absent from fleet management.")
    if not cred.remote_id:
        raise ActionError("credential_ids", "Fleet management gave this account no key.")
    if cred.password_enc is None:
        raise ActionError(
            "credential_ids",
            "The portal holds no current password for this account, which fleet management "
            "asks for: set the locker decryption password and sync first.",
        )
    environment = db.session.get(Environment, cred.environment_id)
    endpoint = _fleet_endpoint(cred.environment_id)
    if environment is None or endpoint is None:
        raise ActionError("credential_ids", "This environment has no fleet management configured.")
    if endpoint.api_detected == API_90:
        raise ActionError(
            "credential_ids",
            "Fleet management answered with the VCF 9.0 locker, which cannot change a "
            "password: change it in fleet management, then sync.",
        )
    return environment, cred


def queue(
    requested_by: str, operation: str, credential_ids: list[int], password: str | None
) -> CredentialAction:
    """Check and queue the update of one fleet account (the caller commits, then wakes the
    scheduler); audited as requested."""
    environment, cred = selection(operation, credential_ids)
    if not password or len(password) > MAX_PASSWORD:
        raise ActionError("password", f"Give the password (1 to {MAX_PASSWORD} characters).")
    action = CredentialAction(
        environment_id=environment.id,
        operation=OPERATION,
        requested_by=requested_by[:128],
        password_enc=cipher().encrypt(password, ACTION_PASSWORD),
    )
    action.items.append(
        CredentialActionItem(
            credential_id=cred.id,
            resource_name=cred.hostname,
            resource_type=cred.resource_type,
            username=cred.username,
            credential_type=cred.credential_type,
        )
    )
    db.session.add(action)
    db.session.flush()
    wakeup.announce(db.session, current_app.config["PORTAL_SETTINGS"])
    audit.record(
        f"credential.{OPERATION}",
        audit_target(environment.name, cred.hostname, cred.username, cred.credential_type),
        outcome="requested",
        details={"action": action.id},
    )
    return action


def _client(action: CredentialAction) -> FleetClient:
    endpoint = _fleet_endpoint(action.environment_id)
    if endpoint is None:
        raise VcfError("not_found", "the environment's fleet management is no longer configured")
    return client_for("fleet", endpoint_settings(endpoint), locker_password(endpoint))


def _item(action: CredentialAction) -> tuple[CredentialActionItem, Credential | None]:
    item = action.items[0]
    cred = db.session.get(Credential, item.credential_id) if item.credential_id else None
    return item, cred


def submit(action: CredentialAction, end: End) -> None:
    """Start fleet management's workflow for a claimed action (commits)."""
    item, cred = _item(action)
    if cred is None or cred.password_enc is None or not cred.remote_id or not action.password_enc:
        action.password_enc = None
        end(action, "failed", "The account or its stored password is gone.")
        return
    data_cipher = cipher()
    current = data_cipher.decrypt(cred.password_enc, CREDENTIAL_PASSWORD)
    new = data_cipher.decrypt(action.password_enc, ACTION_PASSWORD)
    try:
        with _client(action) as client:
            if client.detect() == API_90:
                raise VcfError(
                    "rejected",
                    "fleet management answered with the VCF 9.0 locker, which cannot change a "
                    "password",
                )
            request_id = client.update_password(cred.remote_id, current, new, cred.username)
    except VcfError as exc:
        action.password_enc = None
        end(action, "failed", f"Fleet management refused: {escape_controls(str(exc))}")
        return
    # The new value stays encrypted on the action until the workflow has succeeded.
    action.upstream_task_id = request_id[:128]
    action.heartbeat_at = clock.now()
    action.error = None
    item.state, item.error = "running", None
    db.session.commit()


def poll(action: CredentialAction, end: End) -> None:
    """Follow the workflow one step; at its end, store the new value (success only) and end
    the action (commits)."""
    now = clock.now()
    try:
        with _client(action) as client:
            workflow = client.workflow(action.upstream_task_id or "")
    except VcfError as exc:
        if now - (action.heartbeat_at or now) > LOST_AFTER:
            action.password_enc = None
            end(action, "failed", f"Lost track of the workflow: {escape_controls(str(exc))}")
        else:
            action.error = f"Fleet management did not answer, retrying: {escape_controls(str(exc))}"
            db.session.commit()
        return
    action.heartbeat_at = now
    status = str(workflow.get("status") or workflow.get("state") or "").upper()
    if status in RUNNING:
        action.error = None
        db.session.commit()
        return
    item, cred = _item(action)
    if status in DONE and cred is not None and action.password_enc is not None:
        _store(cred, cipher().decrypt(action.password_enc, ACTION_PASSWORD), now)
        item.state, item.error = "success", None
        action.password_enc = None
        end(action, "success", None)
        return
    action.password_enc = None
    item.state = "failed"
    item.error = _failure(workflow, status)
    end(action, "failed", item.error)


def _failure(workflow: dict, status: str) -> str:
    for key in ("errorMessage", "message", "statusMessage", "error"):
        value = workflow.get(key)
        if isinstance(value, str) and value.strip():
            return escape_controls(value)[:1000]
    return f"Fleet management's workflow ended {status.lower() or 'without a status'}."


def _store(cred: Credential, password: str, now) -> None:
    """The new value as the credential's password, the former one closed in its history."""
    data_cipher = cipher()
    db.session.execute(
        update(PasswordHistory)
        .where(PasswordHistory.credential_id == cred.id, PasswordHistory.changed_at.is_(None))
        .values(changed_at=now)
    )
    db.session.add(
        PasswordHistory(
            credential_id=cred.id,
            password_enc=data_cipher.encrypt(password, HISTORY_PASSWORD),
            first_seen_at=now,
            changed_by=CHANGED_BY,
        )
    )
    cred.password_enc = data_cipher.encrypt(password, CREDENTIAL_PASSWORD)
    cred.password_mac = data_cipher.mac(password, CREDENTIAL_PASSWORD_MAC)
    cred.last_changed_at = now
    log.info("fleet update: credential %s has its new password", cred.id)
