"""Sync runs: queue a sync, follow its progress, list an environment's runs."""

from __future__ import annotations

from flask import abort, jsonify
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import sync
from ..access import grants
from ..access.guards import environment_for, environment_level
from ..identity.users import actor
from ..models import SyncRun
from ..platform.extensions import db
from ..platform.http import json_error
from . import schemas as s
from .base import bp
from .spec import api_operation


@bp.post("/environments/<int:env_id>/sync")
@login_required
@environment_level("manage")
@api_operation({202: s.SyncRunsQueued}, s.SyncRequest, body_required=False, errors=(409,))
def sync_environment(env_id: int, body: s.SyncRequest):
    """Queue a sync of one source (or each configured source; manage level); 202 with the
    run."""
    env = environment_for(env_id, "manage")
    source = body.source
    configured = [e.source for e in env.endpoints]
    if source is not None and source not in configured:
        return json_error(409, f"This environment has no {source} configured.")
    sources = [source] if source else configured
    runs = [sync.request_sync(env.id, s, "manual", current_user.username) for s in sources]
    for run in runs:
        sync.record_request(env.name, run)
    answer = sync.run_dict(runs[0])
    answer["runs"] = [sync.run_dict(r) for r in runs]
    return jsonify(answer), 202


@bp.get("/sync-runs/<int:run_id>")
@login_required
@api_operation({200: s.SyncRun})
def get_sync_run(run_id: int):
    """Progress and result of one sync run."""
    run = db.session.get(SyncRun, run_id)
    if run is None or grants.level(actor(), run.environment_id) is None:
        abort(404, description="No such sync run.")
    return jsonify(sync.run_dict(run))


@bp.get("/environments/<int:env_id>/sync-runs")
@login_required
@api_operation({200: s.SyncRunList})
def list_sync_runs(env_id: int):
    """The latest sync runs of an environment, newest first."""
    environment_for(env_id, "view")
    runs = db.session.scalars(
        select(SyncRun)
        .where(SyncRun.environment_id == env_id)
        .order_by(SyncRun.id.desc())
        .limit(50)
    ).all()
    return jsonify(items=[sync.run_dict(r) for r in runs])
