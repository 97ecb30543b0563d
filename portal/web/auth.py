"""Sign-in, sign-out and password change pages."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select, update

from .. import audit, clock
from ..extensions import db
from ..models import User
from ..security import client_ip, hash_password, is_safe_next, password_problem, verify_password
from ..sessions import current_session, end_session, revoke_user_sessions, start_session
from ..signin import (
    MAX_ACCOUNT_FAILURES,
    claim_attempt,
    count_account_attempt,
    dummy_hash,
    lock_account,
    lock_message,
    password_failure,
)

bp = Blueprint("auth", __name__)


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
    again = request.form.get("next", "")
    attempt, address_over = claim_attempt(username or "(empty)", ip)
    if address_over:
        audit.record("auth.login", username, outcome="blocked", actor=username or "anonymous")
        db.session.commit()
        flash("Too many failed sign-ins from your address. Try again in 15 minutes.", "error")
        return render_template("login.html", next=again, username=username[:128]), 429
    user = db.session.scalar(select(User).where(User.username == username)) if username else None
    if user is not None and user.locked_until and user.locked_until > clock.now():
        verify_password(dummy_hash(), password)
        audit.record("auth.login", username, outcome="locked", actor=username)
        db.session.commit()
        flash(lock_message(user), "error")
        return render_template("login.html", next=again, username=username[:128]), 403
    if user is not None and user.locked_until is not None:
        # The lock has run out: a fresh count starts (conditional, so only one request resets).
        db.session.execute(
            update(User)
            .where(User.id == user.id, User.locked_until <= clock.now())
            .values(failed_logins=0, locked_until=None)
        )
        db.session.commit()
    attempts = count_account_attempt(user) if user is not None else 0
    if attempts > MAX_ACCOUNT_FAILURES:
        # Parallel guesses beyond the limit: refused unchecked, and the account locked.
        db.session.refresh(user)
        if not (user.locked_until and user.locked_until > clock.now()):
            lock_account(user)
        audit.record("auth.login", username, outcome="locked", actor=username)
        db.session.commit()
        flash(lock_message(user), "error")
        return render_template("login.html", next=again, username=username[:128]), 403
    ok = verify_password(user.password_hash if user else dummy_hash(), password)
    if not ok or user is None or user.disabled or not username:
        message = "Invalid user name or password."
        if user is not None and attempts >= MAX_ACCOUNT_FAILURES:
            db.session.refresh(user)
            lock_account(user)
            message = lock_message(user)
        audit.record(
            "auth.login",
            username or "(empty)",
            outcome="failure",
            actor=username or "(empty)",
        )
        db.session.commit()
        flash(message, "error")
        return render_template("login.html", next=again, username=username[:128]), 401
    db.session.delete(attempt)  # a success does not count against the address
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = clock.now()
    start_session(user, ip)
    audit.record("auth.login", user.username)
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
        db.session.commit()
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
        if password_failure(current_user._get_current_object(), "user.password_change"):
            end_session()
            flash(
                f"Signed out: {MAX_ACCOUNT_FAILURES} wrong passwords locked the account "
                "for 15 minutes.",
                "error",
            )
            return redirect(url_for("auth.login"))
    problem = password_problem(new, current_user.username)
    if problem:
        errors["new_password"] = problem
    elif new != confirm:
        errors["confirm_password"] = "The two new passwords differ."
    elif new == current:
        errors["new_password"] = "Choose a password different from the current one."
    if errors:
        audit.record("user.password_change", current_user.username, outcome="failure")
        db.session.commit()
        return render_template("change_password.html", errors=errors), 400
    user = current_user._get_current_object()
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.password_changed_at = clock.now()
    row = current_session()
    revoke_user_sessions(user.id, keep=row)
    if row is not None:
        row.authenticated_at = clock.now()
    audit.record("user.password_change", user.username)
    db.session.commit()
    flash("Your password has been changed.", "info")
    return redirect(url_for("dashboard.index"))
