"""The signed-in landing page: every environment with its sync status."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from . import pages

bp = Blueprint("dashboard", __name__)


@bp.record_once
def _register_pages(state) -> None:
    # The environment and scheduler pages come with the dashboard; registering twice is a no-op.
    state.app.register_blueprint(pages.bp)


@bp.get("/")
@login_required
def index():
    """Show the dashboard."""
    return render_template("dashboard.html")
