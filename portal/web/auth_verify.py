"""The second step of signing in (`/login/verify`): an authenticator code, a recovery code or
a passkey, for a session that passed its password; routes of the `auth` blueprint."""

from __future__ import annotations

from flask import (
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from .. import audit
from ..identity import passkeys, second_factor
from ..identity.sessions import (
    end_session,
    pending_session,
)
from ..identity.signin import (
    REFUSED,
    password_failure,
)
from ..models import User, UserSession
from ..platform import transaction
from ..platform.extensions import db
from ..platform.http import json_error
from ..platform.security import (
    client_ip,
)
from .auth import _signed_in, bp


def _pending_user() -> tuple[UserSession, User] | None:
    row = pending_session()
    if row is None:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return row, user


def _factor_failed(user: User) -> bool:
    """Count a wrong code like a wrong password; True when that locked the account."""
    return password_failure(user, "auth.second_factor")


@bp.route("/login/verify", methods=["GET", "POST"])
def verify():
    """The second step of a sign-in: an authenticator code, a recovery code or a passkey."""
    again = request.values.get("next", "")
    pending = _pending_user()
    if pending is None:
        end_session()
        flash("The sign-in step expired or was not started. Sign in again.", "error")
        return redirect(url_for("auth.login", next=again or None))
    row, user = pending
    has_passkey = bool(second_factor.summary(user).passkeys)
    if request.method == "GET":
        return render_template(
            "verify.html", next=again, has_passkey=has_passkey, has_totp=bool(user.totp_secret_enc)
        )
    factor = second_factor.check_code(user, request.form.get("code") or "")
    if factor == "used":
        # Right, but taken already (typed twice, or parallel sign-ins): not a wrong guess.
        audit.record("auth.second_factor", user.username, outcome="replayed")
        transaction.keep()
        flash("That code was used already. Wait for the next code of your app.", "error")
        return render_template(
            "verify.html", next=again, has_passkey=has_passkey, has_totp=bool(user.totp_secret_enc)
        ), 401
    if factor is None:
        if _factor_failed(user):
            end_session()
            flash(REFUSED, "error")
            return redirect(url_for("auth.login"))
        flash("That code is not correct.", "error")
        return render_template(
            "verify.html", next=again, has_passkey=has_passkey, has_totp=bool(user.totp_secret_enc)
        ), 401
    response = _signed_in(user, client_ip(), again, factor)
    if factor == "recovery":  # after the sign-in, which starts a new session
        left = second_factor.recovery_codes_left(user)
        flash(
            f"You signed in with a recovery code; {left} left. "
            "Generate new ones on your Security page if few are left.",
            "info",
        )
    return response


@bp.post("/login/verify/passkey/options")
def passkey_options():
    """Options for the browser's passkey prompt at the second step (JSON)."""
    pending = _pending_user()
    if pending is None:
        return json_error(401, "The sign-in step expired. Sign in again.")
    row, user = pending
    try:
        options = passkeys.authentication_options(user, row)
    except second_factor.FactorError as exc:
        return json_error(400, str(exc))
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/login/verify/passkey")
def passkey_verify():
    """Check the browser's passkey assertion and finish the sign-in (JSON)."""
    pending = _pending_user()
    if pending is None:
        return json_error(401, "The sign-in step expired. Sign in again.")
    row, user = pending
    body = request.get_json(silent=True)
    credential = body.get("credential") if isinstance(body, dict) else None
    again = body.get("next", "") if isinstance(body, dict) else ""
    key = passkeys.check_passkey(user, row, credential)
    if key is None:
        transaction.keep()  # the challenge is used up either way
        if _factor_failed(user):
            end_session()
            return json_error(401, REFUSED)
        return json_error(401, "The passkey was not accepted.")
    response = _signed_in(user, client_ip(), again if isinstance(again, str) else "", "passkey")
    return jsonify(redirect=response.location)
