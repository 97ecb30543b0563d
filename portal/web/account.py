"""The signed-in user's own pages: second factors (authenticator app, passkeys, recovery codes)
and API tokens."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup

from ..access.guards import check_reauth_password, recent_sign_in
from ..identity import passkeys, second_factor, tokens
from ..identity.sessions import current_session, recently_authenticated
from ..identity.users import actor
from ..models import User
from ..platform import transaction
from ..platform.extensions import db

bp = Blueprint("account", __name__, url_prefix="/account")


def _user() -> User:
    return actor()


def _page(status: int = 200, **extra):
    user = _user()
    return render_template(
        "account_security.html",
        factors=second_factor.summary(user),
        needs_enrolment=second_factor.needs_enrolment(user),
        **extra,
    ), status


def _password_refused():
    """None when the typed password is right; else the page to answer. Accounts of an OpenID
    Provider have no password here: a sign-in with it within 15 minutes confirms."""
    if current_user.source == "oidc":
        return None if recently_authenticated() else _page(403, wrong_password=True)
    typed = request.form.get("password") or ""
    if not typed:
        return _page(400, missing_password=True)
    if check_reauth_password(typed):
        return None
    transaction.keep()
    if not current_user.is_authenticated:
        flash("Signed out: too many wrong passwords locked the account for 15 minutes.", "error")
        return redirect(url_for("auth.login"))
    return _page(403, wrong_password=True)


def _codes_page(codes: list[str], heading: str):
    return render_template("recovery_codes.html", codes=codes, heading=heading)


def _setup_page(secret: str, uri: str, error: str | None = None, status: int = 200):
    return render_template(
        "totp_setup.html",
        secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        qr=Markup(second_factor.qr_svg(uri)),  # noqa: S704 - SVG drawn by segno from our URI
        error=error,
    ), status


@bp.get("/security")
@login_required
def security():
    """What the user has set up, and the forms to change it."""
    return _page()


@bp.post("/security/totp")
@login_required
def start_totp():
    """Begin setting up an authenticator app (needs the current password)."""
    if (refused := _password_refused()) is not None:
        return refused
    secret, uri = second_factor.start_totp(_user())
    return _setup_page(secret, uri)


@bp.post("/security/totp/confirm")
@login_required
def confirm_totp():
    """Confirm the app with its first code; show the recovery codes once."""
    user = _user()
    try:
        code = request.form.get("code") or ""
        codes = second_factor.confirm_totp(user, code, keep=current_session())
    except second_factor.FactorError as exc:
        transaction.keep()
        pending = second_factor.pending_totp(user)
        if pending is None:
            flash(str(exc), "error")
            return redirect(url_for("account.security"))
        return _setup_page(*pending, error=str(exc), status=400)
    return _codes_page(codes, "Authenticator app set up")


@bp.post("/security/totp/remove")
@login_required
def remove_totp():
    """Remove the authenticator app (needs the current password)."""
    if (refused := _password_refused()) is not None:
        return refused
    user = _user()
    try:
        second_factor.remove_totp(user)
    except second_factor.FactorError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _page(409)
    flash("The authenticator app is removed.", "info")
    return redirect(url_for("account.security"))


@bp.post("/security/recovery-codes")
@login_required
def regenerate_codes():
    """Replace the recovery codes (needs the current password)."""
    if (refused := _password_refused()) is not None:
        return refused
    try:
        codes = second_factor.new_recovery_codes(_user())
    except second_factor.FactorError as exc:
        flash(str(exc), "error")
        return _page(409)
    return _codes_page(codes, "New recovery codes")


@bp.post("/security/passkeys/<int:passkey_id>/remove")
@login_required
def remove_passkey(passkey_id: int):
    """Remove one passkey (needs the current password)."""
    if (refused := _password_refused()) is not None:
        return refused
    user = _user()
    try:
        name = passkeys.remove_passkey(user, passkey_id)
    except second_factor.FactorError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _page(409)
    flash(f"Passkey {name} removed.", "info")
    return redirect(url_for("account.security"))


def _tokens_page(status: int = 200, **extra):
    user = _user()
    return render_template(
        "account_tokens.html",
        mine=[tokens.as_dict(t) for t in tokens.listed(user)],
        everyone=[tokens.as_dict(t) for t in tokens.listed()] if user.is_admin else None,
        scopes=tokens.SCOPES,
        errors=extra.pop("errors", {}),
        form=extra.pop("form", {}),
        **extra,
    ), status


@bp.get("/tokens")
@login_required
def token_list():
    """The user's API tokens (and everyone's, for admins), and the form for a new one."""
    return _tokens_page()


def _token_form() -> dict:
    return {key: request.form.get(key, "") for key in ("name", "scope", "days", "networks")}


def _token_refused():
    errors = {"confirm_password": "Type your password."}
    return _tokens_page(403, form=_token_form(), errors=errors)


@bp.post("/tokens")
@login_required
@recent_sign_in("token.create", refuse=_token_refused)
def create_token():
    """Create a token (re-authenticated like exports); its value is shown this once."""
    form = _token_form()
    try:
        days = int(form["days"] or "0")
    except ValueError:
        days = 0
    networks = [part for part in form["networks"].replace(",", " ").split() if part]
    try:
        token, value = tokens.create(_user(), form["name"], form["scope"], days, networks)
    except tokens.TokenError as exc:
        db.session.rollback()
        field = {"expires_in_days": "days", "allowed_networks": "networks", "owner": "name"}.get(
            exc.field, exc.field
        )
        return _tokens_page(400, form=form, errors={field: str(exc)})
    return _tokens_page(201, created={"name": token.name, "value": value})


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    """Revoke one of one's tokens (admins: anyone's)."""
    user = _user()
    token = tokens.find(token_id, None if user.is_admin else user)
    if token is None:
        abort(404, description="No such token.")
    name = token.name
    tokens.revoke(token)
    flash(f"Token {name} revoked.", "info")
    return redirect(url_for("account.token_list"))
