"""Portal accounts of directory and OpenID Connect users: created at the first sign-in (just in
time), their directory groups applied at every sign-in, and their access ended when the
directory no longer knows them.

A directory group gives access through a portal group of the same name (compared without
regard to case) whose source is "directory": the admin creates that group, maps it to a
role and grants it environments; its members are whoever the directory names at sign-in.
Local groups are never changed here. Callers commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select

from .. import audit, clock
from ..extensions import db
from ..models import Group, User, UserSession
from ..sessions import revoke_user_sessions
from ..users import USERNAME_RE
from . import ldap, options

log = logging.getLogger(__name__)

# Stored as the password hash of accounts whose password the portal never holds: no hash
# method has this form, so no typed password ever matches it.
NO_LOCAL_PASSWORD = "!external"  # noqa: S105 - a marker, not a password
MAX_AUDITED_GROUPS = 20


class AccountRefused(Exception):
    """A directory or OIDC sign-in that must not create or use an account; the message is
    safe to show to the person signing in."""


@dataclass
class Identity:
    """Who signed in, as their source says: the source, a stable id there, a user name, the
    groups it names."""

    source: str
    external_id: str
    username: str
    groups: list[str]


def account_for(identity: Identity) -> User:
    """The portal account of this identity, created on first sign-in with the role `member`
    (only groups and grants give access). Raises AccountRefused when the name belongs to
    another account (a local one, or another source's) or the account is disabled here."""
    user = db.session.scalar(
        select(User).where(User.source == identity.source, User.external_id == identity.external_id)
    )
    if user is None and identity.source == "ldap":
        # The entry moved in the directory (a new DN), the user name is still unique there.
        user = db.session.scalar(
            select(User).where(User.source == "ldap", User.username == identity.username)
        )
        if user is not None:
            user.external_id = identity.external_id
    if user is None:
        if not USERNAME_RE.match(identity.username):
            raise AccountRefused(
                "Your user name cannot be used here (2 to 64 letters, digits, dot, dash, "
                "underscore or @). Ask an administrator."
            )
        taken = db.session.scalar(select(User).where(User.username == identity.username))
        if taken is not None:
            raise AccountRefused(
                f"The user name {identity.username} belongs to another portal account. "
                "Ask an administrator."
            )
        user = User(
            username=identity.username,
            password_hash=NO_LOCAL_PASSWORD,
            role="member",
            source=identity.source,
            external_id=identity.external_id,
        )
        db.session.add(user)
        db.session.flush()
        audit.record(
            "user.create",
            user.username,
            actor=user.username,
            details={"role": "member", "source": identity.source},
        )
    if user.disabled:
        raise AccountRefused("This account is disabled in the portal. Ask an administrator.")
    return user


def ldap_password_ok(user: User, typed: str) -> bool:
    """For a re-typed password: True when the directory accepts it for this LDAP user."""
    provider = options.enabled("ldap")
    if provider is None or user.source != "ldap":
        return False
    try:
        found = ldap.authenticate(provider.options, provider.secret(), user.username, typed)
    except ldap.DirectoryUnavailable as exc:
        log.warning("password check impossible: %s", exc)
        return False
    return found is not None and found.dn.casefold() == (user.external_id or "").casefold()


def directory_groups() -> list[Group]:
    """The portal groups filled from directory and OIDC group names."""
    return list(db.session.scalars(select(Group).where(Group.source == "directory")))


def apply_groups(user: User, names: list[str]) -> list[str]:
    """Make the user a member of exactly the directory-sourced portal groups named in
    `names`; local groups are left alone. Audited when it changes. Returns the portal groups
    (all sources) the user is now a member of."""
    wanted = {name.casefold() for name in names}
    before = sorted(g.name for g in user.groups if g.source == "directory")
    keep = [g for g in user.groups if g.source != "directory"]
    matched = [g for g in directory_groups() if g.name.casefold() in wanted]
    user.groups = sorted(keep + matched, key=lambda g: g.name)
    after = sorted(g.name for g in matched)
    if before != after:
        audit.record(
            "user.directory_groups",
            user.username,
            actor=user.username if user.source != "local" else None,
            details={
                "source": user.source,
                "before": ", ".join(before) or "(none)",
                "after": ", ".join(after) or "(none)",
            },
        )
    user.directory_checked_at = clock.now()
    return [g.name for g in user.groups]


def sign_in_details(user: User, names: list[str] | None = None) -> dict:
    """What a sign-in audit record says about where it came from and what gave access."""
    details = {
        "source": user.source,
        "groups": ", ".join(g.name for g in user.groups) or "(none)",
    }
    if names is not None:
        shown = names[:MAX_AUDITED_GROUPS]
        more = len(names) - len(shown)
        details["directory_groups"] = ", ".join(shown) + (f" (+{more} more)" if more else "")
    return details


def end_access(user: User, reason: str) -> None:
    """The directory no longer knows the user, or has disabled them: end their sessions and
    take their directory groups (the account stays, for the audit trail; a new sign-in is
    checked by the directory again)."""
    revoke_user_sessions(user.id)
    user.groups = [g for g in user.groups if g.source != "directory"]
    audit.record(
        "auth.directory_removed",
        user.username,
        outcome="denied",
        actor="scheduler",
        details={"source": user.source, "reason": reason},
    )


def _live_ldap_users(stale_before) -> list[User]:
    live = (
        select(UserSession.user_id)
        .where(UserSession.revoked_at.is_(None), UserSession.pending_until.is_(None))
        .distinct()
    )
    return list(
        db.session.scalars(
            select(User).where(
                User.source == "ldap",
                User.id.in_(live),
                or_(User.directory_checked_at.is_(None), User.directory_checked_at < stale_before),
            )
        )
    )


def recheck(force: bool = False) -> dict:
    """Look up again, in the directory, every LDAP user with a live session who was not
    checked within the configured minutes (all of them with `force`): gone or disabled users
    lose their sessions, the others get their current groups. An unreachable directory
    changes nothing. Returns counts for the log. The caller commits."""
    provider = options.enabled("ldap")
    counts = {"checked": 0, "ended": 0, "unreachable": 0}
    if provider is None:
        return counts
    minutes = provider.options.recheck_minutes
    if minutes == 0 and not force:
        return counts
    stale_before = clock.now() if force else clock.now() - timedelta(minutes=minutes)
    secret = provider.secret()
    for user in _live_ldap_users(stale_before):
        try:
            found = ldap.lookup(provider.options, secret, user.username)
        except ldap.DirectoryUnavailable as exc:
            log.warning("directory check postponed: %s", exc)
            counts["unreachable"] += 1
            break
        counts["checked"] += 1
        if found is None or found.dn.casefold() != (user.external_id or "").casefold():
            end_access(user, "not found in the directory")
            counts["ended"] += 1
        elif found.disabled:
            end_access(user, "disabled in the directory")
            counts["ended"] += 1
        else:
            apply_groups(user, found.groups)
    return counts
