"""The "needs attention" list (JSON): accounts to act on, of the environments the caller sees."""

from __future__ import annotations

from flask import jsonify
from flask_login import login_required

from ..access.guards import environment_for, visible_ids
from ..alerts import attention
from . import schemas as s
from .base import bp
from .spec import api_operation


@bp.get("/attention")
@login_required
@api_operation({200: s.AttentionPage}, query=s.AttentionQuery)
def needs_attention(query: s.AttentionQuery):
    """Accounts that need attention: SDDC Manager cannot reach them (connectivityStatus
    ERROR), their password has expired or its expiry is unknown, or the VCF Installer's spec
    holds an older password than fleet management; each with what to do and, where the caller
    manages the environment, the actions through SDDC Manager that apply."""
    if query.environment_id is not None:
        environment_for(query.environment_id, "view")
    return jsonify(
        attention.page(
            visible_ids(),
            visible_ids("manage"),
            query.page,
            query.per_page,
            environment_id=query.environment_id,
            kind=query.kind,
        )
    )
