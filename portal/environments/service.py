"""Environments and their endpoints: validation, storage (passwords encrypted), serialisation."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app
from sqlalchemy import func, select, update

from ..models import SOURCES, Credential, Endpoint, Environment, SyncRun
from ..platform import clock
from ..platform.clock import iso
from ..platform.crypto import ENDPOINT_PASSWORD, LOCKER_PASSWORD, cipher
from ..platform.extensions import db
from ..vcf import EndpointSettings, format_fingerprint
from .endpoints import (
    MAX_HOST,
    MAX_INTERVAL,
    MAX_PASSWORD,
    MAX_PORT,
    MAX_USERNAME,
    MIN_INTERVAL,
    MIN_PORT,
    parse_endpoint,
)

# The limits of environment fields, written once: the service checks them, the API models
# and the form describe them (an endpoint's in .endpoints, with their rules).
MAX_NAME = 128
MAX_DESCRIPTION = 2000
LIMITS = {
    "name": MAX_NAME,
    "description": MAX_DESCRIPTION,
    "host": MAX_HOST,
    "username": MAX_USERNAME,
    "password": MAX_PASSWORD,
    "port": (MIN_PORT, MAX_PORT),
    "sync_interval_minutes": (MIN_INTERVAL, MAX_INTERVAL),
}


# The write-only fields an audit record names when they change (never their values).
_SECRETS = ("password", "locker_password")


class ValidationError(Exception):
    """Input the portal refuses; `errors` maps field paths to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("invalid input")
        self.errors = errors


def environment_or_404(env_id: int) -> Environment:
    """The environment with this id, or a 404 for the view that asked."""
    env = db.session.get(Environment, env_id)
    if env is None:
        abort(404, description="No such environment.")
    return env


def _apply_endpoint(env: Environment, source: str, values: dict) -> Endpoint:
    endpoint = next((e for e in env.endpoints if e.source == source), None)
    if endpoint is None:
        endpoint = Endpoint(source=source)
        if env.id is not None:
            # Removing a source keeps its credentials: the source added again counts them.
            endpoint.credential_count = db.session.execute(
                _count(env.id, source, True)
            ).scalar_one()
            endpoint.absent_count = db.session.execute(_count(env.id, source, False)).scalar_one()
        env.endpoints.append(endpoint)
    password = values.pop("password", None)
    locker = values.pop("locker_password", None)
    moved = any(getattr(endpoint, key, None) != values.get(key) for key in ("host", "port"))
    for key, value in values.items():
        setattr(endpoint, key, value)
    if moved:
        endpoint.api_detected = None  # another appliance: its API is detected at its sync
    if locker:
        endpoint.locker_password_enc = cipher().encrypt(locker, LOCKER_PASSWORD)
    if password or endpoint.password_enc is None:
        # An imported definition may come without a password: stored empty, sync says so.
        endpoint.password_enc = cipher().encrypt(password or "", ENDPOINT_PASSWORD)
    return endpoint


