"""Second factors: authenticator apps (TOTP, RFC 6238), recovery codes, and the policy that
says who must have one; passkeys (WebAuthn) are in passkeys.py.

Secrets: a TOTP secret is encrypted under the data key (its own purpose label) and shown only
while it is being set up; recovery codes are kept as SHA-256 hashes (each has 79 random bits)
and shown once. Nothing here commits: the caller does, with its audit record.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import segno
from flask import Flask, redirect, request, url_for
from flask_login import current_user
from pyotp.totp import TOTP  # where pyotp defines it: its __init__ does not re-export it
from sqlalchemy import delete, func, or_, select, update

from .. import audit
from ..models import Passkey, PortalMeta, RecoveryCode, User, UserSession
from ..platform import clock
from ..platform.crypto import TOTP_SECRET, cipher
from ..platform.database import changed_rows
from ..platform.extensions import db
from ..platform.http import json_error
from . import sessions
from .directory import options
from .users import actor

ISSUER = "VCF Credential Portal"
STEP_SECONDS = 30
STEPS_EITHER_SIDE = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud, typed
RECOVERY_LENGTH = 16
VERIFY_WINDOW = timedelta(minutes=5)
POLICIES = ("none", "admins", "everyone")
POLICY_KEY = "require_second_factor"
PASSKEY_NAME_MAX = 64
CODE_MAX = 64


class FactorError(Exception):
    """A second-factor request that cannot be carried out; the message is safe to show."""


# --- policy -------------------------------------------------------------------------------


def policy() -> str:
    """Who must have a second factor: none, admins or everyone."""
    value = db.session.scalar(select(PortalMeta.value).where(PortalMeta.key == POLICY_KEY))
    return value if value in POLICIES else "none"


def set_policy(value: str, actor: User | None = None) -> str:
    """Change the policy and audit it (the caller commits); returns the previous one. An
    `actor` without a factor cannot require one of themselves."""
    if value not in POLICIES:
        raise FactorError(f"The policy is one of: {', '.join(POLICIES)}.")
    previous = policy()
    if actor is not None and not has_factor(actor):
        if value == "everyone" or (value == "admins" and actor.is_admin):
            raise FactorError(
                "Set up your own second factor first (Security page): this policy would "
                "otherwise stop you at once."
            )
    row = db.session.get(PortalMeta, POLICY_KEY)
    if row is None:
        db.session.add(PortalMeta(key=POLICY_KEY, value=value))
    else:
        row.value = value
    audit.record(
        "settings.security",
        POLICY_KEY,
        details={"require_second_factor": value, "previous": previous},
    )
    return previous


def required_for(user: User) -> bool:
    """True when the policy requires this user to have a second factor. For directory and
    OIDC accounts, their provider's settings may trust the provider to have done it."""
    current = policy()
    if not (current == "everyone" or (current == "admins" and user.is_admin)):
        return False  # the usual case: no provider settings to read on every request
    return user.source == "local" or options.load(user.source).options.second_factor != "provider"


def has_factor(user: User) -> bool:
    """True when the user has a confirmed authenticator app or a passkey."""
    if user.totp_secret_enc is not None:
        return True
    return bool(db.session.scalar(select(func.count(Passkey.id)).where(Passkey.user_id == user.id)))


def needs_enrolment(user: User) -> bool:
    """True when the policy requires a factor the user does not have yet."""
    return user.totp_secret_enc is None and required_for(user) and not has_factor(user)


def kinds_by_user() -> dict[int, str]:
    """For the users page: each user's factors in words ("app, 2 passkeys")."""
    apps = set(db.session.scalars(select(User.id).where(User.totp_secret_enc.is_not(None))))
    keys = dict(
        db.session.execute(
            select(Passkey.user_id, func.count(Passkey.id)).group_by(Passkey.user_id)
        ).all()
    )
    result = {}
    for user_id in apps | set(keys):
        parts = ["app"] if user_id in apps else []
        if keys.get(user_id):
            count = keys[user_id]
            parts.append(f"{count} passkey{'s' if count != 1 else ''}")
        result[user_id] = ", ".join(parts)
    return result


