"""Password exports (CSV, Excel) as form posts: re-authenticated and audited."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request
from flask_login import login_required

from .. import audit, exports, ratelimit
from ..access import recent_sign_in, visible_ids
from ..credentials import CredentialFilters
from ..models import Environment
from ..platform.extensions import db
from ..platform.http import parse_form

bp = Blueprint("export", __name__)


def send_export(environment: Environment | None) -> Response:
    """Answer an export form post for one environment (or all of them); the caller checked
    the reveal level on the one environment."""
    fmt = request.form.get("format", "csv")
    scope = request.form.get("scope", "view")
    if fmt not in exports.MIMETYPES or scope not in ("view", "all"):
        abort(400, description="format is csv or xlsx; scope is view or all")
    filters = parse_form(CredentialFilters) if scope == "view" else CredentialFilters()
    return stream(environment, fmt, filters, {"format": fmt, "scope": scope})


def stream(
    environment: Environment | None, fmt: str, filters: CredentialFilters, details: dict
) -> Response:
    """Audit the export and send it (the body is read from the database as it is sent)."""
    within = None
    if environment is None:
        # Across environments: only those whose passwords the user may read.
        within = visible_ids("reveal")
        if within is not None and not within:
            abort(403, description="Exports need the reveal level on an environment.")
    if (limited := ratelimit.refused()) is not None:
        return limited
    body, headers, count = exports.prepare(environment, fmt, filters, within)
    target = environment.name if environment else "all environments"
    try:
        audit.record("credential.export", target, details={**details, "rows": count})
        db.session.commit()
    except BaseException:
        body.close()
        raise
    return Response(body, mimetype=exports.MIMETYPES[fmt], headers=headers, direct_passthrough=True)


@bp.post("/export")
@login_required
@recent_sign_in("credential.export")
def export_all():
    """Download credentials of every environment as CSV or Excel."""
    return send_export(None)
