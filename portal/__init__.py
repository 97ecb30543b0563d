"""VCF Credential Portal: the application factory."""

from __future__ import annotations

from flask import Flask
from markupsafe import Markup

from . import api, cli, errors, front, web
from .access import refusals
from .identity import second_factor, sessions, tokens
from .platform import database, logs, security, transaction
from .platform.config import PROJECT_ROOT, Settings, load_settings
from .platform.extensions import csrf, login_manager
from .platform.http import IdConverter, JSONProvider
from .platform.text import visible
from .version import STARTED_AT, __version__

__all__ = ["STARTED_AT", "__version__", "create_app"]


def create_app(test_config: dict | None = None, settings: Settings | None = None) -> Flask:
    """Build the portal application; the keys are loaded (or created) by start-up."""
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    _init_http(app)
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
    if settings.test_interval_seconds:
        # Tests only: runs beat every second, are stale after 5 s, and a stand-by node tries
        # to take over every 2 s, so that node failures can be tested in seconds.
        app.config.update(
            SYNC_HEARTBEAT_SECONDS=1, SYNC_STALE_SECONDS=5, SCHEDULER_TAKEOVER_SECONDS=2
        )
    if test_config:
        app.config.update(test_config)
    logs.init_logging(settings)
    database.init_app(app, settings)
    _init_extensions(app)
    _init_templates(app)
    _init_blueprints(app)
    return app


def _show_hidden_characters(value):
    # Every {{ value }} in a page: direction overrides and NUL from SDDC Manager made visible.
    # Markup is the portal's own HTML (tojson, macros), left as it is.
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def _init_http(app: Flask) -> None:
    """Bounded ids in URLs and JSON parsing that refuses, rather than crashes on, deep nesting."""
    # Set before any blueprint adds its rules: every `<int:...>` in our URLs is a database id.
    app.url_map.converters["int"] = IdConverter
    app.json = JSONProvider(app)


def _init_templates(app: Flask) -> None:
    app.jinja_env.finalize = _show_hidden_characters


def _init_extensions(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    tokens.init_app(app)
    sessions.init_app(app)
    second_factor.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    refusals.init_app(app)
    front.init_app(app)
    transaction.init_app(app)  # last: its hook runs first


def _init_blueprints(app: Flask) -> None:
    app.register_blueprint(api.bp)
    web.init_app(app)
    cli.init_app(app)
