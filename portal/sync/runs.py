"""Sync runs: requesting one (one queued or running run per source, by a unique index),
claiming it in the scheduler's process, the heartbeat that shows it is alive, fetching, and
ending it with its outcome and counts (a failed fetch changes nothing stored but the
endpoint's status and error)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from flask import Flask, current_app
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from .. import audit
from ..alerts import attention, notifications
from ..environments.service import endpoint_settings
from ..models import Endpoint, Environment, SyncRun
from ..platform import clock, wakeup, writes
from ..platform.clock import iso
from ..platform.database import changed_rows
from ..platform.extensions import app_object, db
from ..vcf import VcfError
from .sources import SourceFacts, audit_locker_use, fetch_source, fit_columns, record_facts
from .store import Counts, apply_fetch

log = logging.getLogger("portal.sync")

# A running run renews its heartbeat this often; one silent for STALE_SECONDS is failed by
# whichever process notices (app.config SYNC_HEARTBEAT_SECONDS and SYNC_STALE_SECONDS change
# them, for tests).
HEARTBEAT_SECONDS = 10
STALE_SECONDS = 60
# How long a run that went wrong keeps trying to record its failure (a locked or full
# database) before leaving it to the heartbeat's expiry.
RECORD_FAILURE_SECONDS = 30
_owner: dict = {"pid": None, "id": None}


def run_dict(run: SyncRun) -> dict:
    """The API shape of a sync run."""
    return {
        "id": run.id,
        "environment_id": run.environment_id,
        "source": run.source,
        "trigger": run.trigger,
        "state": run.state,
        "phase": run.phase,
        "counts": {
            "new": run.count_new,
            "changed": run.count_changed,
            "unchanged": run.count_unchanged,
            "absent": run.count_absent,
        },
        "error": run.error,
        "requested_by": run.requested_by,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def request_sync(
    environment_id: int, source: str, trigger: str, requested_by: str, *, again: bool = True
) -> SyncRun:
    """Queue a sync, or return the one already queued or running for that source."""
    run = SyncRun(
        environment_id=environment_id,
        source=source,
        trigger=trigger,
        requested_by=requested_by,
        state="queued",
        phase="queued",
    )
    settings = current_app.config["PORTAL_SETTINGS"]
    try:
        # A savepoint: a refused claim rolls back only itself, never the caller's work.
        with db.session.begin_nested():
            db.session.add(run)
            wakeup.announce(db.session, settings)
    except IntegrityError:
        # Refused: another run of that source is queued or running (the usual case), or
        # the insert itself is wrong (the environment is gone), which no retry mends.
        existing = db.session.scalar(
            select(SyncRun).where(
                SyncRun.environment_id == environment_id,
                SyncRun.source == source,
                SyncRun.state.in_(("queued", "running")),
            )
        )
        if existing is None and again:  # finished between our insert and this read
            return request_sync(environment_id, source, trigger, requested_by, again=False)
        if existing is None:
            raise
        return existing
    db.session.commit()  # the claim is visible to the scheduler at once
    wakeup.poke(settings)
    return run


def record_request(environment_name: str, run: SyncRun) -> None:
    """Audit a sync a person asked for: who, from where, which run (the caller commits)."""
    audit.record(
        "sync.request",
        f"{environment_name} / {run.source}",
        details={"run": run.id, "source": run.source, "trigger": run.trigger},
    )


def owner_id() -> str:
    """This process as the owner of the runs it carries out: "host pid token"."""
    pid = os.getpid()
    if _owner["pid"] != pid:  # a forked child is another owner
        _owner["pid"] = pid
        _owner["id"] = f"{socket.gethostname()[:96]} {pid} {secrets.token_hex(4)}"
    return _owner["id"]


def _claim(run_id: int) -> bool:
    now = clock.now()
    claimed = changed_rows(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.state == "queued")
        .values(
            state="running", phase="fetching", started_at=now, owner=owner_id(), heartbeat_at=now
        )
    )
    db.session.commit()
    return claimed == 1


def _ours(run_id: int):
    return (SyncRun.id == run_id, SyncRun.owner == owner_id(), SyncRun.state == "running")


class _Heartbeat:
    """Renews a running run's heartbeat from a thread of its own, on a connection of its own,
    while the run fetches and writes."""

    def __init__(self, app: Flask, run_id: int):
        self.app, self.run_id, self.owner = app, run_id, owner_id()
        self.every = app.config.get("SYNC_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"sync-heartbeat-{run_id}")
        self.thread.daemon = True

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                with self.app.app_context(), db.engine.begin() as connection:
                    connection.execute(
                        update(SyncRun)
                        .where(
                            SyncRun.id == self.run_id,
                            SyncRun.owner == self.owner,
                            SyncRun.state == "running",
                        )
                        .values(heartbeat_at=clock.now())
                    )
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next
                log.warning("sync run %s: heartbeat not renewed (%s)", self.run_id, exc.__class__)


def _target(environment_id: int, source: str) -> str:
    env = db.session.get(Environment, environment_id)
    return f"{env.name if env else environment_id} / {source}"


def _set_phase(run_id: int, phase: str) -> None:
    db.session.execute(update(SyncRun).where(SyncRun.id == run_id).values(phase=phase))
    db.session.commit()


def _finish(
    run: SyncRun, endpoint: Endpoint | None, state: str, error: str | None, counts: Counts | None
) -> bool:
    """End the run in the session (the caller commits); False when it is no longer ours: it
    was failed as interrupted meanwhile, and the caller must discard what it wrote."""
    now = clock.now()
    values: dict = {"state": state, "phase": "done", "finished_at": now, "error": error}
    if counts is not None:
        values.update(
            count_new=counts.new,
            count_changed=counts.changed,
            count_unchanged=counts.unchanged,
            count_absent=counts.absent,
        )
    ended = changed_rows(update(SyncRun).where(*_ours(run.id)).values(**values))
    if ended != 1:
        return False
    if endpoint is not None:
        endpoint.last_status = state
        endpoint.last_error = error
        endpoint.last_sync_at = now
        if state in ("success", "partial"):
            endpoint.last_success_at = now
            if endpoint.source == "manager":
                endpoint.expiry_requested_at = now  # expiry as SDDC Manager sees it, next
        # Alerts for a source that keeps failing or recovers: in the run's own transaction.
        notifications.sync_ended(run.environment_id, run.source, state, error)
    return True


def execute_run(run_id: int, fetch=None) -> SyncRun | None:
    """Claim a queued run and carry it out; returns the finished run (None if not claimed).

    Whatever goes wrong, the run ends: `success`, `partial` or `failed` with its reason, or,
    when not even the failure can be written (a full disk), failed as interrupted by the first
    process that sees its heartbeat stop.
    """
    if not _claim(run_id):
        return None
    app = app_object()
    with _Heartbeat(app, run_id):
        try:
            return _carry_out(run_id, fetch)
        except Exception as exc:  # noqa: BLE001 - every failure must end the run
            db.session.rollback()
            log.error("sync run %s failed: %s", run_id, _failure_reason(exc), exc_info=True)
            _record_failure(app, run_id, _failure_reason(exc))
            db.session.expire_all()
            return db.session.get(SyncRun, run_id)


def _failure_reason(exc: BaseException) -> str:
    # The driver's own error (SQLite's or PostgreSQL's), wrapped by SQLAlchemy or not.
    orig = getattr(exc, "orig", None) or exc
    message = str(orig).lower()
    if isinstance(exc, OperationalError) or type(orig).__name__ in ("OperationalError", "DiskFull"):
        if "locked" in message:
            return (
                "The database was busy (another process held its write lock); the sync "
                "stopped before storing everything it fetched."
            )
        if "full" in message or "no space left" in message:
            return (
                "The disk holding the database is full; the sync stopped before storing "
                "everything it fetched. Free space and sync again."
            )
    return (
        f"Internal error ({type(exc).__name__}); the sync stopped before storing everything "
        "it fetched; see the log."
    )


def _claimed_run(run_id: int) -> SyncRun:
    """A run this process claimed: it exists until its environment is deleted."""
    run = db.session.get(SyncRun, run_id)
    if run is None:
        raise LookupError(f"sync run {run_id} no longer exists")
    return run


def _record_failure(app: Flask, run_id: int, reason: str) -> None:
    """Write the failure, retrying while the database refuses; else the heartbeat expires."""
    deadline = time.monotonic() + app.config.get("SYNC_RECORD_FAILURE_SECONDS", 30)
    while True:
        try:
            run = _claimed_run(run_id)
            endpoint = db.session.scalar(
                select(Endpoint).where(
                    Endpoint.environment_id == run.environment_id, Endpoint.source == run.source
                )
            )
            if _finish(run, endpoint, "failed", reason, None):
                audit.record(
                    "sync.finish",
                    _target(run.environment_id, run.source),
                    outcome="failed",
                    actor="scheduler",
                    details={"run": run_id, "error": reason},
                )
            db.session.commit()
            return
        except Exception as exc:  # noqa: BLE001 - keep trying until the deadline
            db.session.rollback()
            if time.monotonic() > deadline:
                log.error(
                    "sync run %s: the failure could not be recorded (%s); it is marked "
                    "interrupted once its heartbeat is older than the limit",
                    run_id,
                    type(exc).__name__,
                )
                return
            time.sleep(0.5)


# New credentials in one sync after which PostgreSQL's planner statistics are refreshed.
ANALYZE_AFTER_NEW = 1000


def _refresh_statistics() -> None:
    """After a large first sync on PostgreSQL, its planner still believes the tables nearly
    empty until autovacuum comes by, and may look a credential up by SDDC Manager's id
    through the wrong index (a scan of the whole source per row). ANALYZE blocks no reader
    or writer."""
    if db.engine.dialect.name != "postgresql":
        return
    try:
        db.session.execute(text("ANALYZE credentials, password_history"))
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - statistics are an optimisation only
        db.session.rollback()
        log.warning("could not refresh the planner's statistics: %s", type(exc).__name__)


class _NoLongerOurs(Exception):
    """The run was failed as interrupted (by another process) while it was writing."""


def _checkpoint(run_id: int) -> None:
    """Commit one slice of a sync's writes, while the run is still ours."""
    if db.session.execute(select(SyncRun.id).where(*_ours(run_id))).first() is None:
        raise _NoLongerOurs(run_id)
    db.session.commit()
    writes.let_others_write()


