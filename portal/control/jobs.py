"""The dual-control job, run every TICK_SECONDS by the scheduler's leader: requests that
waited too long expire, windows whose time ran out or whose credential changed close (a
break-glass window's credential then owes a rotation); check-outs whose time ran out end
(and owe a rotation), and the "needs rotation" queue takes its next step (rotation_due.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask
from sqlalchemy import select

from .. import audit
from ..lifecycle import actions
from ..models import AccessRequest, Credential
from ..platform import clock
from ..platform.extensions import db
from . import checkouts, requests, rotation_due
from .requests import details_of, target_of

log = logging.getLogger("portal.control.jobs")

TICK_SECONDS = 30
# Requests ended per transaction (short transactions: portal.platform.writes).
BATCH = 200


def register(scheduler, app: Flask, common: dict, leading: Callable[[], bool]) -> None:
    """Add the job to the scheduler (portal.ops.scheduler); `leading` says whether this
    process still leads. Tests may run it every PORTAL_TEST_INTERVAL_SECONDS instead."""
    seconds = app.config["PORTAL_SETTINGS"].test_interval_seconds or TICK_SECONDS
    scheduler.add_job(
        tick, "interval", seconds=seconds, args=(app, leading), id="control", **common
    )


def tick(app: Flask, still_leading: Callable[[], bool] = lambda: True) -> None:
    """One pass of the job, each part on its own; a failure waits for the next pass."""
    with app.app_context():
        try:
            for part in (lambda: close_expired(), lambda: checkouts_and_rotations(app)):
                if not still_leading():
                    break
                try:
                    part()
                except Exception as exc:  # noqa: BLE001 - the next pass tries again
                    db.session.rollback()
                    log.error("dual-control pass failed: %s", type(exc).__name__)
        finally:
            db.session.remove()


def checkouts_and_rotations(app: Flask) -> dict[str, int]:
    """End expired check-outs, then one pass of the rotation queue; committed, and the
    scheduler woken when a rotation was queued."""
    ended = checkouts.expire_due()
    if ended:
        db.session.commit()
        log.info("%d check-out(s) ran out", ended)
    counts = rotation_due.run()
    db.session.commit()
    if counts["queued"]:
        actions.wake(app.config["PORTAL_SETTINGS"])
    return {"expired": ended, **counts}


def close_expired() -> dict[str, int]:
    """End what is due: pending requests past their time (expired), windows past their end
    or opened on a password that has since changed (closed). Commits in batches; answers the
    counts."""
    counts = {"expired": 0, "closed": 0}
    while True:
        ended = _one_batch()
        db.session.commit()
        for state, number in ended.items():
            counts[state] += number
        if sum(ended.values()) < BATCH:
            return counts


def _one_batch() -> dict[str, int]:
    now = clock.now()
    rows = db.session.execute(
        select(AccessRequest, Credential)
        .join(Credential, Credential.id == AccessRequest.credential_id)
        .where(AccessRequest.state.in_(requests.OPEN_STATES))
        .order_by(AccessRequest.id)
    ).all()
    ended = {"expired": 0, "closed": 0}
    for req, cred in rows:
        if sum(ended.values()) >= BATCH:
            break
        due = req.closes_at is not None and req.closes_at <= now
        if req.state == "pending" and due:
            req.state, req.closed_reason = "expired", "no decision in time"
            ended["expired"] += 1
            audit.record("access.expire", target_of(cred), details=details_of(req), actor="system")
        elif req.state == "approved" and (due or req.changed_at_approval != cred.last_changed_at):
            why = "window ended" if due else "credential changed"
            req.state, req.closed_reason = "closed", why
            req.closes_at = min(req.closes_at or now, now)
            if req.kind == "break_glass":
                # Whatever closed it: a password set by hand may be known to the requester.
                requests.owe_rotation(cred, now)
            ended["closed"] += 1
            audit.record(
                "access.close", target_of(cred), details=details_of(req, reason=why), actor="system"
            )
    return ended
