"""Check-out and check-in: one person's exclusive use of a credential for a time.

A check-out is active until its holder checks it in, its time runs out (the leader's tick,
or the next check-out of that credential, ends it as `expired`), or a manager of the
environment takes it back. At most one check-out of a credential is active: a partial unique
index (credential_id where ended_at IS NULL) refuses the second one, on SQLite and
PostgreSQL alike, whoever asks first wins. When one ends, the credential is marked as
needing rotation (rotation_due.py) and its rotation through SDDC Manager is queued at once
when SDDC Manager is free, so that the password the holder saw stops working.

Only credentials SDDC Manager holds (present, of an environment with SDDC Manager) are
checked out: the portal could not rotate the others.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..audit.sightings import credential_target
from ..models import (
    Credential,
    CredentialAction,
    CredentialActionItem,
    CredentialCheckout,
    Endpoint,
    Environment,
    PasswordHistory,
    User,
)
from ..platform import clock
from ..platform.database import changed_rows
from ..platform.extensions import db
from . import rotation_due

MIN_MINUTES = 5
MAX_MINUTES = 24 * 60
DEFAULT_MINUTES = 60
MAX_REASON = 1000
END_REASONS = {"checkin": "checkin", "expired": "checkout_expired", "taken_back": "taken_back"}


class CheckoutError(Exception):
    """A check-out, check-in or take-back that cannot be done now (409), with what the caller
    should know (who holds it, until when)."""

    def __init__(self, message: str, details: dict | None = None, status: int = 409):
        super().__init__(message)
        self.details = details or {}
        self.status = status


def active(cred_id: int) -> CredentialCheckout | None:
    """The credential's active check-out (not ended), if any."""
    return db.session.scalar(
        select(CredentialCheckout).where(
            CredentialCheckout.credential_id == cred_id, CredentialCheckout.ended_at.is_(None)
        )
    )


def holder_details(checkout: CredentialCheckout) -> dict:
    """What a refusal says about a check-out held by someone else."""
    return {"held_by": checkout.holder_name, "until": clock.iso(checkout.due_at)}


def audit_name(cred: Credential) -> str:
    """How audit records name a credential (as its reveals do)."""
    env = db.session.get(Environment, cred.environment_id)
    name = env.name if env else str(cred.environment_id)
    return credential_target(name, cred.hostname, cred.username, cred.credential_type)


def _checkable(cred: Credential) -> None:
    if cred.source != "manager":
        raise CheckoutError(
            "Only SDDC Manager's credentials are checked out: the portal rotates them at "
            "check-in, and SDDC Manager does not rotate the VCF Installer's copies."
        )
    if not cred.present:
        raise CheckoutError("This credential is absent from SDDC Manager.")
    manager = db.session.scalar(
        select(Endpoint.id).where(
            Endpoint.environment_id == cred.environment_id, Endpoint.source == "manager"
        )
    )
    if manager is None:
        raise CheckoutError("This environment has no SDDC Manager configured.")
    changing = db.session.scalar(
        select(CredentialAction.id)
        .join(CredentialActionItem, CredentialActionItem.action_id == CredentialAction.id)
        .where(
            CredentialActionItem.credential_id == cred.id,
            CredentialAction.state.in_(("queued", "running")),
            CredentialAction.operation.in_(("rotate", "update", "remediate")),
        )
        .limit(1)
    )
    if changing is not None:
        # The password on screen would change under its holder: wait for the action.
        raise CheckoutError(
            f"SDDC Manager is changing this password (action {changing}): check it out once "
            "that action ends.",
            {"action_id": changing},
        )


