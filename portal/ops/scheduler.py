"""The one scheduler. It runs in the process that imported app.py: the Gunicorn master.

Workers never run syncs: they queue them (see portal.sync). This process runs three kinds of
jobs: one interval job per enabled environment source, a dispatcher that carries out queued
runs (manual "sync now"), and a reconciler that follows environment changes made by workers;
besides them, periodic jobs: the daily backup, expiry checks, directory checks, break-glass
copies (portal.ops.break_glass, when their schedule says) and alert delivery.
A file lock in the data directory keeps a second scheduler (another master, a stray
`python app.py`) from starting against the same data.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask
from sqlalchemy import select

from .. import sync
from ..alerts import delivery
from ..control import jobs as control_jobs
from ..identity.directory import accounts as directory_accounts
from ..lifecycle import action_runs, expiry_checks
from ..models import Endpoint
from ..platform import locks, wakeup
from ..platform.clock import UTC
from ..platform.extensions import db
from . import audit_integrity, break_glass, maintenance

log = logging.getLogger("portal.ops.scheduler")

DISPATCH_SECONDS = 2
RECONCILE_SECONDS = 10
EXPIRY_SECONDS = 5
# How often the directory check looks for signed-in LDAP users due a new lookup.
DIRECTORY_SECONDS = 60
# How often the break-glass schedule (kept in the database, changed by any worker) is read.
BREAK_GLASS_SECONDS = 60
START_DELAY_SECONDS = 5
TAKEOVER_SECONDS = 15.0
# How long a stopping leader waits for its running jobs to notice the stop before it exits
# without them (their runs are already recorded as interrupted).
HALT_SECONDS = 5.0
STOPPED_REASON = "Interrupted: the portal was stopped during the sync."
_state: dict = {
    "scheduler": None,
    "leadership": None,
    "app": None,
    "stop": None,
    "standby": None,
    "dispatcher": None,
}
_run_lock = threading.Lock()


def job_id(endpoint: Endpoint) -> str:
    """The scheduler job id of an endpoint's periodic sync."""
    return f"sync:{endpoint.environment_id}:{endpoint.source}"


def interval_seconds(app: Flask, endpoint: Endpoint) -> int:
    """The sync period; PORTAL_TEST_INTERVAL_SECONDS (tests only) replaces the minutes."""
    override = app.config["PORTAL_SETTINGS"].test_interval_seconds
    return override or endpoint.sync_interval_minutes * 60


def still_leading() -> bool:
    """Checked before every claim: a process no longer sure it leads claims no run."""
    leadership = _state["leadership"]
    return leadership is not None and leadership.still_leading()


def _scheduled_sync(app: Flask, environment_id: int, source: str) -> None:
    with app.app_context():
        try:
            run = sync.request_sync(environment_id, source, "schedule", "scheduler")
            if run.state == "queued" and still_leading():
                sync.execute_run(run.id)
        finally:
            db.session.remove()


def _dispatch(app: Flask) -> None:
    if not _run_lock.acquire(blocking=False):
        return  # the previous dispatch is still working through the queue
    try:
        with app.app_context():
            try:
                if not still_leading():
                    _step_down(app)
                    return
                # Whichever process dispatches notices runs whose owner stopped: they end.
                sync.fail_stale_runs()
                sync.process_queue(may_claim=still_leading)
                # Credential actions: start the queued, follow the running (one step each).
                action_runs.advance(may_claim=still_leading)
            finally:
                db.session.remove()
    finally:
        _run_lock.release()


def _start_dispatcher(app: Flask) -> None:
    """Carry out queued runs the moment one is queued (woken), and every few seconds."""
    settings = app.config["PORTAL_SETTINGS"]
    try:
        listener = wakeup.Listener(settings).open()
    except Exception as exc:  # noqa: BLE001 - without a channel the timer still dispatches
        log.warning(
            "no wake-up channel (%s); looking every %d s", type(exc).__name__, DISPATCH_SECONDS
        )
        listener = wakeup.Listener(settings)
    stopped = threading.Event()

    def loop() -> None:
        while not stopped.is_set():
            listener.wait(DISPATCH_SECONDS)
            if stopped.is_set() or _state["scheduler"] is None:
                break
            try:
                _dispatch(app)
            except Exception:  # noqa: BLE001 - a failed turn (a locked database) must not end the loop
                log.exception(
                    "dispatching queued runs failed; trying again in %d s", DISPATCH_SECONDS
                )
        listener.close()

    thread = threading.Thread(target=loop, name="sync-dispatcher", daemon=True)
    thread.start()  # started before it is published: a published dispatcher is running
    _state.update(dispatcher=(thread, stopped, listener))


