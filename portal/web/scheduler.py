"""The scheduler page: every sync job with its last and next run."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from ..access.guards import visible_ids

bp = Blueprint("scheduler", __name__)


@bp.get("/scheduler")
@login_required
def scheduler():
    """Show every scheduled sync job with its last and next run; the actions column where the
    user manages at least one environment."""
    managed = visible_ids("manage")
    return render_template("scheduler.html", managing=managed is None or bool(managed))
