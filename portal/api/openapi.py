"""The OpenAPI description of this API."""

from __future__ import annotations

from flask import jsonify
from flask_login import login_required

from ..openapi import OPENAPI
from .base import bp


@bp.get("/openapi.json")
@login_required
def openapi():
    """The OpenAPI description of this API."""
    return jsonify(OPENAPI)
