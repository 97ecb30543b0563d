"""The JSON API under /api/v1: one blueprint, one module per resource.

Session cookie plus the CSRF token in an `X-CSRFToken` header. The description of every
operation is served at /api/v1/openapi.json.
"""

from __future__ import annotations

# Importing the resource modules registers their routes on the blueprint.
from . import (
    access_requests,
    actions,
    attention,
    audit,
    audit_forwarding,
    checkouts,
    credentials,
    definitions,
    environments,
    groups,
    me,
    openapi,
    scheduler,
    second_factor,
    settings,
    sync_runs,
    tokens,
)
from .base import bp

__all__ = [
    "access_requests",
    "actions",
    "attention",
    "audit",
    "audit_forwarding",
    "bp",
    "checkouts",
    "credentials",
    "definitions",
    "environments",
    "groups",
    "me",
    "openapi",
    "scheduler",
    "second_factor",
    "settings",
    "sync_runs",
    "tokens",
]