def _stop_dispatcher() -> None:
    dispatcher = _state.get("dispatcher")
    _state["dispatcher"] = None
    if dispatcher is not None:
        thread, stopped, listener = dispatcher
        stopped.set()
        listener.release_path()
        if thread is not threading.current_thread():
            thread.join(timeout=DISPATCH_SECONDS + 5)


def _first_run(endpoint: Endpoint, seconds: int) -> datetime:
    """When a new job first runs: a run missed while the portal was down runs once, soon
    after start (coalesced); otherwise the schedule continues from the last sync."""
    now = datetime.now(UTC)
    if endpoint.last_sync_at is None:
        return now + timedelta(seconds=seconds)
    due = endpoint.last_sync_at.replace(tzinfo=UTC) + timedelta(seconds=seconds)
    return max(due, now + timedelta(seconds=START_DELAY_SECONDS))


def reconcile(app: Flask, scheduler: BackgroundScheduler) -> None:
    """Make the jobs match the enabled endpoints in the database; publish next run times."""
    with app.app_context():
        try:
            endpoints = db.session.scalars(select(Endpoint)).all()
            wanted = {}
            for endpoint in endpoints:
                if endpoint.sync_enabled:
                    wanted[job_id(endpoint)] = endpoint
            for job in scheduler.get_jobs():
                if job.id.startswith("sync:") and job.id not in wanted:
                    job.remove()
            for jid, endpoint in wanted.items():
                seconds = interval_seconds(app, endpoint)
                job = scheduler.get_job(jid)
                if job is None or int(job.trigger.interval.total_seconds()) != seconds:
                    if job is not None:
                        job.remove()
                    job = scheduler.add_job(
                        _scheduled_sync,
                        IntervalTrigger(seconds=seconds),
                        id=jid,
                        args=(app, endpoint.environment_id, endpoint.source),
                        max_instances=1,
                        coalesce=True,
                        misfire_grace_time=seconds,
                        next_run_time=_first_run(endpoint, seconds),
                    )
                if endpoint.sync_paused and job.next_run_time is not None:
                    job.pause()
                elif not endpoint.sync_paused and job.next_run_time is None:
                    job.resume()
                job = scheduler.get_job(jid)
                next_run = job.next_run_time if job else None
                naive = next_run.astimezone(UTC).replace(tzinfo=None) if next_run else None
                if endpoint.next_run_at != naive:
                    endpoint.next_run_at = naive
            for endpoint in endpoints:
                if not endpoint.sync_enabled and endpoint.next_run_at is not None:
                    endpoint.next_run_at = None
            db.session.commit()
        finally:
            db.session.remove()


def _keeps_running() -> bool:
    """False once the scheduler is stopping or has lost the lead: long jobs end early."""
    return _state["scheduler"] is not None and still_leading()


def _expiry_checks(app: Flask) -> None:
    """Ask SDDC Manager for expiry where a sync succeeded or a person asked (own thread: a
    check polls for a while and must not hold up syncs)."""
    with app.app_context():
        try:
            if still_leading():
                expiry_checks.process(may_continue=_keeps_running)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("expiry checks failed")
        finally:
            db.session.remove()


def _directory_checks(app: Flask) -> None:
    """Look signed-in LDAP users up again: removed or disabled ones lose their sessions."""
    with app.app_context():
        try:
            if still_leading():
                counts = directory_accounts.recheck()
                db.session.commit()
                if counts["ended"]:
                    log.warning("directory check ended the access of %d users", counts["ended"])
        except Exception:  # noqa: BLE001 - the next round tries again
            db.session.rollback()
            log.exception("directory check failed")
        finally:
            db.session.remove()


