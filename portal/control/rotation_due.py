"""The "needs rotation" queue: credentials whose password a person saw and that must change
(a check-in, an expired or taken-back check-out, a break-glass window), rotated through SDDC
Manager with the existing rotate action (portal.lifecycle.actions), until it succeeds.

A credential is due from `rotation_due_since`. Each pass (the leader's `control.jobs.tick`,
and at once after a check-in) looks at every due credential:

- it is done, and the mark cleared, once a rotate or update of it that was asked after it
  became due succeeded, or once a sync saw its password change after that time;
- it waits while someone holds a check-out of it (their check-in marks it again), while a
  rotate or update of it is queued or running, and while its environment has any action
  queued or running (SDDC Manager carries out one credentials task at a time on a resource;
  the portal sends one action per environment at a time, and this queue adds none beside
  another);
- after a failed attempt it waits (back-off: 1, 2, 4 ... minutes, at most an hour), counts
  the failure in `rotation_attempts`, keeps SDDC Manager's message in `rotation_error` and
  raises the `checkout.rotation_failed` alert;
- otherwise it joins its environment's next rotate action (at most 500 credentials each,
  the rules of actions.queue).

Credentials SDDC Manager cannot rotate (the VCF Installer's copies, absent ones, an
environment without SDDC Manager) stay marked, with the reason in `rotation_error`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from .. import audit
from ..alerts import notifications
from ..audit.sightings import credential_target
from ..lifecycle import actions
from ..models import (
    Credential,
    CredentialAction,
    CredentialActionItem,
    CredentialCheckout,
    Endpoint,
    Environment,
)
from ..platform import clock
from ..platform.extensions import db
from ..vcf import VcfError

log = logging.getLogger("portal.control.rotation_due")

REASONS = ("checkin", "checkout_expired", "taken_back", "break_glass")
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
# The operations that give a credential a new password.
CHANGING = ("rotate", "update")
_BUSY = ("queued", "running")
CANNOT_ROTATE = {
    "installer": "The VCF Installer's copy: SDDC Manager does not rotate it.",
    "absent": "Absent from SDDC Manager: it cannot be rotated until it is back.",
    "no_manager": "This environment has no SDDC Manager configured.",
}


def mark_due(cred: Credential, reason: str, at: datetime | None = None) -> None:
    """Mark a credential as owing a rotation from `at` (now), kept from the first reason
    while it is due."""
    if reason not in REASONS:
        raise ValueError(f"unknown rotation reason {reason!r}")
    if cred.rotation_due_since is None:
        cred.rotation_due_since = at or clock.now()
        cred.rotation_due_reason = reason
        cred.rotation_error = None
        cred.rotation_attempts = 0


def retry_wait(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure before the next attempt."""
    if attempts <= 0:
        return timedelta(0)
    return min(FIRST_RETRY * 2 ** min(attempts - 1, 12), LONGEST_RETRY)


@dataclass
class _Attempts:
    latest: CredentialActionItem | None = None
    latest_action: CredentialAction | None = None
    failed: int = 0
    succeeded: bool = False
    error: str | None = None


def _attempts(creds: list[Credential]) -> dict[int, _Attempts]:
    """The rotate and update attempts of each due credential since it became due."""
    found: dict[int, _Attempts] = defaultdict(_Attempts)
    if not creds:
        return found
    since = {c.id: c.rotation_due_since for c in creds}
    rows = db.session.execute(
        select(CredentialActionItem, CredentialAction)
        .join(CredentialAction, CredentialAction.id == CredentialActionItem.action_id)
        .where(
            CredentialActionItem.credential_id.in_(list(since)),
            CredentialAction.operation.in_(CHANGING),
            CredentialAction.created_at >= min(s for s in since.values() if s is not None),
        )
        .order_by(CredentialAction.id)
    ).all()
    for item, action in rows:
        cred_id = item.credential_id
        due = since.get(cred_id) if cred_id is not None else None
        if cred_id is None or due is None or action.created_at < due:
            continue
        entry = found[cred_id]
        entry.latest, entry.latest_action = item, action
        if item.state == "success":
            entry.succeeded = True
        elif action.state not in _BUSY and item.state in ("failed", "cancelled"):
            entry.failed += 1
            entry.error = item.error or action.error or "The rotation failed."
    return found


def _clear(cred: Credential, how: str, action_id: int | None) -> None:
    reason = cred.rotation_due_reason
    cred.rotation_due_since = None
    cred.rotation_due_reason = None
    cred.rotation_error = None
    cred.rotation_attempts = 0
    details: dict = {"reason": reason or "", "by": how}
    if action_id is not None:
        details["action"] = action_id
    audit.record(
        "credential.rotation_due", _target(cred), outcome="done", details=details, actor="system"
    )


