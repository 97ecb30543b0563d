"""Health check for load balancers and monitoring (no sign-in)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..crypto import has_cipher
from ..database import database_status

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Report the database and data key state: 200 when all is well, 503 naming what fails."""
    checks: dict[str, str] = {"database": database_status()}
    checks["data_key"] = "ok" if has_cipher() else "missing"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "error", **checks}
    if not healthy:
        body["failing"] = [name for name, value in checks.items() if value != "ok"]
    return jsonify(body), 200 if healthy else 503
