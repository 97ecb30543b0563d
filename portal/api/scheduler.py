"""Scheduler state and control (JSON): jobs per environment source, pause, resume."""

from __future__ import annotations

from flask import abort, current_app, jsonify
from flask_login import login_required
from sqlalchemy import func, select

from .. import audit
from ..access.grants import restrict
from ..access.guards import environment_for, environment_level, visible_ids
from ..environments.service import environment_dict
from ..models import Endpoint, Environment, SyncRun
from ..platform import locks
from ..platform.clock import iso
from ..platform.extensions import db
from ..sync import run_dict
from . import schemas as s
from .base import bp
from .spec import api_operation


@bp.get("/scheduler")
@login_required
@api_operation({200: s.SchedulerState})
def scheduler_state():
    """Every sync job: environment, source, interval, last run and outcome, next run."""
    within = visible_ids()
    managed = visible_ids("manage")
    last_ids = restrict(
        select(func.max(SyncRun.id)).group_by(SyncRun.environment_id, SyncRun.source),
        SyncRun.environment_id,
        within,
    )
    last_runs = {
        (r.environment_id, r.source): r
        for r in db.session.scalars(select(SyncRun).where(SyncRun.id.in_(last_ids)))
    }
    rows = db.session.execute(
        restrict(
            select(Endpoint, Environment.name)
            .join(Environment)
            .order_by(Environment.name, Endpoint.source),
            Endpoint.environment_id,
            within,
        )
    ).all()
    jobs = []
    for endpoint, name in rows:
        last = last_runs.get((endpoint.environment_id, endpoint.source))
        jobs.append(
            {
                "environment_id": endpoint.environment_id,
                "environment": name,
                "source": endpoint.source,
                "enabled": endpoint.sync_enabled,
                "paused": endpoint.sync_paused,
                "interval_minutes": endpoint.sync_interval_minutes,
                "next_run_at": iso(endpoint.next_run_at)
                if endpoint.sync_enabled and not endpoint.sync_paused
                else None,
                "last_run": run_dict(last) if last else None,
                "can_manage": managed is None or endpoint.environment_id in managed,
            }
        )
    # The scheduler lives in a Gunicorn master (of one node among several): ask its lock.
    leader = locks.current_leader(db.session, current_app.config["PORTAL_SETTINGS"])
    return jsonify(running=leader is not None, jobs=jobs)


def _set_paused(env_id: int, source: str, paused: bool):
    env = environment_for(env_id, "manage")
    endpoint = next((e for e in env.endpoints if e.source == source), None)
    if endpoint is None:
        abort(404, description=f"This environment has no {source} configured.")
    endpoint.sync_paused = paused
    if paused:
        endpoint.next_run_at = None
    audit.record("scheduler.pause" if paused else "scheduler.resume", f"{env.name} / {source}")
    return jsonify(environment_dict(env))


@bp.post("/environments/<int:env_id>/pause")
@login_required
@environment_level("manage")
@api_operation({200: s.Environment}, s.SourceChoice, body_required=False)
def pause_sync(env_id: int, body: s.SourceChoice):
    """Pause the scheduled sync of one source."""
    return _set_paused(env_id, body.source, True)


@bp.post("/environments/<int:env_id>/resume")
@login_required
@environment_level("manage")
@api_operation({200: s.Environment}, s.SourceChoice, body_required=False)
def resume_sync(env_id: int, body: s.SourceChoice):
    """Resume the scheduled sync of one source."""
    return _set_paused(env_id, body.source, False)
