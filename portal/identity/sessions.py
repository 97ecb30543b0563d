"""Server-side sessions: the cookie carries a random token whose hash names a database row.

Logout, idle timeout and absolute lifetime all end the row, so replaying an old cookie gets the
sign-in page. The row also remembers when the user last typed their password (re-auth).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy.exc import OperationalError

from ..models import User, UserSession
from ..platform import clock
from ..platform.database import is_locked
from ..platform.extensions import db, login_manager
from ..platform.http import json_error

REAUTH_WINDOW = timedelta(minutes=15)
PENDING_WINDOW = timedelta(minutes=5)
_TOUCH_EVERY = timedelta(seconds=30)
# Reachable while a password change or a second factor is forced on the user.
OPEN_ENDPOINTS = {
    "auth.login",
    "auth.logout",
    "auth.change_password",
    "auth.oidc_start",
    "auth.oidc_callback",
    "static",
    "health.healthz",
}


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(user: User, ip: str, pending: bool = False) -> UserSession:
    """Sign the user in with a brand-new session id (the pre-login one is discarded).

    With `pending`, the password was right but a second factor must follow: the session is
    not signed in (no page or API answers it) and expires after 5 minutes."""
    previous = current_session()
    if previous is not None and previous.revoked_at is None:
        previous.revoked_at = clock.now()  # signing in again ends the session it replaces
    g.pop("portal_session", None)
    session.clear()
    token = secrets.token_urlsafe(32)
    row = UserSession(
        id=_token_hash(token),
        user_id=user.id,
        ip=ip,
        user_agent=(request.user_agent.string or "")[:255],
    )
    if pending:
        row.pending_until = clock.now() + PENDING_WINDOW
    db.session.add(row)
    session["sid"] = token
    session.permanent = True
    if not pending:
        login_user(user)
    g.portal_session = row
    return row


def pending_session() -> UserSession | None:
    """This request's session when it waits for the second factor and has not expired."""
    row = current_session()
    if row is None or row.pending_until is None or row.revoked_at is not None:
        return None
    return row if clock.now() <= row.pending_until else None


def end_session() -> None:
    """Revoke the current session on the server and clear the cookie."""
    row = current_session()
    if row is not None and row.revoked_at is None:
        row.revoked_at = clock.now()
    logout_user()
    session.clear()


def current_session() -> UserSession | None:
    """The database row of this request's session, if any (none when a token signed it)."""
    if g.get("api_token") is not None:
        return None
    if "portal_session" in g:
        return g.portal_session
    token = session.get("sid")
    row = db.session.get(UserSession, _token_hash(token)) if isinstance(token, str) else None
    g.portal_session = row
    return row


def revoke_user_sessions(user_id: int, keep: UserSession | None = None) -> None:
    """End every session of a user (password reset, disable, delete, a new second factor),
    except `keep`: one statement, and the rows loaded in this session see it."""
    others = db.update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    )
    if keep is not None:
        others = others.where(UserSession.id != keep.id)
    db.session.execute(
        others.values(revoked_at=clock.now()).execution_options(synchronize_session="fetch")
    )


def _session_is_live(row: UserSession) -> bool:
    settings = current_app.config["PORTAL_SETTINGS"]
    now = clock.now()
    if row.revoked_at is not None or row.pending_until is not None:
        return False
    if now - row.last_seen_at > timedelta(minutes=settings.session_idle_minutes):
        return False
    return now - row.created_at <= timedelta(hours=settings.session_max_hours)


def recently_authenticated() -> bool:
    """True when the password was typed in this session within the last 15 minutes."""
    row = current_session()
    return row is not None and clock.now() - row.authenticated_at <= REAUTH_WINDOW


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    row = current_session()
    if row is None or str(row.user_id) != user_id or not _session_is_live(row):
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    now = clock.now()
    # Automatic refreshes from an open page are not activity: the idle timeout still applies.
    background = request.headers.get("X-Portal-Background") == "1"
    if not background and now - row.last_seen_at > _TOUCH_EVERY:
        row.last_seen_at = now
        try:
            db.session.commit()
        except OperationalError as exc:
            if not is_locked(exc):
                raise
            # Still locked after the wait: the touch is kept for the next request rather
            # than refusing this one (it only moves the idle timeout).
            db.session.rollback()
    return user


@login_manager.unauthorized_handler
def _unauthorized():
    if request.path.startswith("/api/"):
        return json_error(401, "Sign-in required")
    target = request.full_path if request.method == "GET" else request.path
    return redirect(url_for("auth.login", next=target.rstrip("?")))


def _same_origin_check() -> None:
    """Refuse a state-changing request whose Origin is another site (belt to CSRF's braces)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        parts = urlsplit(origin)
        if parts.netloc != request.host or parts.scheme != request.scheme:
            abort(403, description="Cross-site request refused")


def _forced_password_change():
    """Until the default or reset password is changed, only the change page is reachable."""
    if not current_user.is_authenticated or not current_user.must_change_password:
        return None
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if request.path.startswith("/api/"):
        return json_error(403, "Change your password first")
    return redirect(url_for("auth.change_password"))


def init_app(app: Flask) -> None:
    """Install the session checks that run before every request."""
    # Our own server-side sessions do this job. Flask-Login documents None as "off"; its
    # attribute is inferred from the default "basic" as str only.
    login_manager.session_protection = None  # pyright: ignore[reportAttributeAccessIssue]
    app.permanent_session_lifetime = timedelta(
        hours=app.config["PORTAL_SETTINGS"].session_max_hours
    )
    app.before_request(_same_origin_check)
    app.before_request(_forced_password_change)