def _target(cred: Credential) -> str:
    env = db.session.get(Environment, cred.environment_id)
    name = env.name if env else str(cred.environment_id)
    return credential_target(name, cred.hostname, cred.username, cred.credential_type)


def record_failure(cred: Credential, attempts: int, error: str) -> None:
    """Count a new failure: keep the message, audit and alert (never a password: SDDC
    Manager's task views are stripped of them by the VCF client)."""
    cred.rotation_attempts = attempts
    cred.rotation_error = error[:1000]
    env = db.session.get(Environment, cred.environment_id)
    env_name = env.name if env else str(cred.environment_id)
    wait = retry_wait(attempts)
    audit.record(
        "credential.rotation_due",
        _target(cred),
        outcome="failed",
        details={"attempts": attempts, "error": cred.rotation_error},
        actor="system",
    )
    notifications.emit(
        "checkout.rotation_failed",
        f"Rotation failed, still needed: {env_name}/{cred.hostname}/{cred.username}",
        f"The rotation of {cred.username} on {cred.hostname} ({cred.credential_type}) in "
        f"{env_name}, owed after a {(cred.rotation_due_reason or '').replace('_', ' ')}, "
        f"failed (attempt {attempts}): {cred.rotation_error}. The credential stays marked "
        f"as needing rotation; the portal tries again in {int(wait.total_seconds() // 60)} "
        "minute(s).",
        {
            "credential_id": cred.id,
            "environment": env_name,
            "hostname": cred.hostname,
            "username": cred.username,
            "credential_type": cred.credential_type,
            "attempts": attempts,
            "error": cred.rotation_error,
        },
    )


def _cannot_rotate(cred: Credential, managed: set[int]) -> str | None:
    if cred.source != "manager":
        return CANNOT_ROTATE["installer"]
    if not cred.present:
        return CANNOT_ROTATE["absent"]
    if cred.environment_id not in managed:
        return CANNOT_ROTATE["no_manager"]
    return None


def _busy_environments() -> set[int]:
    return set(
        db.session.scalars(
            select(CredentialAction.environment_id).where(CredentialAction.state.in_(_BUSY))
        )
    )


def _held(ids: list[int]) -> set[int]:
    if not ids:
        return set()
    return set(
        db.session.scalars(
            select(CredentialCheckout.credential_id).where(
                CredentialCheckout.credential_id.in_(ids), CredentialCheckout.ended_at.is_(None)
            )
        )
    )


def _ready(cred: Credential, entry: _Attempts, now: datetime, managed: set[int]) -> bool:
    """Whether a due credential, neither held nor done, may be rotated now (a new failure
    or a reason it cannot be rotated is recorded on the way)."""
    if entry.failed > (cred.rotation_attempts or 0):
        record_failure(cred, entry.failed, entry.error or "The rotation failed.")
    if entry.latest_action is not None and entry.latest_action.state in _BUSY:
        return False
    problem = _cannot_rotate(cred, managed)
    if problem is not None:
        if cred.rotation_error != problem:
            cred.rotation_error = problem
        return False
    if cred.rotation_error in CANNOT_ROTATE.values():
        cred.rotation_error = None  # it can be rotated again (back from absent)
    finished = entry.latest_action.finished_at if entry.latest_action else None
    return not (entry.failed and finished and now < finished + retry_wait(entry.failed))


