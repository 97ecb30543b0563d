"""The scheduler page: every sync job with its last and next run."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("scheduler", __name__)


@bp.get("/scheduler")
@login_required
def scheduler():
    """Show every scheduled sync job with its last and next run."""
    return render_template("scheduler.html")
