"""Friendly error pages; JSON errors for every /api/ path."""

from __future__ import annotations

import html
import json
import logging
import re
import traceback

from flask import Flask, current_app, g, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError

from .front import portal_config
from .platform.database import is_locked
from .platform.extensions import db
from .platform.http import QueryError, json_error

log = logging.getLogger("portal.errors")

_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Upload too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}
BUSY_MESSAGE = "The database is busy with another task; try again in a moment."
UNREACHABLE_MESSAGE = (
    "The database cannot be reached. The portal answers again by itself as soon as it is "
    "back; try again in a moment."
)
# A bare page for the day even the template cannot be rendered (a broken template
# directory): styled by the portal's own sheet, and naming nothing internal.
_FALLBACK_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>{title} · VCF Credential Portal</title>"
    '<link rel="stylesheet" href="/static/css/portal.css"></head><body><main id="main">'
    '<section class="card narrow"><p class="muted">Error {code}</p><h1>{title}</h1>'
    '<p>{message}</p><p><a class="button primary" href="/">Back to the portal</a></p>'
    "</section></main></body></html>"
)


# Answers to requests the HTTP server itself could not read (Gunicorn's parser): no request
# reaches the application, so no template and no session; said plainly, without echoing
# anything the client sent.
_PROTOCOL_MESSAGES = {
    400: "The request could not be read.",
    403: "The request was refused.",
    414: "The address is too long. Shorten the search or the filters and try again.",
    417: "The request's Expect header cannot be met.",
    431: "The request's headers are too large. Clearing this site's cookies may help.",
    501: "The request's transfer coding is not supported.",
}


def protocol_error_answer(code: int, reason: str, path: str) -> bytes:
    """A whole HTTP/1.1 answer (closing the connection) for a request Gunicorn refused: the
    JSON error body under /api/, the portal's plain error page elsewhere."""
    message = _PROTOCOL_MESSAGES.get(code, "Something went wrong.")
    title = _TITLES.get(code) or reason or "Error"
    if path.startswith("/api/"):
        body = json.dumps({"error": message, "details": {}}).encode()
        kind = "application/json"
    else:
        body = _FALLBACK_PAGE.format(
            code=code, title=html.escape(title), message=html.escape(message)
        ).encode()
        kind = "text/html; charset=utf-8"
    reason = re.sub(r"[^A-Za-z -]", "", reason) or "Error"
    head = (
        f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Visitor:
    """Who the error page is for, read only from what this request already loaded: an error
    page must render when the database cannot answer (it is often why there is an error)."""

    def __init__(self) -> None:
        self.is_authenticated = False
        self.signed_in = False
        self.username = self.role = ""
        self.is_admin = self.must_change_password = False
        user = g.get("_login_user")
        if user is None or not getattr(user, "is_authenticated", False):
            return
        self.signed_in = True
        try:
            loaded = sa_inspect(user).dict  # never loads: what is here is what was read
        except Exception:  # noqa: BLE001 - not a mapped user (an API token's principal)
            return
        if {"username", "role", "must_change_password"} <= loaded.keys():
            self.is_authenticated = True
            self.username, self.role = loaded["username"], loaded["role"]
            self.must_change_password = bool(loaded["must_change_password"])
            self.is_admin = self.role == "admin"


def _page(code: int, title: str, message: str) -> str:
    """The error page, rendered without the context processors (they read the database)."""
    try:
        return current_app.jinja_env.get_template("error.html").render(
            code=code,
            title=title,
            message=message,
            current_user=_Visitor(),
            request=request,
            portal_config=portal_config(with_preferences=False),
            certificate_warning=None,
        )
    except Exception as exc:  # noqa: BLE001 - the error page itself must never fail
        log.error("the error page could not be rendered: %s", type(exc).__name__)
        return _FALLBACK_PAGE.format(
            code=code, title=html.escape(title), message=html.escape(message)
        )


def respond(code: int, message: str):
    """The error answer: the JSON error body under /api/, the styled page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error(code, message)
    title = _TITLES.get(code, "Error")
    return _page(code, title, message), code


def _handle_http(exc: HTTPException):
    if isinstance(exc, CSRFError):
        return respond(400, "The form expired or was sent from another site; reload and retry.")
    message = exc.description or _TITLES.get(exc.code or 500, "Error")
    g.refusal_reason = message  # for the audit of a refusal (portal.refusals)
    response, code = respond(exc.code or 500, message)
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
    return respond(500, str(InternalServerError.description))


def _unavailable(exc: BaseException) -> str | None:
    """The message for a database that cannot answer for now, or None for a bug."""
    if isinstance(exc, SATimeoutError):
        return BUSY_MESSAGE  # every pooled connection is in use
    if not isinstance(exc, DBAPIError):
        return None
    if is_locked(exc):
        return BUSY_MESSAGE
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return UNREACHABLE_MESSAGE
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        if type(exc.orig).__module__.startswith("psycopg2"):
            return UNREACHABLE_MESSAGE  # connection lost or refused, server shutting down
        if any(part in text for part in ("disk", "unable to open", "readonly", "read-only")):
            return UNREACHABLE_MESSAGE
    return None


def _handle_database(exc: Exception):
    message = _unavailable(exc)
    if message is None:
        return _handle_unexpected(exc)
    # Another process holds SQLite's write lock, the pool is exhausted, or the database
    # server is gone for a while: a temporary state, not a bug, and never a 500.
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone with the server
        db.session().invalidate()
    log.warning(
        "database %s on %s %s",
        "busy" if message == BUSY_MESSAGE else "unreachable",
        request.method,
        request.path,
    )
    response, code = respond(503, message)
    return response, code, {"Retry-After": "5"}


def _handle_query(exc: QueryError):
    return respond(400, str(exc))


def init_app(app: Flask) -> None:
    """Register the error handlers."""
    app.register_error_handler(QueryError, _handle_query)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(DBAPIError, _handle_database)
    app.register_error_handler(SATimeoutError, _handle_database)
    app.register_error_handler(Exception, _handle_unexpected)
