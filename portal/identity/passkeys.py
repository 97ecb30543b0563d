"""Passkeys (WebAuthn) as a second factor: registration, sign-in checks, removal.

The relying party is the portal's external address; a passkey's public key and sign count are
stored, never a secret. Nothing here commits: the caller does, with its audit record.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

from flask import request
from sqlalchemy import select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .. import audit
from ..models import Passkey, User, UserSession
from ..platform import clock
from ..platform.extensions import db
from . import sessions
from .second_factor import ISSUER, PASSKEY_NAME_MAX, FactorError, keep_one_factor


def relying_party() -> tuple[str, str]:
    """The relying party id (the portal's host name) and the origin the browser reports."""
    host = urlsplit(f"//{request.host}").hostname or "localhost"
    return host, f"{request.scheme}://{request.host}"


def _user_handle(user: User) -> bytes:
    return hashlib.sha256(f"vcf-portal-user:{user.id}".encode()).digest()[:16]


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    keys = db.session.scalars(select(Passkey).where(Passkey.user_id == user.id)).all()
    result = []
    for key in keys:
        transports = []
        for name in filter(None, key.transports.split(",")):
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue
        result.append(
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(key.credential_id), transports=transports or None
            )
        )
    return result


def registration_options(user: User, row: UserSession) -> str:
    """Options for navigator.credentials.create(), as JSON; the challenge is kept on the
    session (single use)."""
    rp_id, _ = relying_party()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=ISSUER,
        user_id=_user_handle(user),
        user_name=user.username,
        exclude_credentials=_descriptors(user),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    row.challenge = bytes_to_base64url(options.challenge)
    return options_to_json(options)


def _take_challenge(row: UserSession) -> bytes:
    challenge = row.challenge
    row.challenge = None
    if not challenge:
        raise FactorError("Start again: no passkey request is open.")
    return base64url_to_bytes(challenge)


def _credential_text(credential: object) -> str:
    if not isinstance(credential, dict):
        raise FactorError("The passkey response is malformed.")
    return json.dumps(credential)


def register_passkey(user: User, row: UserSession, credential: object, name: str) -> Passkey:
    """Verify the browser's registration response and keep the new passkey; the user's
    sessions other than `row` end."""
    name = " ".join((name or "").split())[:PASSKEY_NAME_MAX]
    if not name:
        raise FactorError("Give the passkey a name.")
    challenge = _take_challenge(row)
    rp_id, origin = relying_party()
    try:
        verified = verify_registration_response(
            credential=_credential_text(credential),
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=False,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        audit.record(
            "user.second_factor.enrol",
            user.username,
            outcome="failure",
            details={"factor": "passkey"},
        )
        raise FactorError("The passkey could not be verified.") from exc
    credential_id = bytes_to_base64url(verified.credential_id)
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise FactorError("This passkey is already registered.")
    response = credential.get("response") if isinstance(credential, dict) else None
    transports = response.get("transports") if isinstance(response, dict) else None
    key = Passkey(
        user_id=user.id,
        name=name,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=",".join(t for t in transports if isinstance(t, str))[:255]
        if isinstance(transports, list)
        else "",
    )
    db.session.add(key)
    db.session.flush()
    sessions.revoke_user_sessions(user.id, row)
    audit.record(
        "user.second_factor.confirm",
        user.username,
        details={"factor": "passkey", "name": name},
    )
    return key


def authentication_options(user: User, row: UserSession) -> str:
    """Options for navigator.credentials.get() over the user's passkeys, as JSON."""
    descriptors = _descriptors(user)
    if not descriptors:
        raise FactorError("No passkey is registered for this account.")
    rp_id, _ = relying_party()
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=descriptors,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    row.challenge = bytes_to_base64url(options.challenge)
    return options_to_json(options)


def check_passkey(user: User, row: UserSession, credential: object) -> Passkey | None:
    """Verify a sign-in assertion against the user's passkeys; the passkey used, or None."""
    try:
        challenge = _take_challenge(row)
    except FactorError:
        return None
    raw_id = credential.get("id") if isinstance(credential, dict) else None
    if not isinstance(raw_id, str) or len(raw_id) > 512:
        return None
    key = db.session.scalar(
        select(Passkey).where(Passkey.user_id == user.id, Passkey.credential_id == raw_id)
    )
    if key is None:
        return None
    rp_id, origin = relying_party()
    try:
        verified = verify_authentication_response(
            credential=_credential_text(credential),
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=key.sign_count,
            require_user_verification=False,
        )
    except (WebAuthnException, FactorError, ValueError, KeyError, TypeError):
        return None
    key.sign_count = verified.new_sign_count
    key.last_used_at = clock.now()
    return key


def remove_passkey(user: User, passkey_id: int) -> str:
    """Remove one of the user's passkeys (never the last factor the policy requires);
    returns its name."""
    keep_one_factor(user)
    key = db.session.scalar(
        select(Passkey).where(Passkey.user_id == user.id, Passkey.id == passkey_id)
    )
    if key is None:
        raise FactorError("No such passkey.")
    name = key.name
    db.session.delete(key)
    audit.record(
        "user.second_factor.remove",
        user.username,
        details={"factor": "passkey", "name": name},
    )
    return name
