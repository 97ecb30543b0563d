"""VCF Credential Portal: the application factory."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from logging.handlers import RotatingFileHandler

from flask import Flask

from . import database, errors, security, sessions
from .clock import UTC
from .config import PROJECT_ROOT, Settings, load_settings
from .extensions import csrf, login_manager

__version__ = "0.1.0"
STARTED_AT = datetime.now(UTC).replace(tzinfo=None)


def init_logging(app: Flask, settings: Settings) -> None:
    """Log to logs/portal.log (rotating) and stderr, which systemd sends to the journal."""
    logs_dir = settings.log_dir
    root = logging.getLogger("portal")
    root.setLevel(settings.log_level)
    if any(getattr(h, "_portal", False) for h in root.handlers):
        return
    fmt = logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = RotatingFileHandler(
            logs_dir / "portal.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
    except OSError:
        handler = logging.StreamHandler()
    handler.setFormatter(fmt)
    handler._portal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if os.environ.get("JOURNAL_STREAM"):
        # Under systemd: the same lines reach the journal too.
        journal = logging.StreamHandler()
        journal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(journal)


def create_app(test_config: dict | None = None, settings: Settings | None = None) -> Flask:
    """Build the portal application; the keys are loaded (or created) by start-up."""
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(
        PORTAL_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="portal_session",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=True,
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    init_logging(app, settings)
    database.init_app(app, settings)
    _init_extensions(app)
    _init_blueprints(app)
    return app


def _init_extensions(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    sessions.init_app(app)
    security.init_app(app)
    errors.init_app(app)


def _init_blueprints(app: Flask) -> None:
    # Imported here: several blueprints import __version__ and STARTED_AT from this package.
    from . import (
        api,
        audit_views,
        auth,
        cli,
        dashboard,
        definitions,
        exports,
        health,
        me,
        pages,
        scheduler_views,
        settings,
        users,
    )

    modules = (
        auth,
        dashboard,
        health,
        users,
        audit_views,
        api,
        definitions,
        exports,
        me,
        pages,
        scheduler_views,
        settings,
    )
    for module in modules:
        app.register_blueprint(module.bp)
    cli.init_app(app)
