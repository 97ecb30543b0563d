"""The one scheduler: runs in the process that imported app.py (the Gunicorn master)."""

from __future__ import annotations

import logging

from flask import Flask

log = logging.getLogger("portal.scheduler")


def start_if_enabled(app: Flask) -> bool:
    """Start the background scheduler unless disabled for this process."""
    settings = app.config["PORTAL_SETTINGS"]
    if not settings.scheduler_enabled:
        log.info("scheduler disabled in this process (PORTAL_SCHEDULER=off)")
        return False
    return False
