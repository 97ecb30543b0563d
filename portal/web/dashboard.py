"""The signed-in landing page: every environment with its sync status."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from ..access.guards import visible_ids
from ..alerts import attention, expiring
from ..ops import break_glass

bp = Blueprint("dashboard", __name__)
EXPIRY_NOTICE_DAYS = 14


@bp.get("/")
@login_required
def index():
    """Show the dashboard."""
    revealable = visible_ids("reveal")
    within = visible_ids()
    return render_template(
        "dashboard.html",
        attention=sum(sum(kinds.values()) for kinds in attention.counts(within).values()),
        expiring=expiring.summary(EXPIRY_NOTICE_DAYS, within),
        # The export holds passwords: offered only where some environment may be revealed.
        can_export=revealable is None or bool(revealable),
        # For admins: the last break-glass copy, and whether copies are made at all.
        break_glass=break_glass.status() if current_user.is_admin else None,
    )
