"""HTML pages: one module per first path segment of the URL.

| URL | module |
|---|---|
| `/` | dashboard |
| `/login`, `/logout`, `/change-password` | auth |
| `/environments/...` | environments |
| `/export` | export |
| `/scheduler` | scheduler |
| `/users/...` | users |
| `/audit/...` | audit |
| `/settings/...` | settings |
| `/preferences` | preferences |
| `/healthz` | health |
"""

from __future__ import annotations

from flask import Flask

from . import (
    audit,
    auth,
    dashboard,
    environments,
    export,
    health,
    preferences,
    scheduler,
    settings,
    users,
)

MODULES = (
    auth,
    dashboard,
    environments,
    export,
    scheduler,
    users,
    audit,
    settings,
    preferences,
    health,
)


def init_app(app: Flask) -> None:
    """Register every page blueprint."""
    for module in MODULES:
        app.register_blueprint(module.bp)
