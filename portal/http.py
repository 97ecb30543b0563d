"""Request parsing and error bodies shared by the JSON API and the HTML pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import abort, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

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


def json_object_body() -> dict:
    """The request's JSON body, which must be an object; 400 otherwise."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, description="Expected a JSON object body.")
    return data


def optional_json_object() -> dict:
    """The request's JSON object body, or {} when there is none; 400 for any other JSON."""
    if not request.get_data(cache=True):
        return {}
    return json_object_body()


def int_arg(args: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    """A whole-number query argument within [low, high]; QueryError names a bad one."""
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        raise QueryError(name, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise QueryError(name, f"{name} must be between {low} and {high}")
    return value
