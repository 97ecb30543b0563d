"""The /api/v1 blueprint and the error handlers every API module shares."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from flask_login import current_user

from ..access.guards import check_reauth_password
from ..environments.service import ValidationError
from ..identity import tokens
from ..identity.second_factor import FactorError
from ..platform import transaction
from ..platform.http import QueryError, json_error
from .spec import FieldErrors

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.errorhandler(ValidationError)
def _validation_failed(exc: ValidationError):
    return json_error(422, "Some fields are not valid.", exc.errors)


@bp.errorhandler(FieldErrors)
def _fields_not_valid(exc: FieldErrors):
    return json_error(422, "Some fields are not valid.", exc.errors)


@bp.errorhandler(QueryError)
def _bad_query(exc: QueryError):
    return json_error(400, str(exc), {exc.field: str(exc)})


@bp.before_request
def _parse_json_body() -> None:
    """A JSON body that does not parse (bad syntax, nested too deeply) is a 400 on every route."""
    if request.is_json and request.get_data(cache=True):
        request.get_json()  # raises BadRequest, answered as the JSON error body


@bp.before_request
def _token_scope():
    """A token's scope bounds what it may call (its owner's role is checked by the view)."""
    token = tokens.current()
    if token is None:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    op = getattr(view, "api_operation", None)
    needed = op.needed_scope(request.method) if op is not None else "read"
    if needed == "session":
        return json_error(403, "This needs a signed-in browser session; a token cannot do it.")
    if not tokens.allows(token.scope, needed):
        return json_error(
            403, f"This token's scope is {token.scope}; this operation needs {needed}."
        )
    return None


@bp.errorhandler(FactorError)
def _factor_refused(exc: FactorError):
    return json_error(409, str(exc))


def password_refused(password: str):
    """None when the re-typed password is right; else the error to answer (a wrong one counts
    toward the lockout, and the fifth ends the session)."""
    if check_reauth_password(password):
        return None
    transaction.keep()
    if not current_user.is_authenticated:
        return json_error(401, "Signed out after too many wrong passwords.")
    return json_error(403, "That password is not correct.")