@dataclass
class Summary:
    """What a user has set up, for their security page and the API (no secret in it)."""

    totp: bool
    totp_confirmed_at: str | None
    totp_pending: bool
    passkeys: list[dict]
    recovery_codes_left: int
    required: bool

    def as_dict(self) -> dict:
        return {
            "totp": {
                "enabled": self.totp,
                "confirmed_at": self.totp_confirmed_at,
                "pending": self.totp_pending,
            },
            "passkeys": self.passkeys,
            "recovery_codes_left": self.recovery_codes_left,
            "required": self.required,
        }


def summary(user: User) -> Summary:
    """The user's factors, passkeys by name with their last use."""
    keys = db.session.scalars(
        select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)
    ).all()
    return Summary(
        totp=user.totp_secret_enc is not None,
        totp_confirmed_at=clock.iso(user.totp_confirmed_at),
        totp_pending=user.totp_pending_enc is not None,
        passkeys=[
            {
                "id": key.id,
                "name": key.name,
                "created_at": clock.iso(key.created_at),
                "last_used_at": clock.iso(key.last_used_at),
            }
            for key in keys
        ],
        recovery_codes_left=recovery_codes_left(user),
        required=required_for(user),
    )


# --- authenticator app (TOTP) ---------------------------------------------------------------


def start_totp(user: User) -> tuple[str, str]:
    """Begin setting up an authenticator app: a new secret, kept encrypted until confirmed.

    A confirmed app keeps working until the new one is confirmed. Returns the secret (base32)
    and its otpauth:// URI, for this response only."""
    secret = pyotp.random_base32(32)
    user.totp_pending_enc = cipher().encrypt(secret, TOTP_SECRET)
    audit.record("user.second_factor.enrol", user.username, details={"factor": "totp"})
    return secret, provisioning_uri(user, secret)


def provisioning_uri(user: User, secret: str) -> str:
    return TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def pending_totp(user: User) -> tuple[str, str] | None:
    """The secret being set up and its URI (shown again on a reload of the set-up page)."""
    if user.totp_pending_enc is None:
        return None
    secret = cipher().decrypt(user.totp_pending_enc, TOTP_SECRET)
    return secret, provisioning_uri(user, secret)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code, drawn here (no external service)."""
    return segno.make(uri, error="m").svg_inline(scale=6, border=2, dark="#000", light="#fff")


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def _matching_step(secret: str, code: str) -> int | None:
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = TOTP(secret)
    now_step = int(clock.now().replace(tzinfo=clock.UTC).timestamp()) // STEP_SECONDS
    found = None
    for step in range(now_step - STEPS_EITHER_SIDE, now_step + STEPS_EITHER_SIDE + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _claim_step(user: User, step: int) -> bool:
    """Record the step as used, atomically: a second request with the same code loses."""
    claimed = changed_rows(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return claimed == 1


def confirm_totp(user: User, code: str, keep: UserSession | None = None) -> list[str]:
    """Confirm the app being set up with its first code; returns 10 new recovery codes. The
    user's other sessions end (`keep`: the one confirming)."""
    pending = pending_totp(user)
    if pending is None:
        raise FactorError("Start setting up an authenticator app first.")
    step = _matching_step(pending[0], _normalise(code))
    if step is None:
        audit.record(
            "user.second_factor.confirm",
            user.username,
            outcome="failure",
            details={"factor": "totp"},
        )
        raise FactorError("That code is not correct. Check the time on the device and retry.")
    user.totp_secret_enc = user.totp_pending_enc
    user.totp_pending_enc = None
    user.totp_confirmed_at = clock.now()
    user.totp_last_step = step
    sessions.revoke_user_sessions(user.id, keep)
    audit.record("user.second_factor.confirm", user.username, details={"factor": "totp"})
    return new_recovery_codes(user)


