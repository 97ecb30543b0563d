"""Sign-in rules: attempts counted per address and per account, lockout, re-typed passwords.

The counts live in the database, so they hold across workers and restarts.
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import (
    current_app,
)
from sqlalchemy import ColumnElement, case, func, or_, select, update

from .. import audit
from ..alerts import notifications
from ..models import LoginFailure, User
from ..platform import clock
from ..platform.database import changed_rows
from ..platform.extensions import db
from ..platform.security import hash_password
from .sessions import revoke_user_sessions

MAX_ACCOUNT_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
# A password check claimed but never released (a worker killed mid-check) stops counting after
# this long without a new claim.
CHECK_STALE = timedelta(seconds=30)
CHECK_WAIT_SECONDS = 10.0
MAX_ADDRESS_FAILURES = 20
REFUSED = (
    "Sign-in failed: the user name or password is not correct, or the account is locked "
    f"({MAX_ACCOUNT_FAILURES} failed sign-ins lock it for 15 minutes)."
)
ADDRESS_WINDOW = timedelta(minutes=15)
_DUMMY_HASH_CACHE: dict[str, str] = {}


def dummy_hash() -> str:
    method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
    if method not in _DUMMY_HASH_CACHE:
        _DUMMY_HASH_CACHE[method] = hash_password("not-a-real-password-for-timing")
    return _DUMMY_HASH_CACHE[method]


def unlock_if_expired(user: User) -> None:
    """A lock that has run out starts a fresh count (conditional, so only one request resets
    it); committed at once, like every sign-in counter."""
    if user.locked_until is not None and user.locked_until <= clock.now():
        db.session.execute(
            update(User)
            .where(User.id == user.id, User.locked_until <= clock.now())
            .values(failed_logins=0, locked_until=None)
        )
        db.session.commit()


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


def _live_checks(now):
    stale = now - CHECK_STALE
    return case(
        (or_(User.login_checks_at.is_(None), User.login_checks_at < stale), 0),
        else_=User.login_checks,
    )


def claim_check(user: User) -> str:
    """Claim the right to check a password for this account: "ok", "locked" or "busy".

    Wrong passwords already counted plus checks in progress stay under the limit, so at most
    5 wrong passwords are ever checked per lockout window, however many arrive in parallel;
    right ones are never counted, so parallel correct sign-ins wait their turn instead of
    locking the account."""
    deadline = time.monotonic() + CHECK_WAIT_SECONDS
    while True:
        now = clock.now()
        live = _live_checks(now)
        claimed = changed_rows(
            update(User)
            .where(
                User.id == user.id,
                or_(User.locked_until.is_(None), User.locked_until <= now),
                User.failed_logins + live < MAX_ACCOUNT_FAILURES,
            )
            .values(login_checks=live + 1, login_checks_at=now)
        )
        db.session.commit()
        if claimed:
            return "ok"
        db.session.refresh(user)
        if user.locked_until and user.locked_until > now:
            return "locked"
        if user.failed_logins >= MAX_ACCOUNT_FAILURES:
            lock_account(user)
            db.session.commit()
            return "locked"
        if time.monotonic() > deadline:
            return "busy"
        time.sleep(0.05)


def release_check(user: User, right: bool) -> int:
    """End a claimed check; a wrong password is counted. Returns the account's wrong count."""
    values: dict[str, ColumnElement[int]] = {
        "login_checks": case((User.login_checks > 0, User.login_checks - 1), else_=0)
    }
    if not right:
        values["failed_logins"] = User.failed_logins + 1
    count = db.session.execute(
        update(User).where(User.id == user.id).values(**values).returning(User.failed_logins)
    ).scalar_one()
    db.session.commit()
    return count


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


def lock_account(user: User, actor: str | None = None) -> bool:
    """Lock an account for 15 minutes and end its sessions (the caller commits).

    Atomic: of requests that reach the limit together (a wrong password counted here, a
    parallel sign-in finding the count full), one locks; the others find the account locked
    and add nothing. So one lockout is one audit record, one metric count and one alert.
    Returns whether this call locked it."""
    now = clock.now()
    locked = changed_rows(
        update(User)
        .where(User.id == user.id, or_(User.locked_until.is_(None), User.locked_until <= now))
        .values(locked_until=now + LOCKOUT)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(user, ["locked_until"])
    if locked != 1:
        return False
    revoke_user_sessions(user.id)
    audit.record("auth.lockout", user.username, outcome="failure", actor=actor or user.username)
    notifications.account_locked(user.username, int(LOCKOUT.total_seconds() // 60))
    return True


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
