"""The /api/v1 blueprint and the error handlers every API module shares."""

from __future__ import annotations

from flask import Blueprint, request

from ..environments import ValidationError
from ..http import QueryError, json_error
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