def _carry_out(run_id: int, fetch) -> SyncRun | None:
    run = _claimed_run(run_id)
    endpoint = db.session.scalar(
        select(Endpoint).where(
            Endpoint.environment_id == run.environment_id, Endpoint.source == run.source
        )
    )
    env = db.session.get(Environment, run.environment_id)
    target = f"{env.name if env else run.environment_id} / {run.source}"
    audit.record(
        "sync.start",
        target,
        details={"trigger": run.trigger, "run": run.id},
        actor=run.requested_by or "scheduler",
    )
    started = time.monotonic()
    facts = SourceFacts()
    if endpoint is None:
        _finish(run, None, "failed", "This source is no longer configured.", None)
        db.session.commit()
        return run
    try:
        settings = endpoint_settings(endpoint)
        try:
            fetched = fetch_source(endpoint, settings, facts) if fetch is None else fetch(settings)
        finally:
            audit_locker_use(facts, target, run.id, run.requested_by or "scheduler")
        fetched = fit_columns(fetched)
    except VcfError as exc:
        log.warning("sync %s failed: %s", target, audit.clean(exc))
        db.session.rollback()
        run, endpoint = _claimed_run(run_id), db.session.get(Endpoint, endpoint.id)
        _finish(run, endpoint, "failed", str(exc), None)
        record_facts(endpoint, facts)
        audit.record(
            "sync.finish",
            target,
            outcome="failed",
            details={"run": run.id, "error": str(exc)},
            actor="scheduler",
        )
        db.session.commit()
        return run
    except Exception as exc:  # noqa: BLE001 - any bug must still end the run, not wedge it
        log.exception("sync %s crashed: %s", target, type(exc).__name__)
        db.session.rollback()
        run, endpoint = _claimed_run(run_id), db.session.get(Endpoint, endpoint.id)
        _finish(
            run, endpoint, "failed", f"Internal error ({type(exc).__name__}); see the log.", None
        )
        db.session.commit()
        return run
    _set_phase(run_id, "writing")
    try:
        counts = apply_fetch(
            run.environment_id, run.source, fetched, checkpoint=lambda: _checkpoint(run_id)
        )
    except _NoLongerOurs:
        db.session.rollback()
        log.warning(
            "sync %s: run %s was failed as interrupted meanwhile; the rest is not stored",
            target,
            run_id,
        )
        return db.session.get(SyncRun, run_id)
    except Exception as exc:
        db.session.rollback()
        log.exception("sync %s could not store: %s", target, type(exc).__name__)
        run, endpoint = _claimed_run(run_id), db.session.get(Endpoint, endpoint.id)
        if endpoint is not None:
            _finish(run, endpoint, "failed", _failure_reason(exc), None)
        else:
            _finish(run, None, "failed", "The environment was deleted during the sync.", None)
        db.session.commit()
        return run
    notes = list(dict.fromkeys(facts.notes + counts.notes))
    if counts.duplicates:
        notes.append(f"{counts.duplicates} duplicate entries ignored")
    state = "partial" if notes else "success"
    if not _finish(run, endpoint, state, "; ".join(notes) or None, counts):
        db.session.rollback()
        log.warning(
            "sync %s: run %s was failed as interrupted meanwhile; nothing stored", target, run_id
        )
        return db.session.get(SyncRun, run_id)
    record_facts(endpoint, facts)
    audit.record(
        "sync.finish",
        target,
        outcome=state,
        actor="scheduler",
        details={
            "run": run.id,
            "new": counts.new,
            "changed": counts.changed,
            "unchanged": counts.unchanged,
            "absent": counts.absent,
        },
    )
    db.session.commit()
    if counts.new >= ANALYZE_AFTER_NEW:
        _refresh_statistics()
    # After the run has ended (its outcome is not held up by it): the accounts that newly
    # need attention (expired, expiry unknown, the installer's stale copy), announced once.
    try:
        attention.review(run.environment_id)
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("sync %s: the needs-attention review failed", target, exc_info=True)
    log.info(
        "sync %s %s in %.2fs: new=%d changed=%d unchanged=%d absent=%d",
        target,
        state,
        time.monotonic() - started,
        counts.new,
        counts.changed,
        counts.unchanged,
        counts.absent,
    )
    return run


def process_queue(limit: int = 20, may_claim=None) -> list[int]:
    """Run queued syncs (oldest first); returns the ids this call carried out.

    `may_claim` is asked before each claim (the scheduler: "do I still lead?").
    """
    done = []
    queued = db.session.scalars(
        select(SyncRun.id).where(SyncRun.state == "queued").order_by(SyncRun.id).limit(limit)
    ).all()
    for run_id in queued:
        if may_claim is not None and not may_claim():
            break
        if execute_run(run_id) is not None:
            done.append(run_id)
    return done
