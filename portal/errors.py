"""Friendly error pages; JSON errors for every /api/ path."""

from __future__ import annotations

import logging
import traceback

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from .database import is_locked
from .extensions import db
from .http import QueryError, json_error

log = logging.getLogger("portal.errors")

_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Upload too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Database busy",
}
BUSY_MESSAGE = "The database is busy with another task; try again in a moment."


def respond(code: int, message: str):
    if request.path.startswith("/api/"):
        return json_error(code, message)
    title = _TITLES.get(code, "Error")
    return render_template("error.html", code=code, title=title, message=message), code


def _handle_http(exc: HTTPException):
    if isinstance(exc, CSRFError):
        return respond(400, "The form expired or was sent from another site; reload and retry.")
    response, code = respond(
        exc.code or 500, exc.description or _TITLES.get(exc.code or 500, "Error")
    )
    # Headers the error carries (Allow on a 405, WWW-Authenticate) stay with our body.
    kept = [
        (k, v) for k, v in exc.get_headers() if k.lower() not in ("content-type", "content-length")
    ]
    return response, code, kept


def _handle_unexpected(exc: Exception):
    # Where it happened, but not the message: library messages can carry request data.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        request.path,
        extra={"trace": frames},
    )
    return respond(500, InternalServerError.description)


def _handle_database(exc: OperationalError):
    if not is_locked(exc):
        return _handle_unexpected(exc)
    # Another process (a backup, a restore, a maintenance command, a long sync write) holds
    # SQLite's write lock: a temporary state, not a bug.
    db.session.rollback()
    log.warning("database busy on %s %s", request.method, request.path)
    response, code = respond(503, BUSY_MESSAGE)
    return response, code, {"Retry-After": "5"}


def _handle_query(exc: QueryError):
    return respond(400, str(exc))


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.register_error_handler(QueryError, _handle_query)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(OperationalError, _handle_database)
    app.register_error_handler(Exception, _handle_unexpected)
