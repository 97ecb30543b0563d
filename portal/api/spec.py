"""One source for request validation and the OpenAPI description: `api_operation`.

A view declares its body, query and response models; the decorator validates the request
with them (our error body on failure) and records them, and `openapi_document` builds the
description from the URL map plus those records. A route without a record fails the build.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, abort, request
from pydantic import BaseModel, RootModel
from pydantic import ValidationError as ModelError
from pydantic.json_schema import models_json_schema

from ..platform.http import MAX_ID, parse_query
from ..version import __version__
from .schemas import Error

M = TypeVar("M", bound=BaseModel)
SCHEMA_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_ERROR_TEXT = {
    400: "Malformed request: not a JSON object, bad JSON, a bad query argument or id",
    401: "Sign-in required",
    403: "Not allowed for this role, or the CSRF token is missing",
    404: "Not found",
    409: "Conflict with the current state",
    413: "The request body is over the limit (8 MiB)",
    422: "Some fields are not valid (details per field)",
    429: "Too many reveals and exports this minute (see Retry-After)",
    502: "A server the portal relies on (the directory) cannot be used; the error says why",
    503: "The database is busy with another task; retry (see Retry-After)",
}
# A download: the response of an export (CSV or Excel), not JSON.
FILE = "file"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A download is a file, kept byte for byte: binary (OpenAPI 3.0's format, which generators
# read, and 3.1's contentMediaType). The CSV too: it starts with a byte order mark and is
# saved, not read as text, and a generated client keeps one type for both.
_FILE_CONTENT = {
    media: {"schema": {"type": "string", "format": "binary", "contentMediaType": media}}
    for media in (_XLSX, "text/csv")  # a generator reads the first: bytes, not text
}
# A CSV download that holds no password (a report): text/csv only.
CSV_FILE = "csv"
_CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


class FieldErrors(Exception):
    """A request body that does not fit its model; answered as 422 with details per field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("invalid fields")
        self.errors = errors


@dataclass(frozen=True)
class Operation:
    """What a view declares: its models, and the error statuses it can answer."""

    responses: dict[int, type[BaseModel] | str | None]
    body: type[BaseModel] | None = None
    body_required: bool = True
    validate: bool = True
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = field(default_factory=tuple)
    # The token scope it needs: "read", "reveal", "admin", or "session" (no token at all).
    # None: "read" for GET, "admin" for a change.
    scope: str | None = None

    def needed_scope(self, method: str) -> str:
        if self.scope is not None:
            return self.scope
        return "read" if method in ("GET", "HEAD") else "admin"


def _field_errors(exc: ModelError) -> dict[str, str]:
    # A validator's own message, without the "Value error, " pydantic puts before it.
    return {
        ".".join(str(part) for part in e["loc"]): e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    }


def validated(model: type[M], data: Any) -> M:
    """`data` as the model; FieldErrors (a 422 with a message per field) when it does not fit."""
    try:
        return model.model_validate(data)
    except ModelError as exc:
        raise FieldErrors(_field_errors(exc)) from None


def _is_list_model(model: type[BaseModel]) -> bool:
    return issubclass(model, RootModel) and model.model_json_schema().get("type") == "array"


def _request_body(op: Operation) -> Any:
    """The body as the view receives it: the validated model, or the raw object."""
    if not op.body_required and not request.get_data(cache=True):
        data: Any = {}
    else:
        data = request.get_json(silent=True)
    # A list body only where the model is a list (RootModel), an object everywhere else.
    expected = list if op.body is not None and _is_list_model(op.body) else dict
    if not isinstance(data, expected):
        abort(400, description=f"Expected a JSON {'array' if expected is list else 'object'} body.")
    if not op.validate or op.body is None:
        return data
    return validated(op.body, data)


def api_operation(
    responses: dict[int, type[BaseModel] | str | None],
    body: type[BaseModel] | None = None,
    *,
    body_required: bool = True,
    validate: bool = True,
    query: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    scope: str | None = None,
) -> Callable:
    """Validate the request with the models (view gets `body`/`query`) and record them.

    `validate=False` checks only that the body is a JSON object and passes it on as a dict:
    a service with its own rules and per-field messages is then the authority for values.
    """
    op = Operation(responses, body, body_required, validate, query, errors, scope)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if op.body is not None:
                kwargs["body"] = _request_body(op)
            if op.query is not None:
                kwargs["query"] = parse_query(op.query)
            return view(*args, **kwargs)

        wrapper.api_operation = op  # type: ignore[attr-defined]
        return wrapper

    return decorate


# -- the document ----------------------------------------------------------------------------


def _path_parameters(rule: str) -> tuple[str, list[dict]]:
    params = []
    for match in _PARAM.finditer(rule):
        schema: dict[str, Any] = {"type": "string"}
        if match["converter"] == "int":
            schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        params.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _PARAM.sub(lambda m: "{" + m["name"] + "}", rule), params


