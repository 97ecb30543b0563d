"""Dual-control policies as pages: the global default rules (`/settings/policies`, admins)
and, through the environments module, an environment's own rules (its managers). A plain
form: one row per rule, and a blank row to add one."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy import select

from ..access.guards import admin_required, recent_sign_in
from ..alerts import channels
from ..control import gate, policies
from ..identity.users import actor
from ..models import Environment, NotificationChannel
from ..platform.extensions import db

bp = Blueprint("policies", __name__)

FIELDS = ("resource_type", "credential_type", "account_type", "username")
# Rows the form offers beyond the stored rules.
BLANK_ROWS = 1


def form_rules() -> list[dict]:
    """The rules of the posted form: a row with neither requirement ticked is left out (that
    is how a rule is removed)."""
    rows = []
    for index in range(policies.MAX_RULES + BLANK_ROWS):
        if f"row_{index}" not in request.form:
            continue
        requires = [r for r in ("approval", "checkout") if request.form.get(f"{r}_{index}")]
        if not requires:
            continue
        rule: dict = {name: request.form.get(f"{name}_{index}") or None for name in FIELDS}
        rule["requires"] = requires
        rule["break_glass"] = bool(request.form.get(f"break_glass_{index}"))
        rows.append(rule)
    return rows


def save(environment: Environment | None) -> str | None:
    """Store the posted rules; the error to show, or None."""
    try:
        wanted = policies.PolicyIn.model_validate({"rules": form_rules()})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        return f"Rules not saved: {where}: {error['msg'].removeprefix('Value error, ')}"
    policies.set_rules(environment, wanted, actor().username)
    gate.forget()
    return None


def break_glass_heard() -> bool:
    """Whether an enabled notification channel carries `access.break_glass` (else a
    break-glass alert reaches nobody: only the inbox and the top bar show it)."""
    enabled = db.session.scalars(
        select(NotificationChannel).where(NotificationChannel.enabled.is_(True))
    )
    return any("access.break_glass" in channels.events_of(c) for c in enabled)


def page(environment: Environment | None, action: str):
    """The policy form of an environment (or of the defaults)."""
    return render_template(
        "policies.html",
        env=environment,
        policy=policies.describe(environment),
        action=action,
        blank_rows=BLANK_ROWS,
        break_glass_heard=break_glass_heard(),
    )


def _refused():
    flash("Rules not saved: you signed in over 15 minutes ago; type your password.", "error")
    return redirect(request.path)


@bp.get("/settings/policies")
@admin_required
def defaults():
    """The global default rules: a minimum in every environment."""
    return page(None, url_for("policies.save_defaults"))


@bp.post("/settings/policies")
@admin_required
@recent_sign_in("policy.change", refuse=_refused)
def save_defaults():
    """Replace the global default rules (admins); audited."""
    error = save(None)
    if error:
        db.session.rollback()
        flash(error, "error")
    else:
        flash("Default rules saved.", "info")
    return redirect(url_for("policies.defaults"))