def check_out(user: User, cred: Credential, minutes: int, reason: str) -> CredentialCheckout:
    """Give `user` exclusive use of `cred` for `minutes` (the caller commits). A check-out
    whose time ran out is ended first; one still running refuses (409, who and until when)."""
    _checkable(cred)
    current = active(cred.id)
    if current is not None and current.due_at <= clock.now():
        with suppress(CheckoutError):  # or ended meanwhile: free either way
            end(current, "expired", "system")
        current = None
    if current is not None:
        mine = current.holder_id == user.id
        message = (
            f"You hold this credential until {clock.iso(current.due_at)}."
            if mine
            else f"Checked out by {current.holder_name} until {clock.iso(current.due_at)}."
        )
        raise CheckoutError(message, holder_details(current))
    now = clock.now()
    checkout = CredentialCheckout(
        credential_id=cred.id,
        environment_id=cred.environment_id,
        holder_id=user.id,
        holder_name=user.username[:128],
        reason=reason,
        created_at=now,
        due_at=now + timedelta(minutes=minutes),
    )
    try:
        with db.session.begin_nested():  # the unique index decides between two at once
            db.session.add(checkout)
    except IntegrityError:
        winner = active(cred.id)
        details = holder_details(winner) if winner is not None else {}
        raise CheckoutError("Someone else checked this credential out just now.", details) from None
    audit.record(
        "credential.checkout",
        audit_name(cred),
        details={"checkout": checkout.id, "minutes": minutes, "until": clock.iso(checkout.due_at)},
    )
    return checkout


def end(
    checkout: CredentialCheckout, how: str, by: str, note: str | None = None
) -> Credential | None:
    """End an active check-out (`how`: checkin, expired, taken_back) and mark its credential
    as needing rotation; audited, naming the holder and who ended it. The caller commits,
    then runs the rotation queue for it (`rotate_now`)."""
    # Only one of a check-in, the job's expiry and a take-back ends it, even at once.
    ended = changed_rows(
        update(CredentialCheckout)
        .where(CredentialCheckout.id == checkout.id, CredentialCheckout.ended_at.is_(None))
        .values(ended_at=clock.now(), ended_by_name=by[:128], end_reason=how)
    )
    if ended != 1:
        raise CheckoutError("This check-out has ended already.")
    db.session.refresh(checkout)
    cred = db.session.get(Credential, checkout.credential_id)
    if cred is None:
        return None
    rotation_due.mark_due(cred, END_REASONS[how], checkout.ended_at)
    details = {"checkout": checkout.id, "holder": checkout.holder_name}
    if note:
        details["reason"] = note
    if how == "taken_back":
        audit.record("credential.checkout_take_back", audit_name(cred), details=details, actor=by)
    elif how == "expired":
        audit.record("credential.checkout_expired", audit_name(cred), details=details, actor=by)
    else:
        audit.record("credential.checkin", audit_name(cred), details=details, actor=by)
    return cred


def rotate_now(cred: Credential, requested_by: str) -> dict:
    """Queue the rotation of a credential whose check-out ended, when SDDC Manager is free
    (else the next pass of the queue does): what happened, for the answer."""
    counts = rotation_due.run(requested_by, only={cred.id})
    checkout_action = db.session.scalar(
        select(CredentialCheckout.action_id)
        .where(CredentialCheckout.credential_id == cred.id)
        .order_by(CredentialCheckout.id.desc())
        .limit(1)
    )
    return {"queued": counts["queued"] > 0, "action_id": checkout_action}


def expire_due() -> int:
    """End every check-out whose time ran out (the leader's tick); the caller commits and
    runs the rotation queue. Returns how many ended."""
    ended = 0
    for checkout in db.session.scalars(
        select(CredentialCheckout).where(
            CredentialCheckout.ended_at.is_(None), CredentialCheckout.due_at <= clock.now()
        )
    ).all():
        try:
            end(checkout, "expired", "system")
        except CheckoutError:
            continue  # ended meanwhile (checked in, taken back)
        ended += 1
    return ended


