"""JSON API under /api/v1 (session cookie + X-CSRFToken header). See /api/v1/openapi.json."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request
from flask_login import current_user, login_required
from sqlalchemy import select

from . import audit, credentials, environments, sync
from .access import admin_required
from .environments import ValidationError
from .extensions import db
from .models import SOURCES, Credential, Endpoint, Environment, PasswordHistory, SyncRun
from .openapi import OPENAPI
from .vcf import test_connection as vcf_test_connection

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _error(status: int, message: str, details: dict | None = None):
    return jsonify(error=message, details=details or {}), status


@bp.errorhandler(ValidationError)
def _validation_failed(exc: ValidationError):
    return _error(422, "Some fields are not valid.", exc.errors)


@bp.errorhandler(credentials.QueryError)
def _bad_query(exc: credentials.QueryError):
    return _error(400, str(exc), {exc.field: str(exc)})


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, description="Expected a JSON object body.")
    return data


def _credential(cred_id: int) -> Credential:
    cred = db.session.get(Credential, cred_id)
    if cred is None:
        abort(404, description="No such credential.")
    return cred


@bp.get("/openapi.json")
@login_required
def openapi():
    """The OpenAPI description of this API."""
    return jsonify(OPENAPI)


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
    env, _ = environments.save_environment(_json_body())
    db.session.flush()
    audit.record("environment.create", env.name, details={"id": env.id}, commit=False)
    db.session.commit()
    for endpoint in env.endpoints:
        if endpoint.sync_enabled:
            sync.request_sync(env.id, endpoint.source, "schedule", current_user.username)
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
    env, changed = environments.save_environment(_json_body(), env)
    audit.record(
        "environment.update",
        env.name,
        commit=False,
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
    audit.record("environment.delete", name, details={"id": env_id}, commit=False)
    db.session.commit()
    return "", 204


@bp.post("/environments/test-connection")
@admin_required
def test_connection():
    """Try unsaved endpoint settings: token and one page; report the certificate seen."""
    data = _json_body()
    source = data.get("source")
    if source not in SOURCES:
        return _error(422, "Some fields are not valid.", {"source": "manager or installer"})
    stored: Endpoint | None = None
    if data.get("environment_id") is not None:
        stored = db.session.scalar(
            select(Endpoint).where(
                Endpoint.environment_id == data.get("environment_id"), Endpoint.source == source
            )
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
    return jsonify(
        ok=result.ok,
        message=result.message,
        certificate_sha256=result.certificate_sha256,
        credential_count=result.credential_count,
    )


@bp.post("/environments/<int:env_id>/sync")
@admin_required
def sync_environment(env_id: int):
    """Queue a sync of one source (or each configured source); 202 with the run."""
    env = environments.environment_or_404(env_id)
    data = request.get_json(silent=True) or {}
    source = data.get("source") if isinstance(data, dict) else None
    configured = [e.source for e in env.endpoints]
    if source is not None and source not in SOURCES:
        return _error(422, "Some fields are not valid.", {"source": "manager or installer"})
    if source is not None and source not in configured:
        return _error(409, f"This environment has no {source} configured.")
    sources = [source] if source else configured
    runs = [sync.request_sync(env.id, s, "manual", current_user.username) for s in sources]
    body = sync.run_dict(runs[0])
    body["runs"] = [sync.run_dict(r) for r in runs]
    return jsonify(body), 202


@bp.get("/sync-runs/<int:run_id>")
@login_required
def get_sync_run(run_id: int):
    """Progress and result of one sync run."""
    run = db.session.get(SyncRun, run_id)
    if run is None:
        abort(404, description="No such sync run.")
    return jsonify(sync.run_dict(run))


@bp.get("/environments/<int:env_id>/sync-runs")
@login_required
def list_sync_runs(env_id: int):
    """The latest sync runs of an environment, newest first."""
    environments.environment_or_404(env_id)
    runs = db.session.scalars(
        select(SyncRun)
        .where(SyncRun.environment_id == env_id)
        .order_by(SyncRun.id.desc())
        .limit(50)
    ).all()
    return jsonify(items=[sync.run_dict(r) for r in runs])


@bp.get("/environments/<int:env_id>/credentials")
@login_required
def list_credentials(env_id: int):
    """One page of credential metadata (no passwords), filtered and sorted."""
    environments.environment_or_404(env_id)
    return jsonify(credentials.credentials_page(env_id, request.args))


@bp.get("/credentials")
@login_required
def search_credentials():
    """Search credentials across every environment."""
    return jsonify(credentials.credentials_page(None, request.args))


@bp.get("/environments/<int:env_id>/password-age")
@login_required
def password_age(env_id: int):
    """Password age buckets, passwords older than `days` (90), and those expiring."""
    environments.environment_or_404(env_id)
    try:
        days = int(request.args.get("days", 90))
    except ValueError:
        return _error(400, "days must be a whole number", {"days": "whole number"})
    if not 1 <= days <= 3650:
        return _error(400, "days must be between 1 and 3650", {"days": "1 to 3650"})
    return jsonify(credentials.password_age(env_id, days))


@bp.post("/credentials/<int:cred_id>/reveal")
@login_required
def reveal_password(cred_id: int):
    """Return one password and audit it (as a reveal, or as a copy)."""
    cred = _credential(cred_id)
    data = request.get_json(silent=True)
    purpose = data.get("purpose") if isinstance(data, dict) else None
    action = "credential.copy" if purpose == "copy" else "credential.reveal"
    password = credentials.reveal(cred)
    audit.record(
        action,
        credentials.audit_target(cred),
        outcome="success" if password is not None else "empty",
    )
    return jsonify(password=password)


@bp.get("/credentials/<int:cred_id>/history")
@login_required
def password_history(cred_id: int):
    """The password history of a credential, without passwords."""
    cred = _credential(cred_id)
    return jsonify(items=credentials.history_items(cred))


@bp.post("/credentials/<int:cred_id>/history/<int:entry_id>/reveal")
@login_required
def reveal_history_password(cred_id: int, entry_id: int):
    """Return one former password and audit it."""
    cred = _credential(cred_id)
    entry = db.session.get(PasswordHistory, entry_id)
    if entry is None or entry.credential_id != cred.id:
        abort(404, description="No such history entry.")
    password = credentials.reveal_history(entry)
    audit.record(
        "credential.history_reveal", credentials.audit_target(cred), details={"entry": entry.id}
    )
    return jsonify(password=password)


@bp.delete("/credentials/<int:cred_id>")
@admin_required
def purge_credential(cred_id: int):
    """Purge a credential that is absent upstream, with its history (admin)."""
    cred = _credential(cred_id)
    if cred.present:
        return _error(409, "Only credentials absent upstream can be purged.")
    target = credentials.audit_target(cred)
    db.session.delete(cred)
    audit.record("credential.purge", target, commit=False)
    db.session.commit()
    return "", 204
