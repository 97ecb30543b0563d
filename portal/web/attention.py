"""The "needs attention" page: accounts to act on, of the environments the user sees."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required
from sqlalchemy import select

from ..access.guards import environment_for, visible_ids
from ..alerts import attention
from ..alerts.notifications import KINDS as ALERT_KINDS
from ..models import Environment
from ..platform.extensions import db
from ..platform.http import parse_query

bp = Blueprint("attention", __name__)


@bp.get("/attention")
@login_required
def needs_attention():
    """List the accounts that need attention (unreachable by SDDC Manager, expired, expiry
    unknown, the installer's stale copy), each with what to do and, for managers, the
    actions through SDDC Manager."""
    filters = parse_query(attention.AttentionFilters)
    if filters.environment_id is not None:
        environment_for(filters.environment_id, "view")
    within = visible_ids()
    listing = attention.page(
        within,
        visible_ids("manage"),
        filters.page,
        filters.per_page,
        environment_id=filters.environment_id,
        kind=filters.kind,
    )
    query = select(Environment.id, Environment.name).order_by(Environment.name)
    if within is not None:
        query = query.where(Environment.id.in_(sorted(within)))
    return render_template(
        "attention.html",
        listing=listing,
        filters=filters,
        kinds=attention.KINDS,
        alert_label=ALERT_KINDS["credential.needs_attention"],
        environments=db.session.execute(query).all(),
        pages=max(1, -(-listing["total"] // filters.per_page)),
    )
