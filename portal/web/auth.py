"""Sign-in, sign-out and password change pages."""

from __future__ import annotations

import hashlib
import logging

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import select, update

from .. import audit
from ..identity import second_factor, signin
from ..identity.directory import accounts, ldap, oidc, options
from ..identity.directory.account_state import AccountState
from ..identity.sessions import (
    current_session,
    end_session,
    revoke_user_sessions,
    start_session,
)
from ..identity.signin import (
    MAX_ACCOUNT_FAILURES,
    REFUSED,
    claim_attempt,
    claim_check,
    dummy_hash,
    lock_account,
    password_failure,
    release_check,
)
from ..identity.users import actor
from ..models import User
from ..platform import clock, transaction
from ..platform.database import changed_rows
from ..platform.extensions import db
from ..platform.security import (
    client_ip,
    hash_password,
    is_safe_next,
    password_problem,
    verify_password,
)
from ..platform.urls import external_url

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)
EXTERNAL_ID_MAX = 512  # users.external_id
DIRECTORY_DOWN = (
    "The directory cannot be reached, so directory accounts cannot sign in now. "
    "Local accounts still can."
)


def _next_target() -> str:
    target = request.values.get("next")
    return target if is_safe_next(target) else url_for("dashboard.index")


def _login_page(again: str, username: str = "", status: int = 200):
    provider = options.enabled("oidc")
    oidc_name = provider.options.display_name if provider is not None else None
    return render_template(
        "login.html", next=again, username=username[:128], oidc_name=oidc_name
    ), status


def _refused(username: str, again: str, outcome: str, source: str | None = None):
    """One answer for every refused sign-in, so it never tells whether an account exists or is
    locked (the audit log says which)."""
    audit.record(
        "auth.login",
        username or "(empty)",
        outcome=outcome,
        actor=username or "(empty)",
        details={"source": source} if source else None,
    )
    transaction.keep()
    flash(REFUSED, "error")
    return _login_page(again, username, 401)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form and check the password (local, or by the directory); a second
    factor follows where one is set."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_next_target())
    if request.method == "GET":
        return _login_page(request.args.get("next", ""))
    username = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    ip = client_ip()
    again = request.form.get("next", "")
    attempt, address_over = claim_attempt(username or "(empty)", ip)
    if address_over:
        audit.record("auth.login", username, outcome="blocked", actor=username or "anonymous")
        transaction.keep()
        flash("Too many failed sign-ins from your address. Try again in 15 minutes.", "error")
        return _login_page(again, username, 429)
    user = db.session.scalar(select(User).where(User.username == username)) if username else None
    directory = options.enabled("ldap")
    if directory is not None and username and (user is None or user.source == "ldap"):
        return _directory_sign_in(directory, username, password, attempt, again)
    if user is None or user.disabled or user.source != "local":
        verify_password(dummy_hash(), password)
        return _refused(username, again, "failure")
    signin.unlock_if_expired(user)
    claim = claim_check(user)
    if claim == "busy":
        verify_password(dummy_hash(), password)
        flash("The sign-in service is busy. Try again in a moment.", "error")
        return _login_page(again, username, 503)
    if claim == "locked":
        verify_password(dummy_hash(), password)
        return _refused(username, again, "locked")
    right = verify_password(user.password_hash, password)
    failures = release_check(user, right)
    if not right:
        db.session.refresh(user)
        if failures >= MAX_ACCOUNT_FAILURES:
            lock_account(user)
        return _refused(username, again, "failure")
    db.session.delete(attempt)  # a right password does not count against the address
    return _first_factor_done(user, ip, again, accounts.sign_in_details(user))


