"""Personal API tokens (JSON): create and list one's own, revoke; admins see everyone's."""

from __future__ import annotations

from flask import abort, jsonify
from flask_login import login_required

from ..access.guards import admin_required, recent_sign_in
from ..identity import tokens
from ..identity.users import actor
from ..platform import clock
from . import schemas as s
from .base import bp
from .spec import FieldErrors, api_operation


@bp.get("/me/tokens")
@login_required
@api_operation({200: s.TokenList})
def my_tokens():
    """The user's tokens (not revoked) with created, expires and last use; never the value."""
    return jsonify(items=[tokens.as_dict(t) for t in tokens.listed(actor())])


@bp.post("/me/tokens")
@login_required
@recent_sign_in("token.create")
@api_operation({201: s.TokenCreated}, s.TokenIn, errors=(403,), scope="session")
def create_token(body: s.TokenIn):
    """Create a token; its value is answered this once."""
    try:
        token, value = tokens.create(
            actor(),
            body.name,
            body.scope,
            body.expires_in_days,
            body.allowed_networks,
        )
    except tokens.TokenError as exc:
        raise FieldErrors({exc.field: str(exc)}) from None
    return jsonify(
        id=token.id,
        token=value,
        name=token.name,
        scope=token.scope,
        expires_at=clock.iso(token.expires_at),
    ), 201


@bp.delete("/me/tokens/<int:token_id>")
@login_required
@api_operation({204: None})
def revoke_my_token(token_id: int):
    """Revoke one of the user's tokens at once."""
    token = tokens.find(token_id, actor())
    if token is None:
        abort(404, description="No such token.")
    tokens.revoke(token)
    return "", 204


@bp.get("/tokens")
@admin_required
@api_operation({200: s.TokenList})
def all_tokens():
    """Every user's tokens (admin)."""
    return jsonify(items=[tokens.as_dict(t) for t in tokens.listed()])


@bp.delete("/tokens/<int:token_id>")
@admin_required
@api_operation({204: None})
def revoke_token(token_id: int):
    """Revoke anyone's token (admin)."""
    token = tokens.find(token_id)
    if token is None:
        abort(404, description="No such token.")
    tokens.revoke(token)
    return "", 204
