"""Environments: list, create, read, change, delete, and test unsaved connection settings."""

from __future__ import annotations

from flask import jsonify
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import audit, environments, sync
from ..access import admin_required
from ..environments import ValidationError
from ..extensions import db
from ..http import MAX_ID, json_error, json_object_body
from ..models import SOURCES, Endpoint, Environment
from ..vcf import test_connection as vcf_test_connection
from .base import bp


@bp.get("/environments")
@login_required
def list_environments():
    """Every environment with its per-source status."""
    envs = db.session.scalars(select(Environment).order_by(Environment.name)).all()
    counts, active = environments.counts_by_environment(), environments.active_runs()
    return jsonify(items=[environments.environment_dict(e, counts, active) for e in envs])


@bp.post("/environments")
@admin_required
def create_environment():
    """Create an environment; its first sync is queued when sync is enabled."""
    env, _ = environments.save_environment(json_object_body())
    db.session.flush()
    audit.record("environment.create", env.name, details={"id": env.id})
    db.session.commit()
    runs = [
        sync.request_sync(env.id, endpoint.source, "schedule", current_user.username)
        for endpoint in env.endpoints
        if endpoint.sync_enabled
    ]
    # Audited after every run is queued: request_sync commits, or rolls back on a clash.
    for run in runs:
        sync.record_request(env.name, run)
    db.session.commit()
    return jsonify(environments.environment_dict(env)), 201


@bp.get("/environments/<int:env_id>")
@login_required
def get_environment(env_id: int):
    """One environment (the service-account password is never returned)."""
    return jsonify(environments.environment_dict(environments.environment_or_404(env_id)))


@bp.patch("/environments/<int:env_id>")
@admin_required
def update_environment(env_id: int):
    """Change an environment; an empty or missing password keeps the stored one."""
    env = environments.environment_or_404(env_id)
    env, changed = environments.save_environment(json_object_body(), env)
    audit.record(
        "environment.update",
        env.name,
        details={"id": env.id, "fields": ", ".join(changed)},
    )
    db.session.commit()
    return jsonify(environments.environment_dict(env))


@bp.delete("/environments/<int:env_id>")
@admin_required
def delete_environment(env_id: int):
    """Delete an environment with its credentials, history and runs."""
    env = environments.environment_or_404(env_id)
    name = env.name
    db.session.delete(env)
    audit.record("environment.delete", name, details={"id": env_id})
    db.session.commit()
    return "", 204


@bp.post("/environments/test-connection")
@admin_required
def test_connection():
    """Try unsaved endpoint settings: token and one page; report the certificate seen."""
    data = json_object_body()
    source = data.get("source")
    if source not in SOURCES:
        return json_error(422, "Some fields are not valid.", {"source": "manager or installer"})
    env_id = data.get("environment_id")
    if env_id is not None and (
        not isinstance(env_id, int) or isinstance(env_id, bool) or not 1 <= env_id <= MAX_ID
    ):
        raise ValidationError({"environment_id": "Expected the id of an environment."})
    stored: Endpoint | None = None
    if env_id is not None:
        stored = db.session.scalar(
            select(Endpoint).where(Endpoint.environment_id == env_id, Endpoint.source == source)
        )
    errors: dict[str, str] = {}
    # Parsed as new settings: nothing is taken from the stored endpoint but its password,
    # and that only when host, port, account and TLS trust are exactly the saved ones.
    values = environments.parse_endpoint(
        data, source, source, None, errors, password_required=False
    )
    if errors:
        raise ValidationError(errors)
    password = values.get("password") or environments.stored_password_for(stored, values)
    if not password:
        raise ValidationError({f"{source}.password": "Enter the password to test these settings."})
    result = vcf_test_connection(source, environments.endpoint_settings(values, password))
    audit.record(
        "environment.test_connection",
        f"{source} {values['host']}:{values['port']}",
        outcome="success" if result.ok else "failure",
    )
    db.session.commit()
    return jsonify(
        ok=result.ok,
        message=result.message,
        certificate_sha256=result.certificate_sha256,
        credential_count=result.credential_count,
    )