def _not_null(schema: dict) -> dict:
    # A query argument is text or absent, never null: "str | None" reads as just a string.
    schema = {k: v for k, v in schema.items() if k != "title" and v is not None}
    branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema(ref_template=SCHEMA_REF)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        described = _not_null(prop)
        if name not in required and described.get("type") == "string":
            # An empty argument means the default (as an HTML form sends it): say so. (A
            # number stays a number here; the server takes an empty one as the default too.)
            default = described.pop("default", None)
            described = {"anyOf": [described, {"type": "string", "maxLength": 0}]}
            if default is not None:
                described["default"] = default
        params.append(
            {"name": name, "in": "query", "required": name in required, "schema": described}
        )
    return params


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(rule, method: str, view: Callable, op: Operation, ref: Callable) -> dict:
    doc = (view.__doc__ or "").strip().splitlines()
    result: dict[str, Any] = {
        "operationId": rule.endpoint.split(".")[-1],
        "summary": doc[0] if doc else rule.endpoint,
        "tags": [rule.rule.removeprefix("/api/v1/").split("/")[0]],
    }
    scope = op.needed_scope(method)
    result["x-token-scope"] = scope
    browser = (
        {"sessionCookie": [], "csrfToken": []} if method in _CHANGES else {"sessionCookie": []}
    )
    result["security"] = [browser] if scope == "session" else [{"bearerToken": []}, browser]
    if getattr(view, "recent_sign_in", None):
        # portal.access.recent_sign_in: a session needs a fresh sign-in; a token passes.
        result["x-recent-sign-in"] = True
        result["description"] = (
            "From a browser session: needs a sign-in within 15 minutes, or the password as "
            "`confirm_password` in the body, or `POST /api/v1/me/reauth` first (403 with "
            "`details.needs: recent_sign_in` otherwise). An API token passes."
        )
    if op.query is not None:
        result["parameters"] = _query_parameters(op.query)
    if op.body is not None:
        result["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": ref(op.body)}},
        }
    responses: dict[str, Any] = {}
    for status, model in op.responses.items():
        if model == FILE:
            responses[str(status)] = {"description": "The file", "content": _FILE_CONTENT}
        elif model == CSV_FILE:
            csv_only = {"text/csv": _FILE_CONTENT["text/csv"]}
            responses[str(status)] = {"description": "The CSV file", "content": csv_only}
        elif model is None:
            responses[str(status)] = {"description": "No content"}
        else:
            responses[str(status)] = _json("OK", ref(model))
    codes = {400, 401, 403, 503, *op.errors}
    if op.body is not None:
        codes.add(413)
    if scope == "reveal":
        codes.add(429)
    if rule.arguments:
        codes.add(404)
    if op.body is not None and op.validate:
        codes.add(422)
    for code in sorted(codes):
        responses[str(code)] = _json(_ERROR_TEXT[code], ref(Error))
    responses["default"] = _json("Any other error: the same error body", ref(Error))
    result["responses"] = responses
    return result


def _api_rules(app: Flask):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            view = app.view_functions[rule.endpoint]
            op = getattr(view, "api_operation", None)
            if op is None:
                raise LookupError(f"{rule.endpoint} has no @api_operation")
            yield rule, view, op


def openapi_document(app: Flask) -> dict:
    """The OpenAPI 3.1 description of every /api/v1 route, built from the code."""
    rules = sorted(_api_rules(app), key=lambda item: item[0].rule)
    models: set[type[BaseModel]] = {Error}
    for _, _, op in rules:
        models.update(m for m in op.responses.values() if m not in (None, FILE, CSV_FILE))
        if op.body is not None:
            models.add(op.body)
    ordered = sorted(models, key=lambda m: m.__name__)
    keys, defs = models_json_schema([(m, "validation") for m in ordered], ref_template=SCHEMA_REF)

    def ref(model: type[BaseModel]) -> dict:
        return keys[(model, "validation")]

    paths: dict[str, dict] = {}
    for rule, view, op in rules:
        path, params = _path_parameters(rule.rule)
        item = paths.setdefault(path, {})
        if params:
            item["parameters"] = params
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            item[method.lower()] = _operation(rule, method, view, op, ref)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "VCF Credential Portal API",
            "version": __version__,
            "description": "Two ways in. Scripts: a personal token (created on the Tokens "
            "page or POST /me/tokens) in `Authorization: Bearer <token>`; no CSRF token, no "
            "session. Its scope (read, reveal or admin; each operation names the one it needs "
            "in x-token-scope) narrows what its owner may do. Browsers: the session cookie, and "
            'the CSRF token from <meta name="csrf-token"> in the X-CSRFToken header of every '
            "state-changing request. Request bodies are limited to 8 MiB. Every error answers "
            '{"error": message, "details": {field: message}}.',
        },
        "security": [{"bearerToken": []}, {"sessionCookie": []}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (vcfp_...)",
                },
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "portal_session"},
                "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRFToken"},
            },
        },
    }
