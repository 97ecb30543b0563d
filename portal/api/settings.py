"""Portal-wide settings (JSON, admin): the second-factor policy, LDAP, OpenID Connect and the
break-glass copies."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from flask import current_app, jsonify
from flask_login import current_user
from pydantic import BaseModel

from ..access.guards import admin_required, recent_sign_in
from ..identity import second_factor
from ..identity.directory import accounts, options
from ..identity.users import actor
from ..ops import break_glass
from ..ops import break_glass_settings as break_glass_options
from ..platform import clock, transaction
from ..platform.extensions import db
from ..platform.http import json_error
from . import schemas as s
from .base import bp
from .spec import FieldErrors, api_operation


@bp.get("/settings/security")
@admin_required
@api_operation({200: s.SecurityPolicy})
def security_policy():
    """Who must have a second factor: none, admins or everyone."""
    return jsonify(require_second_factor=second_factor.policy())


@bp.patch("/settings/security")
@admin_required
@recent_sign_in("settings.security")
@api_operation({200: s.SecurityPolicy}, s.SecurityPolicyIn, errors=(403, 409))
def set_security_policy(body: s.SecurityPolicyIn):
    """Change who must have a second factor (audited)."""
    second_factor.set_policy(body.require_second_factor, actor())
    return jsonify(require_second_factor=second_factor.policy())


def _provider_answer(kind: str):
    provider = options.load(kind)
    body = provider.as_dict()
    body["updated_at"] = clock.iso(provider.updated_at)
    return jsonify(body)


def _save_provider(kind: str, body: BaseModel):
    changes = body.model_dump(exclude_unset=True)
    changes.pop("confirm_password", None)
    changes = {key: value for key, value in changes.items() if value is not None}
    try:
        options.save(kind, changes, current_user.username)
    except options.OptionsError as exc:
        db.session.rollback()
        raise FieldErrors({exc.field: str(exc)}) from None
    return _provider_answer(kind)


@bp.get("/settings/ldap")
@admin_required
@api_operation({200: s.LdapSettings}, scope="admin")
def ldap_settings():
    """Sign-in through LDAP or Active Directory: the stored settings (never the password)."""
    return _provider_answer("ldap")


@bp.put("/settings/ldap")
@admin_required
@recent_sign_in("settings.ldap")
@api_operation({200: s.LdapSettings}, s.LdapSettingsIn, errors=(403, 422), scope="admin")
def set_ldap_settings(body: BaseModel):  # an s.LdapSettingsIn, a model built at import
    """Change the LDAP settings (audited with the values before and after). It is turned on
    only when servers, a user base and filters are set; plain LDAP must be allowed explicitly.
    Needs a sign-in within 15 minutes or the password in `confirm_password`."""
    return _save_provider("ldap", body)


@bp.post("/settings/ldap/test")
@admin_required
@api_operation({200: s.LdapTestOut}, s.LdapTestIn, errors=(404, 409, 502), scope="admin")
def test_ldap_settings(body: s.LdapTestIn):
    """Bind with the stored settings and look up a user: their DN and groups, and the
    directory-sourced portal groups those groups fill. Works while sign-in is still off."""
    result = accounts.lookup_for_test(body.username)
    transaction.keep()
    found = result.found
    if found is None:
        status = 409 if result.unconfigured else 502 if result.unreachable else 404
        return json_error(status, result.error or "No such user.")
    return jsonify(
        dn=found.dn,
        username=found.username,
        display_name=found.display_name,
        email=found.email,
        disabled=found.disabled,
        groups=found.groups,
        portal_groups=result.portal_groups,
        server=found.server,
    )


@bp.get("/settings/oidc")
@admin_required
@api_operation({200: s.OidcSettings}, scope="admin")
def oidc_settings():
    """Sign-in through an OpenID Provider: the stored settings (never the client secret)."""
    return _provider_answer("oidc")


@bp.put("/settings/oidc")
@admin_required
@recent_sign_in("settings.oidc")
@api_operation({200: s.OidcSettings}, s.OidcSettingsIn, errors=(403, 422), scope="admin")
def set_oidc_settings(body: BaseModel):  # an s.OidcSettingsIn, a model built at import
    """Change the OpenID Connect settings (audited with the values before and after). It is
    turned on only when the issuer, client id and client secret are set. The provider must
    allow the redirect URI https://<this portal>/login/oidc/callback. Needs a sign-in within
    15 minutes or the password in `confirm_password`."""
    return _save_provider("oidc", body)


def _break_glass_answer():
    state = break_glass.status()
    options = state["options"]
    command = current_app.config["PORTAL_SETTINGS"].break_glass_command
    return jsonify(
        recipients=list(options.recipients),
        folder=options.folder,
        folder_in_use=str(break_glass.folder_of(current_app, options)),
        schedule=options.schedule,
        keep=options.keep,
        active=state["active"],
        next_copy_at=state["next_at"],
        handoff_program=Path(command[0]).name if command else None,
        last_copy=state["last"],
    )


@bp.get("/settings/break-glass")
@admin_required
@api_operation({200: s.BreakGlassSettings}, scope="admin")
def break_glass_settings():
    """Break-glass copies: recipients, folder, schedule, how many are kept, the last copy."""
    return _break_glass_answer()


@bp.put("/settings/break-glass")
@admin_required
@recent_sign_in("settings.break_glass")
@api_operation(
    {200: s.BreakGlassSettings}, s.BreakGlassSettingsIn, errors=(403, 422), scope="admin"
)
def set_break_glass_settings(body: s.BreakGlassSettingsIn):
    """Change the break-glass settings (a missing field keeps its value; audited with the
    values before and after, and alerted as break_glass.changed). Recipients are age X25519
    public keys (age1...); anything else is refused per field (`recipients.N`). Needs a
    sign-in within 15 minutes or the password in `confirm_password`."""
    changes = body.model_dump(exclude_unset=True, exclude={"confirm_password"})
    changes = {key: value for key, value in changes.items() if value is not None}
    try:
        break_glass_options.save(changes)
    except break_glass_options.OptionsError as exc:
        raise FieldErrors(exc.errors) from None
    return _break_glass_answer()


@bp.post("/settings/break-glass/copies")
@admin_required
@api_operation({201: s.BreakGlassCopy}, errors=(409,), scope="admin")
def make_break_glass_copy():
    """Make a break-glass copy now, as the schedule would (and hand it off): 201 with the
    file, also when only the hand-off failed (`state`, `error`); 409 when no recipient is
    set or no file could be written. Every copy is audited and alerted."""
    try:
        result = break_glass.copy_now(current_app, current_user.username)
    except break_glass.NotConfigured as exc:
        return json_error(409, str(exc))
    if result.state == "failed":
        transaction.keep()  # the failure is audited, alerted and shown, whatever the answer
        return json_error(409, f"No copy was written: {result.error}.", {"state": "failed"})
    return jsonify(asdict(result)), 201