def _directory_sign_in(directory, username, password, attempt, again):
    """Find the entry, then check the password by a bind as it; create the account at the
    first sign-in and apply the directory's groups at every one. Wrong passwords count on
    the account the entry belongs to, whatever name (uid, e-mail, UPN) was typed."""
    claimed: User | None = None
    try:
        with ldap.Directory(directory.options, directory.secret()) as server:
            entry = server.find(username)
            if entry is None or not password:  # never an anonymous bind
                return _refused(username, again, "failure", "ldap")
            user = db.session.scalar(
                select(User).where(User.source == "ldap", User.external_id == entry.stable_id)
            )
            if user is not None:
                if user.disabled:
                    return _refused(username, again, "failure", "ldap")
                signin.unlock_if_expired(user)
                claim = claim_check(user)
                if claim == "busy":
                    flash("The sign-in service is busy. Try again in a moment.", "error")
                    return _login_page(again, username, 503)
                if claim == "locked":
                    return _refused(username, again, "locked", "ldap")
                claimed = user
            right = server.password_ok(entry, password)
            if claimed is not None:
                failures = release_check(claimed, right)
                account, claimed = claimed, None
                if not right and failures >= MAX_ACCOUNT_FAILURES:
                    db.session.refresh(account)
                    lock_account(account)
            if not right:
                return _refused(username, again, "failure", "ldap")
            found = server.describe(entry)
    except AccountState as state:
        # The password was right, the account cannot sign in now: say why, count nothing.
        if claimed is not None:
            release_check(claimed, True)
        return _account_refused(username, "ldap", state.reason, again)
    except (ldap.DirectoryUnavailable, ldap.SearchFailed) as exc:
        if claimed is not None:
            release_check(claimed, True)  # the directory could not say: not a wrong password
        log.warning("directory sign-in impossible: %s", exc)
        audit.record(
            "auth.login",
            username,
            outcome="error",
            actor=username,
            details={"source": "ldap", "reason": "directory unreachable"},
        )
        transaction.keep()
        flash(DIRECTORY_DOWN, "error")
        return _login_page(again, username, 503)
    if found.disabled:
        return _refused(username, again, "failure", "ldap")
    identity = accounts.Identity("ldap", found.stable_id, found.username, found.groups)
    try:
        account = accounts.account_for(identity)
    except accounts.AccountRefused as exc:
        return _account_refused(username, "ldap", str(exc), again)
    accounts.apply_groups(account, found.groups)
    db.session.delete(attempt)
    return _first_factor_done(
        account, client_ip(), again, accounts.sign_in_details(account, found.groups)
    )


def _account_refused(username: str, source: str, message: str, again: str):
    audit.record(
        "auth.login",
        username or "(empty)",
        outcome="denied",
        actor=username or "(empty)",
        details={"source": source, "reason": message},
    )
    transaction.keep()
    flash(message, "error")
    return _login_page(again, username, 403)


def _first_factor_done(user: User, ip: str, again: str, details: dict):
    """The password (or the provider) proved who this is: ask the second factor where the
    user has one, else finish."""
    if second_factor.has_factor(user):
        start_session(user, ip, pending=True)
        audit.record("auth.password", user.username, actor=user.username, details=details)
        return redirect(url_for("auth.verify", next=again or None))
    return _signed_in(user, ip, again, details=details)


def _redirect_uri() -> str:
    return external_url("auth.oidc_callback")


def _trust_dir():
    return current_app.config["PORTAL_SETTINGS"].data_dir / "trust"


@bp.get("/login/oidc")
def oidc_start():
    """Send the browser to the OpenID Provider (authorization code flow with PKCE)."""
    provider = options.enabled("oidc")
    again = request.args.get("next", "")
    if provider is None:
        flash("Sign-in with an OpenID Provider is not set up.", "error")
        return redirect(url_for("auth.login"))
    try:
        url, flow = oidc.begin(
            provider.options,
            provider.secret(),
            _redirect_uri(),
            _trust_dir(),
            reauth=request.args.get("reauth") == "1",
        )
    except oidc.OidcError as exc:
        log.warning("OpenID Connect sign-in cannot start: %s", exc)
        flash(str(exc), "error")
        return _login_page(again, status=503)
    flow["next"] = again if is_safe_next(again) else ""
    session["oidc_flow"] = flow
    return redirect(url)