def remove_totp(user: User) -> None:
    """Remove the authenticator app (and one being set up); never the last factor the
    policy requires."""
    if user.totp_secret_enc is None and user.totp_pending_enc is None:
        raise FactorError("No authenticator app is set up.")
    if user.totp_secret_enc is not None:
        keep_one_factor(user)
    user.totp_secret_enc = None
    user.totp_pending_enc = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    audit.record("user.second_factor.remove", user.username, details={"factor": "totp"})


# --- recovery codes ---------------------------------------------------------------------------


def _code_hash(code: str) -> str:
    return hashlib.sha256(_normalise(code).encode()).hexdigest()


def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with 10 new ones, returned once (kept as hashes);
    only for a user with a factor (codes replace a lost factor, they are not one)."""
    if not has_factor(user):
        raise FactorError("Set up an authenticator app or a passkey first.")
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, RECOVERY_LENGTH, 4)))
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_code_hash(raw)))
    audit.record("user.recovery_codes.generate", user.username)
    return codes


def recovery_codes_left(user: User) -> int:
    return (
        db.session.scalar(
            select(func.count(RecoveryCode.id)).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        )
        or 0
    )


def _use_recovery_code(user: User, code: str) -> bool:
    if len(_normalise(code)) != RECOVERY_LENGTH:
        return False
    used = changed_rows(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _code_hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=clock.now())
    )
    return used == 1


def check_code(user: User, code: str) -> str | None:
    """Check a code typed at sign-in: "totp" or "recovery" when it is good (and now used),
    "used" for a right code already taken, None when wrong. A recovery code used is
    audited."""
    code = (code or "")[:CODE_MAX]
    if user.totp_secret_enc is not None:
        secret = cipher().decrypt(user.totp_secret_enc, TOTP_SECRET)
        step = _matching_step(secret, _normalise(code))
        if step is not None:
            # A right code whose step is taken (the same code twice, or a race of parallel
            # sign-ins) is "used": refused, but not a wrong guess.
            return "totp" if _claim_step(user, step) else "used"
    if _use_recovery_code(user, code):
        audit.record(
            "auth.recovery_code",
            user.username,
            details={"left": str(recovery_codes_left(user))},
            actor=user.username,
        )
        return "recovery"
    return None


def keep_one_factor(user: User) -> None:
    """Refuse to remove the last factor of a user the policy requires to have one."""
    left = int(user.totp_secret_enc is not None) + len(summary(user).passkeys)
    if left <= 1 and required_for(user):
        raise FactorError(
            "The security policy requires a second factor: add another before removing this one."
        )


# --- reset ------------------------------------------------------------------------------------


def reset(user: User, actor: str | None = None) -> None:
    """Remove every factor and recovery code of a user (admin or CLI): they enrol again at
    their next sign-in where the policy requires a factor."""
    user.totp_secret_enc = None
    user.totp_pending_enc = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    db.session.execute(delete(Passkey).where(Passkey.user_id == user.id))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record("user.second_factor.reset", user.username, actor=actor)


# --- the policy, before every request ---------------------------------------------------------

_ENROLMENT_PATHS = ("/account/security", "/api/v1/me/second-factor")


def _forced_enrolment():
    """Where the policy requires a second factor the user lacks, only setting one up (and
    signing out) is reachable, as with the forced password change."""
    if not current_user.is_authenticated or current_user.must_change_password:
        return None
    if request.endpoint in sessions.OPEN_ENDPOINTS or request.path.startswith(_ENROLMENT_PATHS):
        return None
    if request.path == "/api/v1/me" or not needs_enrolment(actor()):
        return None
    if request.path.startswith("/api/"):
        return json_error(403, "Set up a second factor first")
    return redirect(url_for("account.security"))


def init_app(app: Flask) -> None:
    """Install the policy's check; after the session checks (sessions.init_app)."""
    app.before_request(_forced_enrolment)
