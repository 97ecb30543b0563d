"""Carrying out credential actions, in the scheduler's process: claim a queued action,
submit it to SDDC Manager as one credentials task, follow the task to its end, record each
credential's outcome (audited, in short transactions) and sync the source so the new
passwords and their history appear."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from .. import audit, sync
from ..alerts import notifications
from ..models import CredentialAction, Environment
from ..platform import clock, writes
from ..platform.database import changed_rows
from ..platform.extensions import db
from ..platform.text import escape_controls
from ..vcf import VcfError
from . import fleet_updates
from .actions import (
    AUDIT_SLICE,
    BUSY_WAIT,
    LOST_AFTER,
    OPERATIONS,
    audit_target,
    manager_client,
    task_elements,
)

log = logging.getLogger("portal.lifecycle.action_runs")


def _claim(action_id: int) -> bool:
    now = clock.now()
    claimed = changed_rows(
        update(CredentialAction)
        .where(CredentialAction.id == action_id, CredentialAction.state == "queued")
        .values(state="running", started_at=now, heartbeat_at=now)
    )
    db.session.commit()
    return claimed == 1


def _submit(action: CredentialAction) -> None:
    if action.operation == fleet_updates.OPERATION:
        fleet_updates.submit(action, _end)
        return
    items = [i for i in action.items if i.state in ("queued", "failed")]
    policy: dict[str, Any] | None = None
    if action.operation == "auto_rotate":
        policy = {"enableAutoRotatePolicy": bool(action.auto_rotate_enabled)}
        if action.auto_rotate_enabled:
            policy["frequencyInDays"] = action.auto_rotate_days
    try:
        with manager_client(action) as client:
            task = client.update_credentials(
                OPERATIONS[action.operation], task_elements(action, items), policy
            )
    except VcfError as exc:
        if exc.kind == "rate_limited" or _is_busy(exc):
            # SDDC Manager's limit of operations, or a task on these resources: wait a while.
            wait = timedelta(seconds=exc.retry_after) if exc.retry_after else BUSY_WAIT
            action.state = "queued"
            action.not_before = clock.now() + wait
            action.error = f"SDDC Manager is busy, retrying: {escape_controls(str(exc))}"
            db.session.commit()
            return
        action.password_enc = None
        _end(action, "failed", escape_controls(str(exc)))
        return
    action.password_enc = None  # SDDC Manager has it: nothing kept
    action.upstream_task_id = str(task.get("id"))[:128]
    action.error = None
    for item in items:
        item.state, item.error = "running", None
    db.session.commit()


def _is_busy(exc: VcfError) -> bool:
    code = (getattr(exc, "error_code", None) or "").upper()
    return "IN_PROGRESS" in code or "CONCURRENT" in code


def _messages(subtask: dict) -> str | None:
    texts = []
    for error in subtask.get("errors") or []:
        if isinstance(error, dict):
            texts.append(str(error.get("message") or error.get("errorCode") or "failed"))
    return escape_controls("; ".join(texts))[:1000] if texts else None


def _poll(action: CredentialAction, task_id: str) -> None:
    now = clock.now()
    try:
        with manager_client(action) as client:
            task = client.credentials_task(task_id)
    except VcfError as exc:
        if now - (action.heartbeat_at or now) > LOST_AFTER:
            _end(
                action, "failed", f"Lost track of SDDC Manager's task: {escape_controls(str(exc))}"
            )
        else:
            action.error = f"SDDC Manager did not answer, retrying: {escape_controls(str(exc))}"
            db.session.commit()
        return
    action.heartbeat_at = now
    status = str(task.get("status") or "").upper()
    if status in ("IN_PROGRESS", "PENDING", "RUNNING", ""):
        action.error = None
        db.session.commit()
        return
    by_key = {}
    for sub in task.get("subTasks") or []:
        if isinstance(sub, dict):
            key = (sub.get("resourceName"), sub.get("username"), sub.get("credentialType"))
            by_key[key] = sub
    for item in action.items:
        if item.state != "running":
            continue
        sub = by_key.get((item.resource_name, item.username, item.credential_type))
        sub_status = str((sub or {}).get("status") or status).upper()
        if sub_status in ("SUCCESSFUL", "SUCCEEDED", "COMPLETED"):
            item.state, item.error = "success", None
        elif sub_status == "CANCELLED":
            item.state, item.error = "cancelled", "Cancelled in SDDC Manager."
        else:
            item.state = "failed"
            item.error = _messages(sub or {}) or f"SDDC Manager reports {sub_status.lower()}."
    _end(action, _overall(action), None)


def _overall(action: CredentialAction) -> str:
    states = {item.state for item in action.items}
    if states == {"success"}:
        return "success"
    if "success" in states:
        return "partial"
    if states <= {"cancelled"}:
        return "cancelled"
    return "failed"


def _end(action: CredentialAction, state: str, error: str | None) -> None:
    """Record the outcome: items, audit per credential, a sync of the source where something
    changed (the caller's session is committed here)."""
    environment = db.session.get(Environment, action.environment_id)
    if environment is None:  # deleting an environment deletes its actions
        raise LookupError(f"action {action.id}: environment {action.environment_id} is gone")
    operation, action_id, requested_by = action.operation, action.id, action.requested_by
    action.password_enc = None  # an ended action never needs it (a retry asks again)

    def record(part) -> None:
        for item in part:
            if item.state in ("queued", "running"):
                item.state, item.error = "failed", error or "Not carried out."
        audit.record_many(
            f"credential.{operation}",
            [
                (
                    audit_target(
                        environment.name, item.resource_name, item.username, item.credential_type
                    ),
                    "success" if item.state == "success" else item.state,
                    {"action": action_id, **({"error": item.error} if item.error else {})},
                )
                for item in part
            ],
            actor=requested_by,
        )

    # Items and their audit lines in short transactions (an audit line is an ORM object and
    # an INSERT of its own: smaller slices); the action ends in the last one.
    writes.commit_in_chunks(list(action.items), record, size=AUDIT_SLICE)
    action.state, action.finished_at, action.error = state, clock.now(), error
    failed = sum(1 for item in action.items if item.state == "failed")
    if state in ("success", "partial", "failed"):
        verb = action.operation.replace("_", "-").capitalize()
        outcome = "succeeded" if state == "success" else "failed"
        notifications.emit(
            f"action.{outcome}",
            f"{verb} {outcome}: {environment.name}",
            f"{verb} of {len(action.items)} credential(s) in {environment.name}: "
            f"{len(action.items) - failed} succeeded, {failed} failed"
            + (f". {error}" if error else "."),
            {
                "action_id": action.id,
                "environment": environment.name,
                "operation": action.operation,
                "credentials": len(action.items),
                "failed": failed,
                **({"error": error} if error else {}),
            },
        )
    db.session.commit()
    if any(item.state == "success" for item in action.items):
        source = "fleet" if action.operation == fleet_updates.OPERATION else "manager"
        run = sync.request_sync(action.environment_id, source, "action", action.requested_by)
        log.info("action %s ended %s; sync run %s queued", action.id, state, run.id)


def advance(may_claim=None) -> int:
    """Start queued actions and follow running ones, one step each; returns how many moved.

    One action at a time per environment, so that SDDC Manager never sees two of ours on the
    same resources at once."""
    now = clock.now()
    moved = 0
    running = list(
        db.session.scalars(select(CredentialAction).where(CredentialAction.state == "running"))
    )
    busy_envs = {a.environment_id for a in running}
    for action in running:
        if action.upstream_task_id is None:
            if now - (action.heartbeat_at or now) > timedelta(minutes=2):
                # Claimed but never confirmed by SDDC Manager (the process stopped): not sent
                # again, as it may have started; the operator checks SDDC Manager's tasks.
                _end(
                    action,
                    "failed",
                    "Interrupted before SDDC Manager confirmed it; check its credential tasks "
                    "before trying again.",
                )
                moved += 1
            continue
        if action.operation == fleet_updates.OPERATION:
            fleet_updates.poll(action, _end)
        else:
            _poll(action, action.upstream_task_id)
        moved += 1
    queued = db.session.scalars(
        select(CredentialAction)
        .where(CredentialAction.state == "queued")
        .order_by(CredentialAction.id)
    ).all()
    for action in queued:
        if action.environment_id in busy_envs or (action.not_before and action.not_before > now):
            continue
        if may_claim is not None and not may_claim():
            break
        if _claim(action.id):
            db.session.refresh(action)
            busy_envs.add(action.environment_id)
            _submit(action)
            moved += 1
    return moved
