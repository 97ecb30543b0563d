"""The approver's inbox and the requester's requests (`/access-requests`); the top bar's link
to it while it holds something."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from ..control import requests as control
from ..identity.users import actor

bp = Blueprint("access_requests", __name__)


@bp.get("/access-requests")
@login_required
def inbox():
    """Requests waiting for the user's decision, and the user's own requests and windows."""
    return render_template("access_requests.html", pending=control.inbox_count(actor()))


@bp.app_context_processor
def _inbox_link() -> dict:
    """How many requests wait for the signed-in user (the top bar links the inbox then)."""
    if current_user.is_authenticated and not current_user.must_change_password:
        return {"inbox_count": control.inbox_count(actor())}
    return {"inbox_count": 0}
