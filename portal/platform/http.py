"""Request parsing and error bodies shared by the JSON API and the HTML pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from flask import jsonify, request
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

M = TypeVar("M", bound=BaseModel)

# SQLite and PostgreSQL integers are signed 64-bit; larger ids can match nothing.
MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    """`<int:...>` in our URLs: a database id, so one past 64 bits is a bad request.

    Without the bound the database driver raises OverflowError, a 500, on such an id.
    """

    def to_python(self, value: str) -> int:
        """The id as an int; 400 when no database row could have it."""
        number = super().to_python(value)
        if number > MAX_ID:
            raise BadRequest(f"An id is a whole number up to {MAX_ID}.")
        return number


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a body nested too deeply to parse is invalid JSON, not a crash."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON; RecursionError becomes the ValueError that request parsing expects."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("The JSON body is nested too deeply.") from None


class QueryError(ValueError):
    """A bad query argument or form field (page, filter, sort); `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def json_error(status: int, message: str, details: Mapping[str, Any] | None = None):
    """The one JSON error body of the portal: `{"error": ..., "details": {...}}`."""
    return jsonify(error=message, details=dict(details or {})), status


def _parse(model: type[M], values: Mapping[str, str], where: str) -> M:
    # The first value of each key; an empty one means its default.
    fields = {key: value for key, value in values.items() if value.strip()}
    try:
        return model.model_validate(fields)
    except PydanticError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"]) or where
        raise QueryError(name, f"{name}: {error['msg']}") from None


def parse_query(model: type[M]) -> M:
    """The request's query arguments as `model`: the one parser of query arguments, for the
    API and the pages. An empty argument means its default; QueryError names a bad one."""
    return _parse(model, request.args, "query")


def parse_form(model: type[M]) -> M:
    """The posted form as `model`, read as `parse_query` reads query arguments; fields the
    model does not name (the CSRF token, the form's own choices) are left aside."""
    return _parse(model, request.form, "form")
