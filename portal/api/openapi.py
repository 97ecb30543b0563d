"""The OpenAPI description of this API, built from the routes and their models."""

from __future__ import annotations

from flask import current_app, jsonify
from flask_login import login_required

from . import schemas as s
from .base import bp
from .spec import api_operation, openapi_document


@bp.get("/openapi.json")
@login_required
@api_operation({200: s.OpenAPIDocument})
def openapi():
    """The OpenAPI 3.1 description of this API."""
    document = current_app.extensions.get("portal_openapi")
    if document is None:
        document = current_app.extensions["portal_openapi"] = openapi_document(current_app)
    return jsonify(document)
