"""Environment pages: the view with its credentials table, the form, the export."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from ..access import grants, groups
from ..access.guards import admin_required, environment_for, environment_level, recent_sign_in
from ..environments.service import LIMITS
from ..identity.users import actor
from ..models import LEVELS, SOURCES, User
from ..platform.extensions import db
from ..vault.credentials import MAX_STALE_DAYS, PAGE_SIZES, STALE_DAYS
from . import policies
from .export import send_export

bp = Blueprint("environments", __name__, url_prefix="/environments")


@bp.get("/new")
@admin_required
def new_environment():
    """Show the form to add an environment."""
    return render_template("envform.html", env=None, sources=SOURCES, limits=LIMITS)


@bp.get("/<int:env_id>")
@login_required
def view_environment(env_id: int):
    """Show one environment: source status, credentials table, password age."""
    env = environment_for(env_id, "view")
    level = grants.level(actor(), env_id)
    configured = [s for s in SOURCES if any(e.source == s for e in env.endpoints)]
    access = None
    if current_user.is_admin:
        access = {
            "grants": grants.grants_of(env),
            "levels": LEVELS,
            "users": db.session.scalars(select(User.username).order_by(User.username)).all(),
            "groups": [g.name for g in groups.listed()],
        }
    scope = grants.audit_scope(actor())
    return render_template(
        "environment.html",
        env=env,
        level=level,
        # Who saw a password (the history's "seen by"): auditors, admins, this one's managers.
        can_audit=scope is None or env_id in scope,
        access=access,
        sources=configured,
        page_sizes=PAGE_SIZES,
        stale_days=STALE_DAYS,
        max_stale_days=MAX_STALE_DAYS,
    )


@bp.get("/<int:env_id>/edit")
@login_required
def edit_environment(env_id: int):
    """Show the form to change an environment (manage level; deleting it is for admins)."""
    return render_template(
        "envform.html", env=environment_for(env_id, "manage"), sources=SOURCES, limits=LIMITS
    )


@bp.post("/<int:env_id>/export")
@login_required
@recent_sign_in("credential.export")
def export_environment(env_id: int):
    """Download one environment's credentials (filtered view or all) as CSV or Excel."""
    return send_export(environment_for(env_id, "reveal"))


def _access_refused():
    flash("Access not changed: you signed in over 15 minutes ago; type your password.", "error")
    return redirect(request.path.removesuffix("/access") + "#access")


@bp.post("/<int:env_id>/access")
@admin_required
@recent_sign_in("environment.grants", refuse=_access_refused)
def save_access(env_id: int):
    """Replace the environment's grants from the Access tab (admins); audited."""
    env = environment_for(env_id)
    kept = [
        (subject, level)
        for subject, level in zip(
            request.form.getlist("subject"), request.form.getlist("level"), strict=False
        )
        if level != "none"
    ]
    new_subject = request.form.get("new_subject") or ""
    if new_subject:
        kept.append((new_subject, request.form.get("new_level") or "view"))
    try:
        grants.set_grants(env, kept)
    except grants.GrantError as exc:
        db.session.rollback()
        flash(f"Access not changed: {exc}", "error")
    else:
        flash("Access saved.", "info")
    return redirect(url_for("environments.view_environment", env_id=env.id) + "#access")


def _policy_refused():
    flash("Rules not saved: you signed in over 15 minutes ago; type your password.", "error")
    return redirect(request.path)


@bp.get("/<int:env_id>/policies")
@login_required
def policy(env_id: int):
    """Which credentials of the environment are sensitive (its managers may change it)."""
    env = environment_for(env_id, "manage")
    return policies.page(env, url_for("environments.save_policy", env_id=env.id))


@bp.post("/<int:env_id>/policies")
@login_required
@environment_level("manage")
@recent_sign_in("policy.change", refuse=_policy_refused)
def save_policy(env_id: int):
    """Replace the environment's dual-control rules (its managers, admins); audited."""
    env = environment_for(env_id, "manage")
    error = policies.save(env)
    if error:
        db.session.rollback()
        flash(error, "error")
    else:
        flash("Rules saved.", "info")
    return redirect(url_for("environments.policy", env_id=env.id))
