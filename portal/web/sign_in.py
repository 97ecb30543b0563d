"""Settings → Sign-in (admin only): LDAP / Active Directory and OpenID Connect."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from ..access.guards import admin_required, recent_sign_in
from ..identity.directory import accounts, options
from ..models import Group
from ..platform import transaction
from ..platform.extensions import db
from ..platform.urls import external_url

bp = Blueprint("sign_in", __name__, url_prefix="/settings/sign-in")

_CHECKBOXES = {
    "ldap": ("start_tls", "allow_plain", "verify_certificates", "enabled"),
    "oidc": ("enabled",),
}
_LISTS = {"urls", "allowed_domains", "required_amr"}
_NUMBERS = {"timeout_seconds", "recheck_minutes"}


def _changes(kind: str) -> dict:
    """The form as changes for options.save: checkboxes as booleans, lines as lists, numbers
    as numbers (a malformed one is left as text, for the validation to name), an empty
    secret as "keep"."""
    model = options.MODELS[kind]
    changes: dict = {}
    for name in model.model_fields:
        if name in _CHECKBOXES[kind]:
            changes[name] = request.form.get(name) == "on"
        elif name in request.form:
            value = request.form.get(name, "")
            if name in _LISTS:
                changes[name] = [line.strip() for line in value.splitlines() if line.strip()]
            elif name in _NUMBERS:
                digits = value.strip()
                is_number = digits.isascii() and digits.isdigit() and len(digits) <= 6
                changes[name] = int(digits) if is_number else value
            else:
                changes[name] = value
    changes["enabled"] = request.form.get("enabled") == "on"
    secret_name = options.SECRET_NAMES[kind]
    secret = request.form.get(secret_name) or ""
    if request.form.get(f"remove_{secret_name}") == "on":
        changes[secret_name] = ""
    elif secret:
        changes[secret_name] = secret
    return changes


def _shown_redirect_uri() -> str:
    """The callback to register at the provider (from PORTAL_EXTERNAL_URL, or this host when
    it is one of the portal's)."""
    try:
        return external_url("auth.oidc_callback")
    except HTTPException:
        return "(unknown: set PORTAL_EXTERNAL_URL to the address browsers use)"


def _page(status: int = 200, errors: dict | None = None, test: dict | None = None):
    directory_groups = list(
        db.session.scalars(select(Group).where(Group.source != "local").order_by(Group.name))
    )
    return render_template(
        "settings_sign_in.html",
        ldap=options.load("ldap"),
        oidc=options.load("oidc"),
        flavours=options.FLAVOURS,
        redirect_uri=_shown_redirect_uri(),
        directory_groups=directory_groups,
        errors=errors or {},
        test=test,
    ), status


@bp.get("")
@admin_required
def overview():
    """Both providers' settings, the LDAP test, and the groups they fill."""
    return _page()


def _refused():
    flash("Confirm your password for this change.", "error")
    return _page(403)


@bp.post("/<kind>")
@admin_required
@recent_sign_in("settings.sign_in", refuse=_refused)
def save(kind: str):
    """Save one provider's settings (re-typed password after 15 minutes)."""
    if kind not in options.KINDS:
        return _page(404)
    try:
        options.save(kind, _changes(kind), current_user.username)
    except options.OptionsError as exc:
        db.session.rollback()
        flash(f"Not saved: {exc.field}: {exc}", "error")
        return _page(400, errors={f"{kind}.{exc.field.split('.')[0]}": str(exc)})
    flash(f"The {'LDAP' if kind == 'ldap' else 'OpenID Connect'} settings are saved.", "info")
    return redirect(url_for("sign_in.overview") + f"#{kind}")


@bp.post("/ldap/test")
@admin_required
def test_ldap():
    """Bind with the stored settings and look a user up: DN and groups found."""
    username = (request.form.get("username") or "").strip()
    result = accounts.lookup_for_test(username)
    transaction.keep()
    test = {"username": username, **vars(result)}
    return _page(200 if result.found is not None else 400, test=test)