def as_dict(checkout: CredentialCheckout, cred: Credential | None = None) -> dict:
    """A check-out as the API and pages show it."""
    body = {
        "id": checkout.id,
        "credential_id": checkout.credential_id,
        "environment_id": checkout.environment_id,
        "holder": checkout.holder_name,
        "reason": checkout.reason,
        "created_at": clock.iso(checkout.created_at),
        "due_at": clock.iso(checkout.due_at),
        "state": "active" if checkout.ended_at is None else "ended",
        "ended_at": clock.iso(checkout.ended_at),
        "ended_by": checkout.ended_by_name,
        "end_reason": checkout.end_reason,
        "action_id": checkout.action_id,
    }
    if cred is not None:
        body.update(
            hostname=cred.hostname,
            username=cred.username,
            credential_type=cred.credential_type,
            needs_rotation=cred.rotation_due_since is not None,
        )
    return body


def listing(
    within: set[int] | None,
    state: str = "active",
    environment_id: int | None = None,
    credential_id: int | None = None,
    limit: int = 200,
) -> list[dict]:
    """Check-outs of the environments `within` (None: all), newest first."""
    query = select(CredentialCheckout, Credential).join(
        Credential, Credential.id == CredentialCheckout.credential_id
    )
    if within is not None:
        query = query.where(CredentialCheckout.environment_id.in_(sorted(within)))
    if state == "active":
        query = query.where(CredentialCheckout.ended_at.is_(None))
    elif state == "ended":
        query = query.where(CredentialCheckout.ended_at.is_not(None))
    if environment_id is not None:
        query = query.where(CredentialCheckout.environment_id == environment_id)
    if credential_id is not None:
        query = query.where(CredentialCheckout.credential_id == credential_id)
    rows = db.session.execute(query.order_by(CredentialCheckout.id.desc()).limit(limit)).all()
    return [as_dict(checkout, cred) for checkout, cred in rows]


def annotate(items: list[dict], user: User) -> None:
    """Add each credential item's check-out (`checkout`: who, until when, whether it is the
    user's) and its "needs rotation" state (`needs_rotation`), for lists and searches."""
    ids = [item["id"] for item in items]
    if not ids:
        return
    held = {
        c.credential_id: c
        for c in db.session.scalars(
            select(CredentialCheckout).where(
                CredentialCheckout.credential_id.in_(ids), CredentialCheckout.ended_at.is_(None)
            )
        )
    }
    due = {
        cred.id: cred
        for cred in db.session.scalars(
            select(Credential).where(
                Credential.id.in_(ids), Credential.rotation_due_since.is_not(None)
            )
        )
    }
    for item in items:
        checkout = held.get(item["id"])
        item["checkout"] = (
            {
                "id": checkout.id,
                "holder": checkout.holder_name,
                "until": clock.iso(checkout.due_at),
                "mine": checkout.holder_id == user.id,
            }
            if checkout is not None
            else None
        )
        cred = due.get(item["id"])
        item["needs_rotation"] = rotation_due.as_dict(cred) if cred is not None else None


def held_during(cred_id: int) -> list[CredentialCheckout]:
    """Every check-out of a credential, oldest first (the history shows who held which
    password when)."""
    return list(
        db.session.scalars(
            select(CredentialCheckout)
            .where(CredentialCheckout.credential_id == cred_id)
            .order_by(CredentialCheckout.created_at, CredentialCheckout.id)
        )
    )


def history_holders(cred_id: int, entries: list[dict]) -> None:
    """Tag each password history entry (history_items' dicts, by `id`) with the check-outs
    held while that value was the current one: `held_by` [{checkout_id, holder, from, until,
    end_reason}]."""
    checkouts = held_during(cred_id)
    periods = {
        row.id: (row.first_seen_at, row.changed_at)
        for row in db.session.execute(
            select(
                PasswordHistory.id, PasswordHistory.first_seen_at, PasswordHistory.changed_at
            ).where(PasswordHistory.credential_id == cred_id)
        )
    }
    now = clock.now()
    for entry in entries:
        start, stop = periods.get(entry["id"], (now, now))
        stop = stop or now
        entry["held_by"] = [
            {
                "checkout_id": c.id,
                "holder": c.holder_name,
                "from": clock.iso(c.created_at),
                "until": clock.iso(c.ended_at),
                "end_reason": c.end_reason,
            }
            for c in checkouts
            if c.created_at < stop and (c.ended_at is None or c.ended_at > start)
        ]
