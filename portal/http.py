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
    """A bad query argument (page, filter, sort); `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def json_error(status: int, message: str, details: Mapping[str, Any] | None = None):
    """The one JSON error body of the portal: `{"error": ..., "details": {...}}`."""
    return jsonify(error=message, details=dict(details or {})), status


def parse_query(model: type[M]) -> M:
    """The request's query arguments as `model`: the one parser of query arguments, for the
    API and the pages. An empty argument means its default; QueryError names a bad one."""
    args = {key: value for key, value in request.args.items() if value.strip()}
    try:
        return model.model_validate(args)
    except PydanticError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"]) or "query"
        raise QueryError(name, f"{name}: {error['msg']}") from None