@bp.get("/login/oidc/callback")
def oidc_callback():
    """The provider's answer: check it, then sign the person in (account made at first)."""
    provider = options.enabled("oidc")
    flow = session.pop("oidc_flow", None)
    if provider is None:
        flash("Sign-in with an OpenID Provider is not set up.", "error")
        return redirect(url_for("auth.login"))
    again = flow.get("next", "") if isinstance(flow, dict) else ""
    try:
        identity = oidc.finish(
            provider.options,
            provider.secret(),
            _redirect_uri(),
            request.args.to_dict(),
            flow if isinstance(flow, dict) else {},
            _trust_dir(),
        )
    except oidc.OidcError as exc:
        audit.record(
            "auth.login",
            "(oidc)",
            outcome="failure",
            actor="(oidc)",
            details={"source": "oidc", "reason": str(exc)},
        )
        transaction.keep()
        flash(str(exc), "error")
        return _login_page(again, status=401)
    name = identity.username
    if not oidc.domain_allowed(provider.options, identity):
        return _account_refused(
            name, "oidc", "Your e-mail domain is not allowed to sign in here.", again
        )
    if not oidc.second_factor_shown(provider.options, identity):
        return _account_refused(
            name,
            "oidc",
            "The provider did not confirm a second factor for this sign-in. Sign in again with it.",
            again,
        )
    external_id = f"{provider.options.issuer}|{identity.subject}"
    if len(external_id) > EXTERNAL_ID_MAX:  # the column's size; a digest names it as well
        external_id = "sha256:" + hashlib.sha256(external_id.encode()).hexdigest()
    try:
        account = accounts.account_for(
            accounts.Identity("oidc", external_id, name, identity.groups)
        )
    except accounts.AccountRefused as exc:
        return _account_refused(name, "oidc", str(exc), again)
    if account.locked_until is not None and account.locked_until > clock.now():
        return _refused(name, again, "locked", "oidc")  # wrong re-typed codes lock it too
    accounts.apply_groups(account, identity.groups)
    return _first_factor_done(
        account, client_ip(), again, accounts.sign_in_details(account, identity.groups)
    )


def _signed_in(
    user: User, ip: str, again: str, factor: str | None = None, details: dict | None = None
):
    """Finish a sign-in: a new session, the counts cleared, the next page."""
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = clock.now()
    start_session(user, ip)
    details = dict(details or accounts.sign_in_details(user))
    if factor:
        details["factor"] = factor
    audit.record("auth.login", user.username, actor=user.username, details=details)
    if user.must_change_password:
        return redirect(url_for("auth.change_password"))
    return redirect(again if is_safe_next(again) else url_for("dashboard.index"))


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
    if current_user.source != "local":
        flash(
            "Your password is kept by your directory or identity provider: change it there.", "info"
        )
        return redirect(url_for("dashboard.index"))
    if request.method == "GET":
        return render_template("change_password.html")
    current = request.form.get("current_password") or ""
    new = request.form.get("new_password") or ""
    confirm = request.form.get("confirm_password") or ""
    errors: dict[str, str] = {}
    checked_hash = current_user.password_hash  # the password the typed one is checked against
    if not verify_password(checked_hash, current):
        errors["current_password"] = "The current password is not correct."
        if password_failure(actor(), "user.password_change"):
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
        transaction.keep()
        return render_template("change_password.html", errors=errors), 400
    user = actor()
    # Compare and set: of parallel changes checked against the same password, one wins; the
    # others find it changed and say so, and never report a password that does not work.
    changed = changed_rows(
        update(User)
        .where(User.id == user.id, User.password_hash == checked_hash)
        .values(
            password_hash=hash_password(new),
            must_change_password=False,
            password_changed_at=clock.now(),
        )
        .execution_options(synchronize_session=False)
    )
    if changed != 1:
        db.session.rollback()
        errors["current_password"] = (
            "Your password was changed meanwhile (another window or request): sign in again "
            "with the new one if you do not know it."
        )
        audit.record("user.password_change", current_user.username, outcome="conflict")
        transaction.keep()
        return render_template("change_password.html", errors=errors), 409
    db.session.refresh(user)
    row = current_session()
    revoke_user_sessions(user.id, keep=row)
    if row is not None:
        row.authenticated_at = clock.now()
    audit.record("user.password_change", user.username)
    flash("Your password has been changed.", "info")
    return redirect(url_for("dashboard.index"))
