"""Health check for load balancers and monitoring (no sign-in)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..platform import locks
from ..platform.crypto import has_cipher
from ..platform.database import database_status
from ..platform.extensions import db

bp = Blueprint("health", __name__)


def _role() -> str:
    try:
        return locks.scheduler_role(db.session, current_app.config["PORTAL_SETTINGS"])[0]
    except Exception:  # noqa: BLE001 - the health answer must not fail on this detail
        db.session.rollback()
        return "unknown"


@bp.get("/healthz")
def healthz():
    """Report the database and data key state: 200 when all is well, 503 naming what fails."""
    checks: dict[str, str] = {"database": database_status()}
    checks["data_key"] = "ok" if has_cipher() else "missing"
    healthy = all(value == "ok" for value in checks.values())
    body: dict[str, str | list[str]] = {"status": "ok" if healthy else "error", **checks}
    # Whether this node runs the scheduler (one node leads; the others stand by).
    body["scheduler"] = _role() if checks["database"] == "ok" else "unknown"
    if not healthy:
        body["failing"] = [name for name, value in checks.items() if value != "ok"]
    return jsonify(body), 200 if healthy else 503
