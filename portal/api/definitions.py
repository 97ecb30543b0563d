"""Environment definitions as a JSON document, to move setups between portals."""

from __future__ import annotations

from flask import Response, abort, jsonify
from sqlalchemy import select

from .. import audit, clock
from ..access import admin_required, check_reauth_password
from ..crypto import ENDPOINT_PASSWORD, cipher
from ..environments import ValidationError, save_environment
from ..extensions import db
from ..models import Environment
from . import schemas as s
from .base import bp
from .spec import api_operation

FORMAT = "vcf-credential-portal/environments"
_FIELDS = (
    "host",
    "port",
    "username",
    "verify_tls",
    "ca_pem",
    "pinned_sha256",
    "sync_enabled",
    "sync_interval_minutes",
)


def export_document(include_passwords: bool) -> dict:
    """Every environment's settings; service-account passwords only when asked."""
    items = []
    for env in db.session.scalars(select(Environment).order_by(Environment.name)):
        item = {
            "name": env.name,
            "description": env.description,
            "manager": None,
            "installer": None,
        }
        for endpoint in env.endpoints:
            block = {field: getattr(endpoint, field) for field in _FIELDS}
            if include_passwords:
                block["password"] = cipher().decrypt(endpoint.password_enc, ENDPOINT_PASSWORD)
            item[endpoint.source] = block
        items.append(item)
    return {
        "format": FORMAT,
        "version": 1,
        "exported_at": clock.iso(clock.now()),
        "includes_passwords": include_passwords,
        "environments": items,
    }


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
    db.session.commit()
    return _download(export_document(False))


@bp.post("/environments/definitions/export")
@admin_required
@api_operation({200: s.DefinitionsDocument}, s.ExportRequest, body_required=False, validate=False)
def export_definitions_with_passwords(body: dict):
    """Download definitions with passwords: explicitly chosen, password typed again."""
    data = body
    if data.get("include_passwords") is not True:
        abort(400, description="Set include_passwords to true, or use GET for none.")
    typed = data.get("confirm_password")
    if not isinstance(typed, str) or not typed or not check_reauth_password(typed):
        audit.record(
            "environment.export_definitions", "all", outcome="denied", details={"passwords": "yes"}
        )
        db.session.commit()
        abort(403, description="Confirm your password to export service-account passwords.")
    audit.record("environment.export_definitions", "all", details={"passwords": "yes"})
    db.session.commit()
    return _download(export_document(True))


@bp.post("/environments/definitions/import")
@admin_required
@api_operation({200: s.ImportResult}, s.DefinitionsDocument, validate=False)
def import_definitions(body: dict):
    """Create or update environments (matched by name) from an exported document."""
    document = body
    if document.get("format") != FORMAT or not isinstance(document.get("environments"), list):
        abort(400, description="Not an environment definitions document from this portal.")
    created = updated = 0
    errors: dict[str, dict] = {}
    without_password: list[str] = []
    for index, item in enumerate(document["environments"]):
        name = item.get("name") if isinstance(item, dict) else None
        label = name if isinstance(name, str) and name else f"#{index + 1}"
        existing = (
            db.session.scalar(select(Environment).where(Environment.name == name))
            if isinstance(name, str)
            else None
        )
        try:
            with db.session.begin_nested():
                save_environment(item, existing, password_required=False)
                db.session.flush()
        except ValidationError as exc:
            errors[label] = exc.errors
            continue
        if existing is None:
            created += 1
        else:
            updated += 1
        for source in ("manager", "installer"):
            block = item.get(source)
            if isinstance(block, dict) and not block.get("password") and existing is None:
                without_password.append(f"{label} / {source}")
    audit.record(
        "environment.import",
        "definitions",
        outcome="success" if not errors else "partial",
        details={"created": created, "updated": updated, "errors": len(errors)},
    )
    db.session.commit()
    return jsonify(
        created=created, updated=updated, errors=errors, without_password=without_password
    )