def save_environment(
    data: Any, env: Environment | None = None, password_required: bool = True
) -> tuple[Environment, list[str]]:
    """Create or update an environment from API data; returns it and the changed fields."""
    if not isinstance(data, dict):
        raise ValidationError({"": "Expected a JSON object."})
    errors: dict[str, str] = {}
    name = data.get("name", env.name if env else None)
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        errors["name"] = f"Enter a name (at most {MAX_NAME} characters)."
    else:
        name = name.strip()
        # Unique without regard to case (an index says so too). Only admins create and
        # rename environments, and they see every one: the answer reveals nothing hidden.
        clash = db.session.scalar(
            select(Environment.id).where(func.lower(Environment.name) == func.lower(name))
        )
        if clash is not None and (env is None or clash != env.id):
            errors["name"] = "Another environment has this name."
    description = data.get("description", env.description if env else "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        errors["description"] = f"At most {MAX_DESCRIPTION} characters of text."
    parsed: dict[str, dict | None] = {}
    for source in SOURCES:
        existing = next((e for e in env.endpoints if e.source == source), None) if env else None
        if source not in data:
            parsed[source] = "keep"  # type: ignore[assignment]
            continue
        if data[source] is None:
            parsed[source] = None
            continue
        parsed[source] = parse_endpoint(
            data[source], source, source, existing, errors, password_required
        )

    def configured(source: str) -> bool:
        if parsed[source] == "keep":
            return env is not None and any(e.source == source for e in env.endpoints)
        return parsed[source] is not None

    if not errors and not any(configured(s) for s in SOURCES):
        errors["manager"] = (
            "Configure at least one source: SDDC Manager, the VCF Installer or VCF Operations "
            "fleet management."
        )
    if errors:
        raise ValidationError(errors)
    changed: list[str] = []
    if env is None:
        env = Environment(name=name, description=description)
        db.session.add(env)
        changed = ["name", "description"]
    else:
        if env.name != name:
            changed.append("name")
        if env.description != description:
            changed.append("description")
        env.name, env.description = name, description
    for source in SOURCES:
        values = parsed[source]
        if values == "keep":
            continue
        if values is None:
            endpoint = next((e for e in env.endpoints if e.source == source), None)
            if endpoint is not None:
                env.endpoints.remove(endpoint)
                changed.append(f"{source} removed")
            continue
        changed.extend(f"{source}.{name}" for name in _SECRETS if values.get(name))
        _apply_endpoint(env, source, dict(values))
        changed.append(source)
    env.updated_at = clock.now()
    return env, changed


def locker_password(endpoint: Endpoint) -> str | None:
    """The stored locker decryption password of a fleet management endpoint, if any."""
    if endpoint.locker_password_enc is None:
        return None
    return cipher().decrypt(endpoint.locker_password_enc, LOCKER_PASSWORD) or None


def endpoint_settings(values: dict | Endpoint, password: str | None = None) -> EndpointSettings:
    """Client settings for an endpoint row (password decrypted) or validated values."""
    if isinstance(values, Endpoint):
        password = cipher().decrypt(values.password_enc, ENDPOINT_PASSWORD)
        values = {
            "host": values.host,
            "port": values.port,
            "username": values.username,
            "verify_tls": values.verify_tls,
            "ca_pem": values.ca_pem,
            "pinned_sha256": values.pinned_sha256,
        }
    return EndpointSettings(
        host=values["host"],
        port=values["port"],
        username=values["username"],
        password=password or "",
        verify_tls=values["verify_tls"],
        ca_pem=values.get("ca_pem"),
        pinned_sha256=values.get("pinned_sha256"),
        connect_timeout=current_app.config.get("VCF_CONNECT_TIMEOUT", 10.0),
        read_timeout=current_app.config.get("VCF_READ_TIMEOUT", 60.0),
        retry_backoff=current_app.config.get("VCF_RETRY_BACKOFF", 0.5),
    )


def _endpoint_dict(endpoint: Any) -> dict:
    body = {
        "host": endpoint.host,
        "port": endpoint.port,
        "username": endpoint.username,
        "verify_tls": endpoint.verify_tls,
        "ca_pem": endpoint.ca_pem,
        "pinned_sha256": format_fingerprint(endpoint.pinned_sha256)
        if endpoint.pinned_sha256
        else None,
        "sync_enabled": endpoint.sync_enabled,
        "sync_interval_minutes": endpoint.sync_interval_minutes,
        "sync_paused": endpoint.sync_paused,
    }
    if endpoint.source == "fleet":
        body["locker_password_set"] = bool(
            endpoint.locker_password_enc is not None
            if isinstance(endpoint, Endpoint)
            else endpoint.locker_set
        )
        body["api_detected"] = endpoint.api_detected
    return body


def refresh_counts(environment_id: int, source: str) -> None:
    """Store the source's present and absent credential counts on its endpoint.

    Called in the transaction of every change of that source's credentials (the caller
    commits). On PostgreSQL the endpoint row is locked before counting: the count is then a
    statement that sees whatever a concurrent writer of the same counts committed before. On
    SQLite there is one writer at a time: the counts are read before the write, so that the
    write lock is not held while 50,000 rows are counted.
    """
    where = (Endpoint.environment_id == environment_id, Endpoint.source == source)
    if db.engine.dialect.name == "sqlite":
        present = db.session.scalar(_count(environment_id, source, True))
        absent = db.session.scalar(_count(environment_id, source, False))
    else:
        db.session.execute(select(Endpoint.id).where(*where).with_for_update())
        present = _count(environment_id, source, True).scalar_subquery()
        absent = _count(environment_id, source, False).scalar_subquery()
    db.session.execute(
        update(Endpoint)
        .where(*where)
        .values(credential_count=present, absent_count=absent)
        .execution_options(synchronize_session=False)
    )


def _count(environment_id: int, source: str, present: bool):
    return select(func.count()).where(
        Credential.environment_id == environment_id,
        Credential.source == source,
        Credential.present.is_(present),
    )


def active_runs() -> dict[tuple[int, str], Any]:
    """Queued or running syncs (id, state, phase), by (environment id, source)."""
    runs = db.session.execute(
        select(
            SyncRun.id, SyncRun.environment_id, SyncRun.source, SyncRun.state, SyncRun.phase
        ).where(SyncRun.state.in_(("queued", "running")))
    )
    return {(r.environment_id, r.source): r for r in runs}


_LIST_ENDPOINT_COLUMNS = (
    Endpoint.environment_id,
    Endpoint.source,
    Endpoint.host,
    Endpoint.port,
    Endpoint.username,
    Endpoint.verify_tls,
    Endpoint.ca_pem,
    Endpoint.pinned_sha256,
    Endpoint.sync_enabled,
    Endpoint.sync_interval_minutes,
    Endpoint.sync_paused,
    Endpoint.last_status,
    Endpoint.last_sync_at,
    Endpoint.last_success_at,
    Endpoint.last_error,
    Endpoint.next_run_at,
    Endpoint.credential_count,
    Endpoint.absent_count,
    Endpoint.locker_password_enc.is_not(None).label("locker_set"),
    Endpoint.api_detected,
)


def environment_list(within: set[int] | None = None) -> list[dict]:
    """Every environment (of `within`, None: all) in the API shape, in three plain queries
    whatever the number of credentials (the dashboard asks for it every few seconds)."""
    query = select(
        Environment.id,
        Environment.name,
        Environment.description,
        Environment.created_at,
        Environment.updated_at,
    ).order_by(Environment.name)
    if within is not None:
        query = query.where(Environment.id.in_(sorted(within)))
    envs = db.session.execute(query).all()
    endpoints: dict[int, list] = {}
    for row in db.session.execute(select(*_LIST_ENDPOINT_COLUMNS)):
        endpoints.setdefault(row.environment_id, []).append(row)
    active = active_runs()
    return [environment_dict(env, active, endpoints.get(env.id, [])) for env in envs]


def environment_dict(env: Any, active: dict | None = None, endpoints: list | None = None):
    """The API shape of an environment (a model or a row, with its endpoints); never the
    service-account password."""
    active = active_runs() if active is None else active
    shown = env.endpoints if endpoints is None else endpoints
    body: dict[str, Any] = {
        "id": env.id,
        "name": env.name,
        "description": env.description,
        "created_at": iso(env.created_at),
        "updated_at": iso(env.updated_at),
        "manager": None,
        "installer": None,
        "fleet": None,
        "status": {},
    }
    for endpoint in shown:
        body[endpoint.source] = _endpoint_dict(endpoint)
        run = active.get((env.id, endpoint.source))
        body["status"][endpoint.source] = {
            "state": endpoint.last_status or "never",
            "last_sync_at": iso(endpoint.last_sync_at),
            "last_success_at": iso(endpoint.last_success_at),
            "last_error": endpoint.last_error,
            "next_run_at": iso(endpoint.next_run_at) if endpoint.sync_enabled else None,
            "credential_count": endpoint.credential_count,
            "absent_count": endpoint.absent_count,
            "active_run": {"id": run.id, "state": run.state, "phase": run.phase} if run else None,
        }
    return body
