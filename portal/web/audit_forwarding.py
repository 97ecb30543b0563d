"""Settings → Audit forwarding (admin only): destinations with their progress; add, remove."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from ..access.guards import admin_required, recent_sign_in
from ..audit import chain, forwarding
from ..identity.users import actor
from ..models import AuditDestination
from ..platform.extensions import db

bp = Blueprint("audit_forwarding", __name__, url_prefix="/settings/audit-forwarding")


def _refused():
    flash("Confirm your password for this change.", "error")
    return redirect(url_for("audit_forwarding.overview"))


def _page(status: int = 200, form: dict | None = None):
    head = chain.head()[0]
    rows = [forwarding.describe(d, head) for d in forwarding.destinations()]
    return (
        render_template(
            "settings_audit_forwarding.html",
            destinations=rows,
            kinds=forwarding.KINDS,
            form=form or {},
        ),
        status,
    )


@bp.get("")
@admin_required
def overview():
    """Every destination with its backlog, last success and last error."""
    return _page()


@bp.post("")
@admin_required
@recent_sign_in("settings.audit_forwarding", refuse=_refused)
def add():
    """Add a destination (the same rules as the API)."""
    form = {k: request.form.get(k, "") for k in ("kind", "address", "ca_pem", "token")}
    try:
        values = forwarding.DestinationIn.model_validate({k: v or None for k, v in form.items()})
        forwarding.add(values, actor().username)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "form"
            flash(f"{field}: {error['msg'].removeprefix('Value error, ')}", "error")
        return _page(400, {**form, "token": ""})
    except forwarding.DestinationError as exc:
        flash(f"{exc.field}: {exc}", "error")
        return _page(409, {**form, "token": ""})
    flash("The destination is added; it gets every record in the database, in order.", "info")
    return redirect(url_for("audit_forwarding.overview"))


@bp.post("/<int:destination_id>/delete")
@admin_required
@recent_sign_in("settings.audit_forwarding", refuse=_refused)
def remove(destination_id: int):
    """Stop forwarding to a destination."""
    destination = db.session.get(AuditDestination, destination_id)
    if destination is None:
        abort(404, description="No such destination.")
    forwarding.remove(destination, actor().username)
    flash("The destination is removed.", "info")
    return redirect(url_for("audit_forwarding.overview"))
