"""HTML pages: one module per first path segment of the URL.

| URL | module |
|---|---|
| `/` | dashboard |
| `/access-requests` | access_requests |
| `/attention` | attention |
| `/login`, `/login/oidc`, `/logout`, `/change-password` | auth |
| `/login/verify` | auth_verify (routes of the auth blueprint) |
| `/account/security`, `/account/tokens` | account |
| `/environments/...` | environments |
| `/export` | export |
| `/scheduler` | scheduler |
| `/users/...` | users |
| `/audit/...` | audit |
| `/settings/notifications/...` | notifications |
| `/settings/policies` | policies (an environment's own: `/environments/<id>/policies`) |
| `/settings/break-glass/...` | break_glass |
| `/settings/sign-in/...` | sign_in |
| `/settings/audit-forwarding/...` | audit_forwarding |
| `/settings/...` | settings |
| `/preferences` | preferences |
| `/metrics` | metrics |
| `/healthz` | health |
"""

from __future__ import annotations

from flask import Flask

from . import (
    access_requests,
    account,
    attention,
    audit,
    audit_forwarding,
    auth,
    auth_verify,  # noqa: F401 - its routes (/login/verify) belong to auth.bp
    break_glass,
    dashboard,
    environments,
    export,
    health,
    metrics,
    notifications,
    policies,
    preferences,
    scheduler,
    settings,
    sign_in,
    users,
)

MODULES = (
    auth,
    account,
    access_requests,
    dashboard,
    attention,
    environments,
    export,
    scheduler,
    users,
    audit,
    settings,
    preferences,
    notifications,
    policies,
    audit_forwarding,
    break_glass,
    sign_in,
    health,
    metrics,
)


def init_app(app: Flask) -> None:
    """Register every page blueprint."""
    for module in MODULES:
        app.register_blueprint(module.bp)
