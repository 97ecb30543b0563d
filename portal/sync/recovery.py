"""Runs whose process is gone: failed as interrupted, by whichever process notices (a silent
heartbeat), or at start-up for the processes of this host that no longer run."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, select, update

from .. import audit
from ..alerts import notifications
from ..models import Endpoint, SyncRun
from ..platform import clock
from ..platform.database import changed_rows
from ..platform.extensions import db
from .runs import STALE_SECONDS, _target, owner_id

log = logging.getLogger("portal.sync")


def _fail_interrupted(condition, reason: str) -> int:
    """Fail the running runs that meet `condition`, re-checked in each UPDATE so that a run
    that ended or beat again meanwhile is left alone."""
    failed = 0
    now = clock.now()
    candidates = db.session.execute(
        select(SyncRun.id, SyncRun.environment_id, SyncRun.source, SyncRun.owner).where(
            SyncRun.state == "running", condition
        )
    ).all()
    for run_id, environment_id, source, owner in candidates:
        ended = changed_rows(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.state == "running", condition)
            .values(state="failed", phase="done", finished_at=now, error=reason)
        )
        if ended != 1:
            continue
        failed += 1
        db.session.execute(
            update(Endpoint)
            .where(Endpoint.environment_id == environment_id, Endpoint.source == source)
            .values(last_status="failed", last_error=reason, last_sync_at=now)
        )
        notifications.sync_ended(environment_id, source, "failed", reason)
        audit.record(
            "sync.finish",
            _target(environment_id, source),
            outcome="failed",
            actor="scheduler",
            details={"run": run_id, "error": reason},
        )
        log.warning("sync run %s (%s) failed: %s", run_id, owner or "no owner", reason)
    db.session.commit()
    return failed


def fail_stale_runs(stale_seconds: float | None = None) -> int:
    """Fail every running run whose owner stopped renewing its heartbeat; its source can
    sync again. A run whose owner is alive is never touched."""
    seconds: float = (
        stale_seconds
        if stale_seconds is not None
        else current_app.config.get("SYNC_STALE_SECONDS", STALE_SECONDS)
    )
    limit = clock.now() - timedelta(seconds=seconds)
    silent = or_(
        SyncRun.heartbeat_at < limit,
        SyncRun.heartbeat_at.is_(None)
        & or_(SyncRun.started_at < limit, SyncRun.started_at.is_(None)),
    )
    reason = f"Interrupted: no sign of life from its process for {int(seconds)} s."
    return _fail_interrupted(silent, reason)


def _process_gone(owner: str | None) -> bool:
    """True when `owner` names a process of this host that no longer runs."""
    if not owner:
        return True  # a run from before owners were recorded
    host, _, rest = owner.partition(" ")
    pid_text = rest.partition(" ")[0]
    if host != socket.gethostname()[:96] or not pid_text.isdigit():
        return False  # another node's: only its heartbeat can tell
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != owner_id()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_own_runs(reason: str) -> int:
    """Fail the runs this process is carrying out (it is stopping): their sources can sync
    again at once, on this node's next start or on the node that leads next."""
    return _fail_interrupted(SyncRun.owner == owner_id(), reason)


def fail_interrupted_runs() -> int:
    """At scheduler start: fail the runs of this host's processes that are gone, and every
    run whose heartbeat expired; runs of live processes, here or on other nodes, go on."""
    running = db.session.execute(
        select(SyncRun.id, SyncRun.owner).where(SyncRun.state == "running")
    ).all()
    gone = [run_id for run_id, owner in running if _process_gone(owner)]
    failed = 0
    if gone:
        failed = _fail_interrupted(SyncRun.id.in_(gone), "Interrupted by a restart of the portal.")
    return failed + fail_stale_runs()
