"""Password exports (CSV, Excel) as form posts: re-authenticated and audited."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request
from flask_login import login_required

from ..access.guards import recent_sign_in
from ..models import Environment
from ..platform.http import parse_form
from ..vault import exports
from ..vault.credentials import CredentialFilters

bp = Blueprint("export", __name__)


def send_export(environment: Environment | None) -> Response:
    """Answer an export form post for one environment (or all of them); the caller checked
    the reveal level on the one environment."""
    fmt = request.form.get("format", "csv")
    scope = request.form.get("scope", "view")
    if fmt not in exports.MIMETYPES or scope not in ("view", "all"):
        abort(400, description="format is csv or xlsx; scope is view or all")
    filters = parse_form(CredentialFilters) if scope == "view" else CredentialFilters()
    return exports.respond(environment, fmt, filters, {"format": fmt, "scope": scope})


@bp.post("/export")
@login_required
@recent_sign_in("credential.export")
def export_all():
    """Download credentials of every environment as CSV or Excel."""
    return send_export(None)