def run(requested_by: str = "system", only: set[int] | None = None) -> dict[str, int]:
    """One pass over the due credentials (all, or the ids `only`): clear those done, record
    failures, and queue a rotate action per free environment. The caller commits (and wakes
    the scheduler). Returns counts: due, done, queued, waiting."""
    query = select(Credential).where(Credential.rotation_due_since.is_not(None))
    if only is not None:
        query = query.where(Credential.id.in_(sorted(only)))
    # On PostgreSQL, rows another pass (the job, a check-in) holds are left to it: never two
    # rotations of one credential queued at once. SQLite serialises writers anyway.
    query = query.order_by(Credential.rotation_due_since, Credential.id)
    due = list(db.session.scalars(query.with_for_update(skip_locked=True, of=Credential)))
    counts = {"due": len(due), "done": 0, "queued": 0, "waiting": 0}
    if not due:
        return counts
    attempts = _attempts(due)
    held = _held([c.id for c in due])
    managed = set(
        db.session.scalars(select(Endpoint.environment_id).where(Endpoint.source == "manager"))
    )
    busy_envs = _busy_environments()
    now = clock.now()
    chosen: dict[int, list[Credential]] = defaultdict(list)
    for cred in due:
        entry = attempts[cred.id]
        since = cred.rotation_due_since
        if entry.succeeded:
            _clear(cred, "rotated", entry.latest_action.id if entry.latest_action else None)
            counts["done"] += 1
        elif since is not None and cred.last_changed_at > since and cred.id not in held:
            _clear(cred, "changed", None)
            counts["done"] += 1
        elif cred.id in held or not _ready(cred, entry, now, managed):
            counts["waiting"] += 1
        elif cred.environment_id in busy_envs:
            counts["waiting"] += 1
        else:
            chosen[cred.environment_id].append(cred)
    due_ids = {c.id for c in due}
    for env_id, creds in chosen.items():
        creds = _released(creds, attempts, due_ids)
        if not creds:
            counts["waiting"] += len(chosen[env_id])
            continue
        batch = creds[: actions.MAX_ITEMS]
        counts["waiting"] += len(chosen[env_id]) - len(batch)
        action = actions.queue(requested_by, "rotate", [c.id for c in batch])
        _link(action.id, batch)
        counts["queued"] += len(batch)
        log.info("rotation due: action %s rotates %s credential(s)", action.id, len(batch))
        busy_envs.add(env_id)
    return counts


def _released(
    creds: list[Credential], attempts: dict[int, _Attempts], due_ids: set[int]
) -> list[Credential]:
    """The credentials free for a new attempt. SDDC Manager keeps a failed task's resources
    until it is retried or cancelled: the failed task of an earlier attempt is cancelled
    first, when every credential it failed on is one the queue owes (a person's failed
    action on other credentials is theirs to retry or cancel; those wait, saying so)."""
    free = []
    cancelled: dict[int, bool] = {}
    for cred in creds:
        action = attempts[cred.id].latest_action
        holds = (
            action is not None
            and action.state in ("failed", "partial")
            and bool(action.upstream_task_id)
        )
        if not holds or action is None:
            free.append(cred)
            continue
        if action.id not in cancelled:
            cancelled[action.id] = _cancel(action, due_ids)
        if cancelled[action.id]:
            free.append(cred)
        else:
            cred.rotation_error = (
                f"SDDC Manager keeps the failed task of action {action.id} on this resource: "
                "retry or cancel that action."
            )
    return free


def _cancel(action: CredentialAction, due_ids: set[int]) -> bool:
    others = [
        item
        for item in action.items
        if item.state == "failed" and item.credential_id not in due_ids
    ]
    if others:
        return False
    try:
        actions.cancel(action)
    except (actions.ActionError, VcfError) as exc:
        log.warning("rotation due: cannot cancel the failed task of action %s: %s", action.id, exc)
        return False
    return True


def _link(action_id: int, creds: list[Credential]) -> None:
    """The ended check-outs that made these credentials due get their (latest) rotation."""
    for cred in creds:
        db.session.execute(
            update(CredentialCheckout)
            .where(
                CredentialCheckout.credential_id == cred.id,
                CredentialCheckout.ended_at.is_not(None),
                CredentialCheckout.ended_at >= cred.rotation_due_since,
            )
            .values(action_id=action_id)
        )


def as_dict(cred: Credential) -> dict | None:
    """The "needs rotation" state of a credential as the API shows it (None: not due)."""
    if cred.rotation_due_since is None:
        return None
    return {
        "since": clock.iso(cred.rotation_due_since),
        "reason": cred.rotation_due_reason,
        "attempts": cred.rotation_attempts or 0,
        "error": cred.rotation_error,
    }


def listing(within: set[int] | None, environment_id: int | None = None) -> list[dict]:
    """The credentials that need rotation, oldest first, of the environments `within`."""
    query = select(Credential).where(Credential.rotation_due_since.is_not(None))
    if within is not None:
        query = query.where(Credential.environment_id.in_(sorted(within)))
    if environment_id is not None:
        query = query.where(Credential.environment_id == environment_id)
    rows = db.session.scalars(query.order_by(Credential.rotation_due_since, Credential.id)).all()
    names = dict(db.session.execute(select(Environment.id, Environment.name)).all())
    attempts = _attempts(list(rows))
    items = []
    for cred in rows:
        entry = attempts.get(cred.id)
        action = entry.latest_action if entry else None
        items.append(
            {
                "credential_id": cred.id,
                "environment_id": cred.environment_id,
                "environment": names.get(cred.environment_id, ""),
                "hostname": cred.hostname,
                "username": cred.username,
                "credential_type": cred.credential_type,
                **(as_dict(cred) or {}),
                "action_id": action.id if action else None,
                "action_state": action.state if action else None,
            }
        )
    return items
