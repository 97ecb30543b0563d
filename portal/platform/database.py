"""The database connection: SQLite settings, how long to wait for a lock, and its state."""

from __future__ import annotations

import logging
from typing import cast

from flask import Flask, current_app, has_app_context, has_request_context
from sqlalchemy import CursorResult, Executable, event, text
from sqlalchemy.exc import OperationalError

from .config import Settings
from .extensions import db

log = logging.getLogger("portal.platform.database")

# How long a statement waits for another connection's write lock before "database is
# locked". Background work (syncs, backups, the command line) waits long; a web request
# answers 503 sooner rather than hold a worker thread while the browser waits.
BUSY_TIMEOUT_MS = 10_000
WEB_BUSY_TIMEOUT_MS = 5_000


def init_app(app: Flask, settings: Settings) -> None:
    """Configure SQLAlchemy; SQLite gets WAL, foreign keys and a busy timeout."""
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.engine_url
    app.config.setdefault("SQLITE_WEB_BUSY_TIMEOUT_MS", WEB_BUSY_TIMEOUT_MS)
    options: dict = {"pool_pre_ping": True}
    if settings.sqlite_path is not None:
        options["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        # UPDATEs of many rows (a sync's changed passwords, expiry dates) in pages of 500
        # per round trip; psycopg2's own executemany makes one round trip per row.
        options.update(executemany_mode="values_plus_batch", executemany_batch_page_size=500)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", options)
    db.init_app(app)
    if settings.sqlite_path is not None:
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas)
            event.listen(db.engine, "checkout", _busy_timeout_for_caller)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _busy_timeout_for_caller(dbapi_connection, _record, _proxy) -> None:
    # Set at each checkout: the same pooled connection serves web requests and, in the
    # development server's single process, the scheduler's threads.
    if has_request_context():
        wait_ms = int(current_app.config["SQLITE_WEB_BUSY_TIMEOUT_MS"])
    elif has_app_context():
        wait_ms = int(current_app.config.get("SQLITE_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS))
    else:
        wait_ms = BUSY_TIMEOUT_MS
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={wait_ms}")
    cursor.close()


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's "database is locked": another connection holds the write lock."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def changed_rows(statement: Executable) -> int:
    """Run an UPDATE or DELETE in the session; the number of rows it matched.

    The session answers such a statement with a CursorResult (SQLAlchemy types it as the
    plain Result, which has no row count)."""
    return cast(CursorResult, db.session.execute(statement)).rowcount


def database_status() -> str:
    """ "ok", "busy" (SQLite's write lock is held elsewhere), or "unreachable" (the answer
    names no exception: it is public; the log has the class)."""
    try:
        db.session.execute(text("SELECT 1"))
        if db.engine.dialect.name == "sqlite":
            # Readers are never blocked in WAL mode; what a held lock stops is writes, which
            # sign-in, reveal and every audited action need. Try to take it, then let go.
            db.session.execute(text("BEGIN IMMEDIATE"))
        db.session.rollback()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 - the connection may be gone with the server
            db.session().invalidate()
        if is_locked(exc):
            return "busy"
        log.warning("health check: the database does not answer (%s)", type(exc).__name__)
        return "unreachable"