def _daily_backup(app: Flask) -> None:
    if app.config["PORTAL_SETTINGS"].sqlite_path is None:
        return
    try:
        path = maintenance.backup(app)
        log.info("daily backup written: %s", path.name)
    except Exception as exc:  # noqa: BLE001 - a failed backup must not stop the scheduler
        log.error("daily backup failed: %s", type(exc).__name__)


def _break_glass(app: Flask) -> None:
    """A break-glass copy when its schedule says one is due; the service audits, alerts and
    records its outcome, so a failure here is only what kept the check from running."""
    with app.app_context():
        try:
            if still_leading():
                break_glass.run_if_due(app)
        except Exception as exc:  # noqa: BLE001 - the next check tries again
            db.session.rollback()
            log.error("break-glass check failed: %s", type(exc).__name__)
        finally:
            db.session.remove()


def running() -> BackgroundScheduler | None:
    """The scheduler of this process, if it runs one."""
    return _state["scheduler"]


def standing_by() -> bool:
    """True while this process waits to take over the scheduler."""
    return _state["standby"] is not None


def start_if_enabled(app: Flask) -> bool:
    """Start the scheduler unless disabled, run from the `flask` CLI, or held elsewhere."""
    settings = app.config["PORTAL_SETTINGS"]
    if Path(sys.argv[0]).name == "flask":
        return False  # a command-line task, not the service
    locks.hold_portal_lock(settings.data_dir)
    if not settings.scheduler_enabled:
        log.info("scheduler disabled in this process (PORTAL_SCHEDULER=off)")
        return False
    leadership = locks.leadership_for(settings)
    if not leadership.acquire():
        log.warning("another process runs the scheduler; standing by to take over")
        _stand_by(app, leadership)
        return False
    _start(app, leadership)
    return True


def _stand_by(app: Flask, leadership) -> None:
    """Retry the election in the background: if the leader dies, this process takes over."""
    stop_event = threading.Event()

    every = app.config.get("SCHEDULER_TAKEOVER_SECONDS", TAKEOVER_SECONDS)

    def wait_for_lock() -> None:
        while not stop_event.wait(every):
            if leadership.acquire():
                log.warning("the scheduler had no leader: this process takes over")
                try:
                    _start(app, leadership)
                    return
                except Exception:  # noqa: BLE001 - a lead held without a scheduler helps nobody
                    log.exception("taking over the scheduler failed; standing by")
                    _abandon_start(leadership)

    thread = threading.Thread(target=wait_for_lock, name="scheduler-standby", daemon=True)
    _state.update(stop=stop_event, standby=thread)
    thread.start()


def _abandon_start(leadership) -> None:
    """Undo a takeover that failed half-way and give the lead back, so another process (or
    this one, at its next try) can take it."""
    scheduler = _state["scheduler"]
    _state.update(scheduler=None, leadership=None, app=None)
    _stop_dispatcher()
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    leadership.release()


def _step_down(app: Flask) -> None:
    """The lead is lost (the database connection broke): stop scheduling, claim nothing
    more, and stand by for a new election."""
    log.warning("this process no longer leads the scheduler; standing by")
    scheduler, leadership = _state["scheduler"], _state["leadership"]
    _state.update(scheduler=None, leadership=None)
    _stop_dispatcher()
    if scheduler is not None:
        scheduler.shutdown(wait=False)  # called from one of its own jobs
    if leadership is not None:
        leadership.release()
        _stand_by(app, leadership)


class _OverlapFilter(logging.Filter):
    """A periodic job still running at its next turn is the normal case here (an expiry
    check polls for minutes, every 5 s it is due again): not a warning for the journal.
    A turn that came late because the machine was busy (coalesced into the next) is news,
    not trouble: it is logged as information."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "maximum number of running instances reached" in message:
            return False
        if "was missed by" in message and record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _periodic_jobs() -> list[tuple]:
    """The leader's jobs besides the syncs: (function of the app, trigger, id)."""
    nightly = {"trigger": "cron", "hour": 2, "misfire_grace_time": 3600}

    def every(seconds: float) -> dict:
        return {"trigger": "interval", "seconds": seconds}

    return [
        (_daily_backup, {**nightly, "minute": 30}, "backup"),
        (_expiry_checks, every(EXPIRY_SECONDS), "expiry"),
        (_directory_checks, every(DIRECTORY_SECONDS), "directory"),
        (audit_integrity.seal_pass, every(audit_integrity.SEAL_SECONDS), "audit-seal"),
        (audit_integrity.forward_pass, every(audit_integrity.SEAL_SECONDS), "audit-forward"),
        (audit_integrity.archive, {**nightly, "minute": 40}, "audit-archive"),
        (audit_integrity.daily, {**nightly, "minute": 45}, "audit-verify"),
        (_break_glass, every(BREAK_GLASS_SECONDS), "break-glass"),
        (delivery.run_pass, every(delivery.PASS_SECONDS), "notifications"),
    ]


