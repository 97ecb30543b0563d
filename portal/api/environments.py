"""Environments: list, create, read, change, delete, and test unsaved connection settings."""

from __future__ import annotations

from flask import abort, jsonify
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import audit, sync
from ..access import grants, ratelimit
from ..access.guards import admin_required, environment_for, visible_ids
from ..environments import endpoints, service
from ..environments.service import ValidationError
from ..identity.users import actor
from ..models import Endpoint
from ..platform.extensions import db
from ..platform.http import json_error
from ..vcf import test_connection as vcf_test_connection
from . import schemas as s
from .base import bp
from .spec import api_operation, validated


@bp.get("/environments")
@login_required
@api_operation({200: s.EnvironmentList})
def list_environments():
    """Every environment with its per-source status."""
    return jsonify(items=service.environment_list(visible_ids()))


@bp.post("/environments")
@admin_required
@api_operation({201: s.Environment}, s.EnvironmentIn, validate=False, errors=(422,))
def create_environment(body: dict):
    """Create an environment; its first sync is queued when sync is enabled."""
    env, _ = service.save_environment(body)
    db.session.flush()
    audit.record("environment.create", env.name, details={"id": env.id})
    runs = [
        sync.request_sync(env.id, endpoint.source, "schedule", current_user.username)
        for endpoint in env.endpoints
        if endpoint.sync_enabled
    ]
    # Audited after every run is queued: request_sync commits, or rolls back on a clash.
    for run in runs:
        sync.record_request(env.name, run)
    return jsonify(service.environment_dict(env)), 201


@bp.get("/environments/<int:env_id>")
@login_required
@api_operation({200: s.Environment})
def get_environment(env_id: int):
    """One environment (the service-account password is never returned)."""
    return jsonify(service.environment_dict(environment_for(env_id)))


@bp.patch("/environments/<int:env_id>")
@login_required
@api_operation({200: s.Environment}, s.EnvironmentIn, validate=False, errors=(403, 422))
def update_environment(env_id: int, body: dict):
    """Change an environment (manage level; a new name: admins only); an empty or missing
    password keeps the stored one."""
    env = environment_for(env_id, "manage")
    name = body.get("name")
    renamed = isinstance(name, str) and name.strip().lower() != env.name.lower()
    if renamed and not grants.has_role(actor(), ("admin",)):
        # Names are unique across environments a manager may not see: whatever the name,
        # the answer is the same, so it cannot tell whether a hidden one holds it.
        return json_error(403, "Only an admin can rename an environment.")
    env, changed = service.save_environment(body, env)
    audit.record(
        "environment.update",
        env.name,
        details={"id": env.id, "fields": ", ".join(changed)},
    )
    return jsonify(service.environment_dict(env))


@bp.delete("/environments/<int:env_id>")
@admin_required
@api_operation({204: None})
def delete_environment(env_id: int):
    """Delete an environment with its credentials, history and runs."""
    env = environment_for(env_id, "manage")
    name = env.name
    db.session.delete(env)
    audit.record("environment.delete", name, details={"id": env_id})
    return "", 204


@bp.post("/environments/test-connection")
@login_required
@api_operation({200: s.ConnectionTest}, s.ConnectionTestIn, validate=False, errors=(422, 429))
def test_connection(body: dict):
    """Try unsaved endpoint settings: token and one page; report the certificate seen. For a
    new environment admins only; for a stored one the manage level on it."""
    if grants.visible_environment_ids(actor(), "manage") == set():
        abort(403, description="Testing a connection needs the manage level.")
    # The model checks source and environment_id; the source's endpoint form the rest.
    choice = validated(s.ConnectionTestIn, {k: body.get(k) for k in ("source", "environment_id")})
    source = choice.source
    stored: Endpoint | None = None
    if choice.environment_id is None:
        if not current_user.is_admin:
            abort(403, description="This action needs the admin role.")
    else:
        environment_for(choice.environment_id, "manage")
        stored = db.session.scalar(
            select(Endpoint).where(
                Endpoint.environment_id == choice.environment_id, Endpoint.source == source
            )
        )
    ratelimit.enforce_tests()
    errors: dict[str, str] = {}
    # Parsed as new settings: nothing is taken from the stored endpoint but its password,
    # and that only when host, port, account and TLS trust are exactly the saved ones.
    values = endpoints.parse_endpoint(body, source, source, None, errors, password_required=False)
    if errors or values is None:  # None comes with an error
        raise ValidationError(errors)
    password = values.get("password") or endpoints.stored_password_for(stored, values)
    if not password:
        raise ValidationError({f"{source}.password": "Enter the password to test these settings."})
    result = vcf_test_connection(source, service.endpoint_settings(values, password))
    audit.record(
        "environment.test_connection",
        f"{source} {values['host']}:{values['port']}",
        outcome="success" if result.ok else "failure",
        details=None if result.ok else {"reason": result.message[:200]},
    )
    return jsonify(
        ok=result.ok,
        message=result.message,
        certificate_sha256=result.certificate_sha256,
        credential_count=result.credential_count,
    )
