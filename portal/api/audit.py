"""Who saw what (auditors and admins; managers for the environments they manage): every
password a person revealed, copied or exported in a period, as JSON or CSV."""

from __future__ import annotations

from flask import jsonify
from flask_login import login_required

from ..access.guards import seen_readers, seen_scope
from ..audit import seen
from . import schemas as s
from .base import bp
from .spec import CSV_FILE, api_operation


@bp.get("/audit/seen")
@login_required
@seen_readers
@api_operation({200: s.SeenReport}, query=s.SeenPageQuery)
def seen_report(query: s.SeenPageQuery):
    """Every password a person revealed, copied or exported in a period: one item per
    credential with its environment, host, account and times; never a password."""
    report = seen.report(query.person, query.since, query.until, seen_scope())
    items = report.pop("items")
    first = (query.page - 1) * query.per_page
    return jsonify(
        **report,
        items=items[first : first + query.per_page],
        total=len(items),
        page=query.page,
        per_page=query.per_page,
    )


@bp.get("/audit/seen.csv")
@login_required
@seen_readers
@api_operation({200: CSV_FILE}, query=seen.SeenQuery)
def seen_report_csv(query: seen.SeenQuery):
    """The same report as CSV (every item, formula-safe); audited as an export of the audit
    log."""
    return seen.csv_response(query, seen_scope())
