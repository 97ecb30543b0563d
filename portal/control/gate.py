"""The gate: what a person still needs, now, to see a sensitive credential's password.

Every path that shows a password (reveal, copy, a former value, exports, pages and API,
sessions and tokens alike) asks `needs` first, or `withheld` for a whole export. A refusal
answers 403 with `details.needs` and is audited under the operation's name (`<action>.refused`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import g, has_app_context
from sqlalchemy import select

from .. import audit
from ..models import AccessPolicy, AccessRequest, Credential, CredentialCheckout, User
from ..platform import clock, transaction
from ..platform.clock import iso
from ..platform.extensions import db
from ..platform.http import json_error
from . import policies
from .policies import NOTHING, Match

_CACHE = policies.CACHE

NEEDS_TEXT = {
    "approval": "a second person's approval (ask for access, or break glass in an emergency)",
    "checkout": "a check-out of the credential",
}


def _matchers(environment_ids: set[int]) -> dict[int, Callable[[Any], Match]]:
    """A matcher of each environment's rules, cached for the request (or job) in progress."""
    cache: dict[int, Callable[[Any], Match]] = g.setdefault(_CACHE, {}) if has_app_context() else {}
    missing = environment_ids - set(cache)
    if missing:
        found = policies.rules_by_environment(missing)
        cache.update({env_id: policies.matcher(found[env_id]) for env_id in missing})
    return {env_id: cache[env_id] for env_id in environment_ids}


def forget() -> None:
    """Drop the rules cached for this request (after they changed)."""
    if has_app_context():
        g.pop(_CACHE, None)


def matches_for(creds: Iterable[Any]) -> dict[int, Match]:
    """What each credential's rules ask (credentials or rows with the same fields)."""
    creds = list(creds)
    matchers = _matchers({c.environment_id for c in creds})
    return {c.id: matchers[c.environment_id](c) for c in creds}


def requirements_for(creds: Iterable[Any]) -> dict[int, tuple[str, ...]]:
    """What each credential's rule requires (empty: not sensitive)."""
    return {cred_id: m.requires for cred_id, m in matches_for(creds).items()}


def match(cred: Credential) -> Match:
    """What one credential's rules ask."""
    return matches_for([cred]).get(cred.id, NOTHING)


def open_window(user: User, cred: Credential) -> AccessRequest | None:
    """The user's open window on the credential: approved (or break-glass), begun, not ended,
    and opened on the password the credential has now."""
    now = clock.now()
    rows = db.session.scalars(
        select(AccessRequest).where(
            AccessRequest.credential_id == cred.id,
            AccessRequest.requester_id == user.id,
            AccessRequest.state == "approved",
            AccessRequest.opens_at <= now,
            AccessRequest.closes_at > now,
        )
    ).all()
    return next((r for r in rows if r.changed_at_approval == cred.last_changed_at), None)


def window_details(user: User, cred: Credential) -> dict:
    """For the audit of a password shown within a window: the request and who approved it
    (`break-glass` for a window opened alone); empty when the credential needs no approval."""
    if "approval" not in match(cred).requires:
        return {}
    window = open_window(user, cred)
    if window is None:
        return {}
    return {"request_id": window.id, "approver": _approver(window.kind, window.decider_name)}


def _approver(kind: str, decider: str | None) -> str:
    return "break-glass" if kind == "break_glass" else decider or ""


def windows_of(user: User, cred_ids: Iterable[int]) -> dict[int, str]:
    """The user's open windows on the credentials, each as `request:approver` (exports)."""
    wanted = sorted(set(cred_ids))
    if not wanted:
        return {}
    now = clock.now()
    rows = db.session.execute(
        select(
            AccessRequest.credential_id,
            AccessRequest.id,
            AccessRequest.kind,
            AccessRequest.decider_name,
        ).where(
            AccessRequest.credential_id.in_(wanted),
            AccessRequest.requester_id == user.id,
            AccessRequest.state == "approved",
            AccessRequest.opens_at <= now,
            AccessRequest.closes_at > now,
        )
    ).all()
    return {
        cred_id: f"{req_id}:{_approver(kind, decider)}" for cred_id, req_id, kind, decider in rows
    }


def checkout_holder(cred: Credential) -> CredentialCheckout | None:
    """The active check-out of the credential, if any (who holds it and until when)."""
    return db.session.scalar(
        select(CredentialCheckout).where(
            CredentialCheckout.credential_id == cred.id, CredentialCheckout.ended_at.is_(None)
        )
    )


