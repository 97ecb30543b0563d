"""Password exports (CSV, Excel) as form posts: re-authenticated and audited."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request
from flask_login import login_required

from .. import audit, exports
from ..access import confirm_recent_auth
from ..credentials import CredentialFilters, count_matching
from ..extensions import db
from ..http import parse_form
from ..models import Environment

bp = Blueprint("export", __name__)


def send_export(environment: Environment | None) -> Response:
    """Answer an export form post for one environment (or all of them)."""
    fmt = request.form.get("format", "csv")
    scope = request.form.get("scope", "view")
    if fmt not in exports.MIMETYPES or scope not in ("view", "all"):
        abort(400, description="format is csv or xlsx; scope is view or all")
    target = environment.name if environment else "all environments"
    if not confirm_recent_auth():
        audit.record(
            "credential.export",
            environment.name if environment else "all",
            outcome="denied",
            details={"reason": "re-authentication needed"},
        )
        db.session.commit()
        abort(403, description="Confirm your password to export passwords.")
    filters = parse_form(CredentialFilters) if scope == "view" else CredentialFilters()
    env_id = environment.id if environment else None
    headers = {
        "Content-Disposition": f'attachment; filename="{exports.file_name(environment, fmt)}"',
        "Cache-Control": "no-store",
    }
    if fmt == "csv":
        # Sent while read: the row count is the view's at the time of the request.
        count = count_matching(env_id, filters)
        body = exports.csv_chunks(env_id, filters)
    else:
        body, size, count = exports.xlsx_chunks(env_id, filters)
        headers["Content-Length"] = str(size)
    try:
        audit.record(
            "credential.export", target, details={"format": fmt, "scope": scope, "rows": count}
        )
        db.session.commit()
    except BaseException:
        body.close()
        raise
    return Response(body, mimetype=exports.MIMETYPES[fmt], headers=headers, direct_passthrough=True)


@bp.post("/export")
@login_required
def export_all():
    """Download credentials of every environment as CSV or Excel."""
    return send_export(None)
