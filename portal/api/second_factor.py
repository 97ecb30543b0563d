"""The signed-in user's second factors (JSON): authenticator app, passkeys, recovery codes.

Every change needs the current password; the secret and the recovery codes are answered once.
"""

from __future__ import annotations

from flask import current_app, jsonify
from flask_login import login_required

from ..identity import passkeys, second_factor
from ..identity.sessions import current_session
from ..identity.users import actor
from ..models import User
from ..platform import transaction
from ..platform.http import json_error
from . import schemas as s
from .base import bp, password_refused
from .spec import api_operation


def _user() -> User:
    return actor()


@bp.get("/me/second-factor")
@login_required
@api_operation({200: s.SecondFactors})
def list_factors():
    """The user's authenticator app, passkeys and the number of unused recovery codes."""
    return jsonify(second_factor.summary(_user()).as_dict())


@bp.post("/me/second-factor/totp")
@login_required
@api_operation({200: s.TotpStarted}, s.PasswordIn, errors=(403,), scope="session")
def start_totp(body: s.PasswordIn):
    """Begin setting up an authenticator app; the secret is answered this once."""
    refused = password_refused(body.password)
    if refused is not None:
        return refused
    secret, uri = second_factor.start_totp(_user())
    return jsonify(secret=secret, otpauth_uri=uri)


@bp.post("/me/second-factor/totp/confirm")
@login_required
@api_operation({200: s.RecoveryCodes}, s.CodeIn, errors=(409,), scope="session")
def confirm_totp(body: s.CodeIn):
    """Confirm the app with its first code; answers 10 new recovery codes, shown this once."""
    try:
        codes = second_factor.confirm_totp(_user(), body.code, keep=current_session())
    except second_factor.FactorError:
        transaction.keep()  # the failure is audited
        raise
    return jsonify(recovery_codes=codes)


@bp.delete("/me/second-factor/totp")
@login_required
@api_operation({204: None}, s.PasswordIn, errors=(403, 409), scope="session")
def remove_totp(body: s.PasswordIn):
    """Remove the authenticator app."""
    refused = password_refused(body.password)
    if refused is not None:
        return refused
    second_factor.remove_totp(_user())
    return "", 204


@bp.post("/me/second-factor/recovery-codes")
@login_required
@api_operation({200: s.RecoveryCodes}, s.PasswordIn, errors=(403, 409), scope="session")
def regenerate_codes(body: s.PasswordIn):
    """Replace the recovery codes with 10 new ones (the old ones stop working)."""
    refused = password_refused(body.password)
    if refused is not None:
        return refused
    codes = second_factor.new_recovery_codes(_user())
    return jsonify(recovery_codes=codes)


@bp.post("/me/second-factor/passkeys/options")
@login_required
@api_operation({200: s.PasskeyOptions}, s.PasswordIn, errors=(403,), scope="session")
def passkey_options(body: s.PasswordIn):
    """Options for navigator.credentials.create(); the challenge is single use."""
    refused = password_refused(body.password)
    if refused is not None:
        return refused
    row = current_session()
    if row is None:
        return json_error(403, "Passkeys are registered from a signed-in browser session.")
    options = passkeys.registration_options(_user(), row)
    return current_app.response_class(options, mimetype="application/json")


@bp.post("/me/second-factor/passkeys")
@login_required
@api_operation({201: s.PasskeyAdded}, s.PasskeyIn, errors=(403, 409), scope="session")
def add_passkey(body: s.PasskeyIn):
    """Register the passkey the browser created with the options above."""
    row = current_session()
    if row is None:
        return json_error(403, "Passkeys are registered from a signed-in browser session.")
    user = _user()
    first = not second_factor.has_factor(user)
    try:
        key = passkeys.register_passkey(user, row, body.credential, body.name)
    except second_factor.FactorError:
        transaction.keep()  # the challenge is used up and the failure audited
        raise
    codes = second_factor.new_recovery_codes(user) if first else None
    summary = next(p for p in second_factor.summary(user).passkeys if p["id"] == key.id)
    return jsonify(passkey=summary, recovery_codes=codes), 201


@bp.delete("/me/second-factor/passkeys/<int:passkey_id>")
@login_required
@api_operation({204: None}, s.PasswordIn, errors=(403, 409), scope="session")
def remove_passkey(passkey_id: int, body: s.PasswordIn):
    """Remove one passkey."""
    refused = password_refused(body.password)
    if refused is not None:
        return refused
    passkeys.remove_passkey(_user(), passkey_id)
    return "", 204
