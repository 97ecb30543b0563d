"""Portal-wide settings (JSON, admin): the second-factor policy, LDAP and OpenID Connect."""

from __future__ import annotations

from flask import jsonify
from flask_login import current_user
from pydantic import BaseModel

from ..access.guards import admin_required, recent_sign_in
from ..identity import second_factor
from ..identity.directory import accounts, options
from ..identity.users import actor
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