def _start(app: Flask, leadership) -> None:
    with app.app_context():
        interrupted = sync.fail_interrupted_runs()
        if interrupted:
            log.warning("%d sync runs were interrupted by the last stop", interrupted)
        db.session.remove()
    for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
        overlap = logging.getLogger(name)
        if not any(isinstance(f, _OverlapFilter) for f in overlap.filters):
            overlap.addFilter(_OverlapFilter())
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=4)}, timezone="UTC"
    )
    common = {"max_instances": 1, "coalesce": True}
    control_jobs.register(scheduler, app, common, still_leading)
    scheduler.add_job(
        reconcile,
        "interval",
        seconds=RECONCILE_SECONDS,
        args=(app, scheduler),
        id="reconcile",
        **common,
    )
    for function, trigger, job in _periodic_jobs():
        scheduler.add_job(function, args=(app,), id=job, **trigger, **common)
    scheduler.start()
    _state.update(scheduler=scheduler, leadership=leadership, app=app)
    _start_dispatcher(app)
    reconcile(app, scheduler)
    jobs = [job for job in scheduler.get_jobs() if job.id.startswith("sync:")]
    log.info("scheduler started with %d sync jobs", len(jobs))


def stop() -> None:
    """Stop the scheduler (or the stand-by) and release the lock."""
    if _state["stop"] is not None:
        _state["stop"].set()
    if _state["standby"] is not None:
        _state["standby"].join(timeout=5)
    scheduler = _state["scheduler"]
    _state["scheduler"] = None
    _stop_dispatcher()
    if scheduler is not None:
        scheduler.shutdown(wait=True)
    if _state["leadership"] is not None:
        _state["leadership"].release()
    _state.update(scheduler=None, leadership=None, app=None, standby=None, stop=None)


def halt(app: Flask, grace: float = HALT_SECONDS) -> bool:
    """The service is stopping (SIGTERM to the Gunicorn master): stop now rather than when
    the running jobs end. Long jobs see the stop and end early, this process's running syncs
    are recorded as interrupted, and the lead is released at once so that another node (or
    the next start) leads. Returns True when every job thread ended within `grace`; when
    not, the caller exits without waiting for them (nothing of theirs is left to record)."""
    scheduler, leadership = _state["scheduler"], _state["leadership"]
    if _state["stop"] is not None:
        _state["stop"].set()
    _state["scheduler"] = None  # _keeps_running() turns false: expiry checks stop waiting
    _stop_dispatcher()
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    if leadership is not None:
        with app.app_context():
            try:
                failed = sync.fail_own_runs(STOPPED_REASON)
                if failed:
                    log.warning("%d sync runs were interrupted by the stop", failed)
            except Exception as exc:  # noqa: BLE001 - the next leader fails them as stale
                log.warning("could not record the interrupted runs: %s", type(exc).__name__)
            finally:
                db.session.remove()
        leadership.release()
    _state.update(leadership=None, standby=None, stop=None)
    others = [
        t
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]
    deadline = time.monotonic() + grace
    while others and time.monotonic() < deadline:
        time.sleep(0.1)
        others = [t for t in others if t.is_alive()]
    return not others


def forget_in_child() -> None:
    """In a forked web worker: drop the copied scheduler and the copy of the lock's fd.

    Threads do not survive fork, so the copied scheduler object is dead weight; and a worker
    must not keep the lock alive after the master that owns the scheduler has died.
    """
    if _state["leadership"] is not None:
        _state["leadership"].forget_in_child()
    if _state["dispatcher"] is not None:
        _state["dispatcher"][2].forget_in_child()
    _state.update(scheduler=None, leadership=None, standby=None, stop=None, dispatcher=None)
