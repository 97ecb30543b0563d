"""Sign-in rules: attempts counted per address and per account, lockout, re-typed passwords.

The counts live in the database, so they hold across workers and restarts.
"""

from __future__ import annotations

from datetime import timedelta

from flask import (
    current_app,
)
from sqlalchemy import func, select, update

from . import audit, clock
from .extensions import db
from .models import LoginFailure, User
from .security import hash_password
from .sessions import revoke_user_sessions

MAX_ACCOUNT_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MAX_ADDRESS_FAILURES = 20
ADDRESS_WINDOW = timedelta(minutes=15)
_DUMMY_HASH_CACHE: dict[str, str] = {}


def dummy_hash() -> str:
    method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
    if method not in _DUMMY_HASH_CACHE:
        _DUMMY_HASH_CACHE[method] = hash_password("not-a-real-password-for-timing")
    return _DUMMY_HASH_CACHE[method]


def claim_attempt(username: str, ip: str) -> tuple[LoginFailure, bool]:
    """Record the attempt as a failure before the password is checked, so that parallel
    guesses count at once; returns it and whether the address is over its limit."""
    attempt = LoginFailure(username=username[:128], ip=ip)
    db.session.add(attempt)
    db.session.commit()
    since = clock.now() - ADDRESS_WINDOW
    count = db.session.scalar(
        select(func.count(LoginFailure.id)).where(LoginFailure.ip == ip, LoginFailure.at >= since)
    )
    return attempt, (count or 0) > MAX_ADDRESS_FAILURES


def count_account_attempt(user: User) -> int:
    """Add one to the account's attempts since its last success, atomically; the new count."""
    count = db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
    ).scalar_one()
    db.session.commit()
    return count


def lock_account(user: User, actor: str | None = None) -> None:
    """Lock an account for 15 minutes and end its sessions (the caller commits)."""
    user.locked_until = clock.now() + LOCKOUT
    revoke_user_sessions(user.id)
    audit.record("auth.lockout", user.username, outcome="failure", actor=actor or user.username)


def password_failure(user: User, action: str) -> bool:
    """Count a wrong password typed by a signed-in user (re-authentication, password change);
    the fifth locks the account and ends its sessions. Returns True when it locked."""
    count = count_account_attempt(user)
    db.session.refresh(user)
    audit.record(action, user.username, outcome="failure")
    locked = count >= MAX_ACCOUNT_FAILURES
    if locked:
        lock_account(user)
    db.session.commit()
    return locked


def lock_message(user: User) -> str:
    minutes = max(1, int((user.locked_until - clock.now()).total_seconds() // 60) + 1)
    return (
        f"This account is locked after {MAX_ACCOUNT_FAILURES} failed sign-ins. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator."
    )