def needs(user: User, cred: Credential) -> list[str]:
    """The requirements not met now for `user` to see `cred`'s password (current or
    former), in order: "approval" without an open window of theirs; "checkout" when the
    rule asks for one they do not hold (or whose time has run out), and whenever another person
    holds one."""
    required = match(cred).requires
    unmet: list[str] = []
    if "approval" in required and open_window(user, cred) is None:
        unmet.append("approval")
    holder = checkout_holder(cred)
    held_by_other = holder is not None and holder.holder_id != user.id
    # The holder's own check-out counts until its time: the job ends it within seconds, and
    # the password is then owed a rotation. Others stay refused until it has ended.
    holds = holder is not None and not held_by_other and holder.due_at > clock.now()
    if held_by_other or ("checkout" in required and not holds):
        unmet.append("checkout")
    return unmet


def refusal_details(cred: Credential, unmet: list[str]) -> dict:
    """The details of a refusal: what is needed, who holds a check-out and until when,
    whether break-glass is allowed."""
    details: dict[str, Any] = {"needs": unmet, "credential_id": cred.id}
    holder = checkout_holder(cred)
    if holder is not None:
        details["held_by"] = holder.holder_name
        details["until"] = iso(holder.due_at)
    if "approval" in unmet:
        details["break_glass"] = match(cred).break_glass
    return details


def refuse(action: str, target: str, cred: Credential, unmet: list[str]):
    """The answer to a refused password: 403 JSON with `details.needs`, audited as
    `<action>.refused` (kept, whatever the answer)."""
    details = refusal_details(cred, unmet)
    audit.record(
        f"{action}.refused",
        target,
        outcome="denied",
        details={
            "credential_id": cred.id,
            "environment_id": cred.environment_id,
            "needs": ",".join(unmet),
            **({"held_by": details["held_by"]} if "held_by" in details else {}),
        },
    )
    transaction.keep()
    wanted = "; ".join(NEEDS_TEXT[n] for n in unmet)
    return json_error(403, f"This password needs {wanted}.", details)


def in_force() -> bool:
    """Whether dual control can withhold anything now: a rule exists, or a check-out is held
    (lets a whole export skip reading its credentials' fields when nothing is sensitive)."""
    rule = db.session.scalar(select(AccessPolicy.id).limit(1))
    if rule is not None:
        return True
    held = select(CredentialCheckout.id).where(CredentialCheckout.ended_at.is_(None)).limit(1)
    return db.session.scalar(held) is not None


def withheld(
    user: User, rows: Iterable[Any], required: dict[int, tuple[str, ...]] | None = None
) -> dict[int, list[str]]:
    """Of credentials (or rows with their id, environment and matched fields), those whose
    password `user` may not see now, with what each needs: for exports. `required`: what
    their rules ask, when the caller has it already (credentials absent from it ask nothing)."""
    rows = list(rows)
    if not rows:
        return {}
    checked = db.session.execute(
        select(
            CredentialCheckout.credential_id,
            CredentialCheckout.holder_id,
            CredentialCheckout.due_at,
        ).where(CredentialCheckout.ended_at.is_(None))
    ).all()
    now = clock.now()
    held = {cred_id: holder for cred_id, holder, _ in checked}
    own = {cred_id for cred_id, holder, due in checked if holder == user.id and due > now}
    if required is None:
        required = requirements_for(rows)
    if not held and not any(required.values()):
        return {}
    windows = _window_ids(user)
    out: dict[int, list[str]] = {}
    for row in rows:
        unmet = []
        asks = required.get(row.id, ())
        if "approval" in asks and windows.get(row.id) != _changed(row):
            unmet.append("approval")
        if (row.id in held and held[row.id] != user.id) or (
            "checkout" in asks and row.id not in own
        ):
            unmet.append("checkout")
        if unmet:
            out[row.id] = unmet
    return out


def _changed(row: Any) -> Any:
    return getattr(row, "last_changed_at", None)


def _window_ids(user: User) -> dict[int, Any]:
    """The credentials the user has an open window on, with the change time it was opened on."""
    now = clock.now()
    rows = db.session.execute(
        select(AccessRequest.credential_id, AccessRequest.changed_at_approval).where(
            AccessRequest.requester_id == user.id,
            AccessRequest.state == "approved",
            AccessRequest.opens_at <= now,
            AccessRequest.closes_at > now,
        )
    ).all()
    return {cred_id: changed for cred_id, changed in rows}
