"""Sign-in, sign-out and password change, with throttling that holds across workers."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import func, select

from . import audit, clock
from .extensions import db
from .models import LoginFailure, User
from .security import client_ip, hash_password, is_safe_next, password_problem, verify_password
from .sessions import current_session, end_session, revoke_user_sessions, start_session

bp = Blueprint("auth", __name__)

MAX_ACCOUNT_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
MAX_ADDRESS_FAILURES = 20
ADDRESS_WINDOW = timedelta(minutes=15)
_DUMMY_HASH_CACHE: dict[str, str] = {}


def _dummy_hash() -> str:
    method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
    if method not in _DUMMY_HASH_CACHE:
        _DUMMY_HASH_CACHE[method] = hash_password("not-a-real-password-for-timing")
    return _DUMMY_HASH_CACHE[method]


def _address_blocked(ip: str) -> bool:
    since = clock.now() - ADDRESS_WINDOW
    count = db.session.scalar(
        select(func.count(LoginFailure.id)).where(LoginFailure.ip == ip, LoginFailure.at >= since)
    )
    return (count or 0) >= MAX_ADDRESS_FAILURES


def _lock_message(user: User) -> str:
    minutes = max(1, int((user.locked_until - clock.now()).total_seconds() // 60) + 1)
    return (
        f"This account is locked after {MAX_ACCOUNT_FAILURES} failed sign-ins. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, or ask an administrator."
    )


def _record_failure(username: str, ip: str, user: User | None) -> str:
    """Count a failed sign-in; returns the message to show."""
    db.session.add(LoginFailure(username=username[:128], ip=ip))
    message = "Invalid user name or password."
    if user is not None:
        user.failed_logins += 1
        if user.failed_logins >= MAX_ACCOUNT_FAILURES:
            user.locked_until = clock.now() + LOCKOUT
            user.failed_logins = 0
            audit.record(
                "auth.lockout", user.username, outcome="failure", actor=user.username, commit=False
            )
            message = _lock_message(user)
    audit.record("auth.login", username, outcome="failure", actor=username, commit=False)
    db.session.commit()
    return message


def _next_target() -> str:
    target = request.values.get("next")
    return target if is_safe_next(target) else url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form and sign the operator in."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_next_target())
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    username = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    ip = client_ip()
    if _address_blocked(ip):
        audit.record("auth.login", username, outcome="blocked", actor=username or "anonymous")
        flash("Too many failed sign-ins from your address. Try again in 15 minutes.", "error")
        return render_template("login.html", next=request.form.get("next", "")), 429
    user = db.session.scalar(select(User).where(User.username == username)) if username else None
    if user is not None and user.locked_until and user.locked_until > clock.now():
        verify_password(_dummy_hash(), password)
        audit.record("auth.login", username, outcome="locked", actor=username)
        flash(_lock_message(user), "error")
        return render_template("login.html", next=request.form.get("next", "")), 403
    ok = verify_password(user.password_hash if user else _dummy_hash(), password)
    if not ok or user is None or user.disabled or not username:
        flash(_record_failure(username or "(empty)", ip, user), "error")
        return render_template("login.html", next=request.form.get("next", "")), 401
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = clock.now()
    start_session(user, ip)
    audit.record("auth.login", user.username, commit=False)
    db.session.commit()
    if user.must_change_password:
        return redirect(url_for("auth.change_password"))
    return redirect(_next_target())


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out: the session ends on the server too."""
    if current_user.is_authenticated:
        name = current_user.username
        end_session()
        audit.record("auth.logout", name, actor=name)
    else:
        end_session()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/change-password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change one's own password (forced after the first sign-in or a reset)."""
    if request.method == "GET":
        return render_template("change_password.html")
    current = request.form.get("current_password") or ""
    new = request.form.get("new_password") or ""
    confirm = request.form.get("confirm_password") or ""
    errors: dict[str, str] = {}
    if not verify_password(current_user.password_hash, current):
        errors["current_password"] = "The current password is not correct."
    problem = password_problem(new, current_user.username)
    if problem:
        errors["new_password"] = problem
    elif new != confirm:
        errors["confirm_password"] = "The two new passwords differ."
    elif new == current:
        errors["new_password"] = "Choose a password different from the current one."
    if errors:
        audit.record("user.password_change", current_user.username, outcome="failure")
        return render_template("change_password.html", errors=errors), 400
    user = current_user._get_current_object()
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.password_changed_at = clock.now()
    row = current_session()
    revoke_user_sessions(user.id, keep=row)
    if row is not None:
        row.authenticated_at = clock.now()
    audit.record("user.password_change", user.username, commit=False)
    db.session.commit()
    flash("Your password has been changed.", "info")
    return redirect(url_for("dashboard.index"))
