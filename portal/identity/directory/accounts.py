"""Portal accounts of directory and OpenID Connect users: created at the first sign-in (just in
time), their directory groups applied at every sign-in, and their access ended when the
directory no longer knows them.

A directory group gives access through a portal group of the same name (compared without
regard to case) whose source is the same ("ldap" or "oidc"): the admin creates that group,
maps it to a role and grants it environments; its members are whoever the directory or the
provider names at sign-in. Local groups are never changed here. Callers commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from ... import audit
from ...models import ApiToken, Group, User, UserSession
from ...platform import clock
from ...platform.extensions import db
from ..sessions import revoke_user_sessions
from ..tokens import revoke_all as revoke_tokens
from ..users import USERNAME_RE
from . import ldap, options
from .account_state import AccountState

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


def _by_identity(identity: Identity) -> User | None:
    return db.session.scalar(
        select(User).where(User.source == identity.source, User.external_id == identity.external_id)
    )


def account_for(identity: Identity) -> User:
    """The portal account of this identity (by its source's stable id), created on first
    sign-in with the role `member` (only groups and grants give access). Raises
    AccountRefused when the name belongs to another account (a local one, another source's,
    or an earlier entry of the same directory), or the account is disabled here."""
    user = _by_identity(identity)
    if user is None:
        if not USERNAME_RE.match(identity.username):
            raise AccountRefused(
                "Your user name cannot be used here: the portal takes 2 to 64 ASCII letters, "
                "digits, dot, dash, underscore or @ (not letters such as ü, so that no "
                "look-alike name can take another account). Ask an administrator."
            )
        taken = db.session.scalar(
            select(User.id).where(func.lower(User.username) == identity.username.lower())
        )
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
        try:
            with db.session.begin_nested():  # a parallel first sign-in may have made it
                db.session.add(user)
        except IntegrityError:
            user = _by_identity(identity)
            if user is None:
                raise AccountRefused(
                    f"The user name {identity.username} belongs to another portal account. "
                    "Ask an administrator."
                ) from None
        else:
            audit.record(
                "user.create",
                user.username,
                actor=user.username,
                details={"role": "member", "source": identity.source},
            )
    if user.disabled:
        raise AccountRefused("This account is disabled in the portal. Ask an administrator.")
    follow_rename(user, identity.username)
    return user


def current_entry(directory: ldap.Directory, user: User) -> ldap.Entry | None:
    """The user's entry as the directory holds it now: looked up by its stable id (objectGUID,
    entryUUID, DN), so a rename in the directory keeps the account; by the portal name only
    for a key that cannot be searched, and then only when the ids match."""
    entry = directory.find_by_key(user.external_id or "")
    if entry is None and (user.external_id or "").startswith("dn-sha256:"):
        entry = directory.find(user.username)
    if entry is None or entry.stable_id != user.external_id:
        return None
    return entry


def follow_rename(user: User, name: str) -> None:
    """The directory renamed the user (same entry, new name): the portal name follows, unless
    the new name is not usable here or belongs to another account (then it stays, logged).
    Audited with both names."""
    if not name or name == user.username:
        return
    taken = db.session.scalar(
        select(User.id).where(func.lower(User.username) == name.lower(), User.id != user.id)
    )
    if not USERNAME_RE.match(name) or taken is not None:
        log.warning("a directory rename of %s to %s was not followed", user.username, name)
        return
    audit.record(
        "user.rename",
        name,
        actor="directory",
        details={"from": user.username, "to": name, "source": user.source},
    )
    user.username = name


def ldap_password_check(user: User, typed: str) -> bool | None:
    """For a re-typed password of an LDAP user: True when the directory accepts it, False
    when it refuses it, None when it cannot be asked (the caller must not count that)."""
    provider = options.enabled("ldap")
    if provider is None or user.source != "ldap":
        return None
    try:
        with ldap.Directory(provider.options, provider.secret()) as directory:
            entry = current_entry(directory, user)
            if entry is None:
                return False
            return directory.password_ok(entry, typed)
    except AccountState as state:
        log.warning("password check of %s: %s", user.username, state.reason)
        return None  # right, or at least not wrong: never counted
    except (ldap.DirectoryUnavailable, ldap.SearchFailed) as exc:
        log.warning("password check impossible: %s", exc)
        return None


@dataclass
class LookupResult:
    """What the settings' Test found: the user, the portal groups their groups fill, or why
    not (`unreachable` when the directory could not be used at all)."""

    found: ldap.DirectoryUser | None
    portal_groups: list[str]
    error: str | None = None
    unreachable: bool = False
    unconfigured: bool = False  # no server to ask: nothing was tried


def lookup_for_test(username: str) -> LookupResult:
    """Look a user up with the stored LDAP settings (on or off) as a sign-in would, without
    their password; audited (the caller commits)."""
    provider = options.load("ldap")
    if not provider.options.urls:
        return LookupResult(
            None, [], "No LDAP server is configured: save the servers first.", unconfigured=True
        )
    try:
        found = ldap.lookup(provider.options, provider.secret(), username)
    except ldap.DirectoryUnavailable as exc:
        result = LookupResult(None, [], f"The directory cannot be used: {exc}", unreachable=True)
    else:
        groups = [g.name for g in matching("ldap", found.groups)] if found else []
        error = None if found else "The user filter finds no entry (or several) for this name."
        result = LookupResult(found, groups, error)
    outcome = "success" if result.found else "failure"
    audit.record("settings.ldap_test", username[:128], outcome=outcome)
    return result


def directory_groups(source: str) -> list[Group]:
    """The portal groups filled from the group names of `source` ("ldap" or "oidc")."""
    return list(db.session.scalars(select(Group).where(Group.source == source)))


def matching(source: str, names: list[str]) -> list[Group]:
    """The portal groups of `source` named (without regard to case) in `names`."""
    wanted = {name.casefold() for name in names}
    return [g for g in directory_groups(source) if g.name.casefold() in wanted]


def apply_groups(user: User, names: list[str]) -> list[str]:
    """Make the user a member of exactly the portal groups of their source named in `names`;
    local groups are left alone. Audited when it changes. Returns the portal groups (all
    sources) the user is now a member of."""
    before = sorted(g.name for g in user.groups if g.source == user.source)
    keep = [g for g in user.groups if g.source != user.source]
    matched = matching(user.source, names)
    groups = sorted(keep + matched, key=lambda g: g.name)
    user.groups = groups
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
    return [g.name for g in groups]


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
    """The directory no longer knows the user, or has disabled them: end their sessions,
    revoke their API tokens and take their directory groups (the account stays, for the
    audit trail; a new sign-in is checked by the directory again)."""
    revoke_user_sessions(user.id)
    revoke_tokens(user, reason, actor="scheduler")
    user.groups = [g for g in user.groups if g.source != user.source]
    audit.record(
        "auth.directory_removed",
        user.username,
        outcome="denied",
        actor="scheduler",
        details={"source": user.source, "reason": reason},
    )


def _active_ldap_users(stale_before) -> list[User]:
    """LDAP users with a live session or a usable API token, not checked since
    `stale_before`; the longest unchecked first."""
    now = clock.now()
    live = select(UserSession.user_id).where(
        UserSession.revoked_at.is_(None), UserSession.pending_until.is_(None)
    )
    tokens = select(ApiToken.user_id).where(
        ApiToken.revoked_at.is_(None), ApiToken.expires_at > now
    )
    return list(
        db.session.scalars(
            select(User)
            .where(
                User.source == "ldap",
                User.disabled.is_(False),
                or_(User.id.in_(live), User.id.in_(tokens)),
                or_(User.directory_checked_at.is_(None), User.directory_checked_at < stale_before),
            )
            .order_by(User.directory_checked_at.is_not(None), User.directory_checked_at)
        )
    )


def recheck(force: bool = False) -> dict:
    """Look up again, in the directory, every LDAP user with a live session or API token who
    was not checked within the configured minutes (all of them with `force`): gone or
    disabled users lose their sessions and tokens, the others get their current groups. An
    unreachable directory changes nothing; a user whose lookup fails is tried again at the
    next pass. Returns counts for the log. The caller commits."""
    provider = options.enabled("ldap")
    counts = {"checked": 0, "ended": 0, "failed": 0, "unreachable": 0}
    if provider is None:
        return counts
    minutes = provider.options.recheck_minutes
    if minutes == 0 and not force:
        return counts
    stale_before = clock.now() if force else clock.now() - timedelta(minutes=minutes)
    due = _active_ldap_users(stale_before)
    if not due:
        return counts
    try:
        directory = ldap.Directory(provider.options, provider.secret())
    except ldap.DirectoryUnavailable as exc:
        log.warning("directory check postponed: %s", exc)
        counts["unreachable"] = len(due)
        return counts
    with directory:
        for user in due:
            try:
                entry = current_entry(directory, user)
                found = directory.describe(entry) if entry is not None else None
            except ldap.SearchFailed as exc:
                log.warning("directory check of one user failed: %s", exc)
                counts["failed"] += 1
                continue
            except ldap.DirectoryUnavailable as exc:
                log.warning("directory check interrupted: %s", exc)
                counts["unreachable"] += 1
                break
            counts["checked"] += 1
            if found is None or found.stable_id != user.external_id:
                end_access(user, "not found in the directory")
                counts["ended"] += 1
            elif found.disabled:
                end_access(user, "disabled in the directory")
                counts["ended"] += 1
            else:
                follow_rename(user, found.username)
                apply_groups(user, found.groups)
    return counts
