"""Environment definitions as a JSON document, to move setups between portals."""

from __future__ import annotations

from flask import Response, abort, jsonify

from .. import audit
from ..access.guards import admin_required, check_reauth_password
from ..environments import definitions
from ..platform import clock, transaction
from . import schemas as s
from .base import bp
from .spec import api_operation


def _download(document: dict) -> Response:
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    response = jsonify(document)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="vcf-environments_{stamp}.json"'
    )
    return response


@bp.get("/environments/definitions")
@admin_required
@api_operation({200: s.DefinitionsDocument})
def export_definitions():
    """Download environment definitions without passwords."""
    audit.record("environment.export_definitions", "all", details={"passwords": "no"})
    return _download(definitions.export_document(False))


@bp.post("/environments/definitions/export")
@admin_required
@api_operation({200: s.DefinitionsDocument}, s.ExportRequest, body_required=False, validate=False)
def export_definitions_with_passwords(body: dict):
    """Download definitions with passwords: explicitly chosen, password typed again."""
    if body.get("include_passwords") is not True:
        abort(400, description="Set include_passwords to true, or use GET for none.")
    typed = body.get("confirm_password")
    if not isinstance(typed, str) or not typed or not check_reauth_password(typed):
        audit.record(
            "environment.export_definitions", "all", outcome="denied", details={"passwords": "yes"}
        )
        transaction.keep()
        abort(403, description="Confirm your password to export service-account passwords.")
    audit.record("environment.export_definitions", "all", details={"passwords": "yes"})
    return _download(definitions.export_document(True))


@bp.post("/environments/definitions/import")
@admin_required
@api_operation({200: s.ImportResult}, s.DefinitionsImport, validate=False)
def import_definitions(body: dict):
    """Create or update environments (matched by name) from an exported document."""
    try:
        outcome = definitions.import_document(body)
    except definitions.NotADefinitionsDocument as exc:
        abort(400, description=str(exc))
    audit.record(
        "environment.import",
        "definitions",
        outcome="success" if not outcome.errors else "partial",
        details={
            "created": outcome.created,
            "updated": outcome.updated,
            "errors": len(outcome.errors),
        },
    )
    return jsonify(
        created=outcome.created,
        updated=outcome.updated,
        errors=outcome.errors,
        without_password=outcome.without_password,
    )
