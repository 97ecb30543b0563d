"""Four eyes: a person asks for access to a sensitive credential, another approves or denies;
an approval opens a window in which only the requester may see the password. Break-glass
opens the window alone, alerting every possible approver, and owes a rotation when it closes.

Services take the actor explicitly and never commit; every step is audited naming both
people, and told through the alert channels.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select, update

from .. import audit
from ..access import grants
from ..alerts import notifications
from ..audit.sightings import credential_target
from ..models import AccessRequest, Credential, Environment, User
from ..platform import clock
from ..platform.clock import iso
from ..platform.extensions import db
from ..platform.security import MAX_PASSWORD
from . import gate

# The longest window a request may ask for, and how long a request waits for a decision.
MAX_MINUTES = 480
PENDING_HOURS = 24
OPEN_STATES = ("pending", "approved")


class RequestError(Exception):
    """A step that cannot be taken: its HTTP status, message and field (if any)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field


class AccessRequestIn(BaseModel):
    """A request for access to one credential's password."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="Why access is needed")
    minutes: int = Field(ge=1, le=MAX_MINUTES, description="How long the window stays open")
    ticket: str | None = Field(None, max_length=128, description="A ticket reference")
    break_glass: bool = Field(
        False,
        description="An emergency: open the window at once, without an approver (every "
        "possible approver is alerted; the credential is rotated when the window closes)",
    )
    confirm_password: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PASSWORD,
        description="break_glass from a session signed in over 15 minutes ago: the password",
        json_schema_extra={"writeOnly": True},
    )

    @field_validator("reason", "ticket")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return _text(value)

    @field_validator("ticket")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "\n\t"):
            raise ValueError("one line: no line breaks or tabs")
        return value or None

    @field_validator("reason")
    @classmethod
    def _given(cls, value: str) -> str:
        if not value:
            raise ValueError("a reason is needed")
        return value


class DecisionIn(BaseModel):
    """An approver's decision, or the end of a window, with its reason."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=1000)

    @field_validator("reason")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return _text(value) or None


def _text(value: str | None) -> str | None:
    """Free text trimmed; control characters refused (line breaks and tabs allowed)."""
    if value is None:
        return None
    value = value.strip()
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in value):
        raise ValueError("no control characters")
    return value


def target_of(cred: Credential) -> str:
    env = db.session.get(Environment, cred.environment_id)
    name = env.name if env else str(cred.environment_id)
    return credential_target(name, cred.hostname, cred.username, cred.credential_type)


def may_approve(user: User, environment_id: int) -> bool:
    """The approve level (or manage, or admin) on the environment."""
    return grants.at_least(grants.level(user, environment_id), "approve")


def approvers(environment_id: int, besides: int | None = None) -> list[str]:
    """Everyone who may approve requests in the environment (enabled accounts), but one."""
    return grants.usernames_at_least(environment_id, "approve", besides)


def request_dict(req: AccessRequest, cred: Credential | None = None) -> dict:
    """The API shape of a request (never a password)."""
    cred = cred or db.session.get(Credential, req.credential_id)
    return {
        "id": req.id,
        "credential_id": req.credential_id,
        "environment_id": req.environment_id,
        "credential": target_of(cred) if cred else "",
        "hostname": cred.hostname if cred else "",
        "username": cred.username if cred else "",
        "requester": req.requester_name,
        "kind": req.kind,
        "reason": req.reason,
        "ticket": req.ticket,
        "minutes": req.minutes,
        "state": req.state,
        "created_at": iso(req.created_at),
        "decided_at": iso(req.decided_at),
        "decider": req.decider_name,
        "decision_reason": req.decision_reason,
        "opens_at": iso(req.opens_at),
        "closes_at": iso(req.closes_at),
        "closed_reason": req.closed_reason,
        "open": _is_open(req, cred),
    }


def _is_open(req: AccessRequest, cred: Credential | None) -> bool:
    now = clock.now()
    return bool(
        req.state == "approved"
        and cred is not None
        and req.opens_at is not None
        and req.closes_at is not None
        and req.opens_at <= now < req.closes_at
        and req.changed_at_approval == cred.last_changed_at
    )


def details_of(req: AccessRequest, **extra) -> dict:
    return {
        "request_id": req.id,
        "credential_id": req.credential_id,
        "environment_id": req.environment_id,
        "requester": req.requester_name,
        **({"decider": req.decider_name} if req.decider_name else {}),
        **extra,
    }


def _alert(kind: str, subject: str, req: AccessRequest, cred: Credential, text: str) -> None:
    notifications.emit(
        kind,
        subject,
        text,
        {
            "request_id": req.id,
            "credential": target_of(cred),
            "requester": req.requester_name,
            "decider": req.decider_name,
            "approvers": approvers(req.environment_id, besides=req.requester_id),
            "closes_at": iso(req.closes_at),
        },
    )


def _live(cred: Credential, user: User) -> AccessRequest | None:
    """The user's pending request or open window on the credential."""
    now = clock.now()
    return db.session.scalar(
        select(AccessRequest).where(
            AccessRequest.credential_id == cred.id,
            AccessRequest.requester_id == user.id,
            AccessRequest.state.in_(OPEN_STATES),
            AccessRequest.closes_at > now,
        )
    )


def live_for(user: User, cred_ids: list[int]) -> dict[int, dict]:
    """The user's pending request or open window on each of the credentials (for their
    rows): `{"request_id", "state": "pending"|"open", "closes_at"}`."""
    if not cred_ids:
        return {}
    now = clock.now()
    rows = db.session.scalars(
        select(AccessRequest)
        .where(
            AccessRequest.credential_id.in_(sorted(set(cred_ids))),
            AccessRequest.requester_id == user.id,
            AccessRequest.state.in_(OPEN_STATES),
            AccessRequest.closes_at > now,
        )
        .order_by(AccessRequest.id)
    ).all()
    return {
        r.credential_id: {
            "request_id": r.id,
            "state": "pending" if r.state == "pending" else "open",
            "kind": r.kind,
            "closes_at": iso(r.closes_at),
        }
        for r in rows
    }


def create(user: User, cred: Credential, body: AccessRequestIn) -> AccessRequest:
    """A request for access (pending), or a break-glass window (open at once)."""
    rule = gate.match(cred)
    if "approval" not in rule.requires:
        raise RequestError(409, "This credential needs no approval.")
    if _live(cred, user) is not None:
        raise RequestError(409, "You already have a pending request or an open window on it.")
    if body.break_glass and not rule.break_glass:
        raise RequestError(403, "Break-glass is turned off for this credential.", "break_glass")
    now = clock.now()
    req = AccessRequest(
        credential_id=cred.id,
        environment_id=cred.environment_id,
        requester_id=user.id,
        requester_name=user.username,
        kind="break_glass" if body.break_glass else "approval",
        reason=body.reason,
        ticket=body.ticket or None,
        minutes=body.minutes,
        created_at=now,
    )
    if body.break_glass:
        _open(req, cred, now)
    else:
        req.state = "pending"
        req.closes_at = now + timedelta(hours=PENDING_HOURS)
    db.session.add(req)
    db.session.flush()
    target = target_of(cred)
    extra = {"minutes": body.minutes, "reason": body.reason, "ticket": body.ticket or ""}
    if body.break_glass:
        audit.record("access.break_glass", target, details=details_of(req, **extra))
        _alert(
            "access.break_glass",
            f"Break-glass: {user.username} opened {target}",
            req,
            cred,
            f"{user.username} opened access to {target} alone, for {body.minutes} minutes, "
            f"without approval. Reason: {body.reason}. The password is rotated when the "
            "window closes.",
        )
    else:
        audit.record("access.request", target, details=details_of(req, **extra))
        _alert(
            "access.requested",
            f"{user.username} asks for access to {target}",
            req,
            cred,
            f"{user.username} asks for {body.minutes} minutes of access to {target}. "
            f"Reason: {body.reason}.",
        )
    return req


def _open(req: AccessRequest, cred: Credential, now) -> None:
    req.state = "approved"
    req.opens_at = now
    req.closes_at = now + timedelta(minutes=req.minutes)
    req.changed_at_approval = cred.last_changed_at


def _pending_for_decision(user: User, req: AccessRequest) -> Credential:
    if req.requester_id == user.id:
        raise RequestError(403, "Nobody approves or denies their own request.")
    if not may_approve(user, req.environment_id):
        raise RequestError(403, "This needs the approve level on the credential's environment.")
    if req.state != "pending" or (req.closes_at is not None and req.closes_at <= clock.now()):
        raise RequestError(409, f"The request is {_state_now(req)}, not pending.")
    cred = db.session.get(Credential, req.credential_id)
    if cred is None:  # deleted with its credential (cascade): only a race ends here
        raise RequestError(404, "No such credential.")
    return cred


def _claim(req: AccessRequest, was: str, becomes: str) -> None:
    """Move the request from state `was` to `becomes` in the database itself, only if it is
    still `was` there: of two people deciding or ending it at once, the second waits for the
    first and then finds nothing to change (409)."""
    moved = db.session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == req.id, AccessRequest.state == was)
        .values(state=becomes)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        db.session.refresh(req)
        raise RequestError(409, f"Someone else got there first: the request is {req.state}.")
    req.state = becomes


def _state_now(req: AccessRequest) -> str:
    if req.state == "pending" and req.closes_at is not None and req.closes_at <= clock.now():
        return "expired"
    return req.state


def approve(user: User, req: AccessRequest, reason: str | None) -> AccessRequest:
    """Approve a pending request: its window opens now, for the minutes asked."""
    cred = _pending_for_decision(user, req)
    now = clock.now()
    _claim(req, "pending", "approved")
    req.decided_at = now
    req.decider_id = user.id
    req.decider_name = user.username
    req.decision_reason = reason or None
    _open(req, cred, now)
    target = target_of(cred)
    audit.record(
        "access.approve", target, details=details_of(req, minutes=req.minutes, reason=reason or "")
    )
    _alert(
        "access.approved",
        f"{user.username} approved {req.requester_name}'s access to {target}",
        req,
        cred,
        f"{user.username} approved {req.requester_name}'s access to {target} for "
        f"{req.minutes} minutes.",
    )
    return req


def deny(user: User, req: AccessRequest, reason: str | None) -> AccessRequest:
    """Deny a pending request, with a reason."""
    if not reason:
        raise RequestError(422, "A denial needs a reason.", "reason")
    cred = _pending_for_decision(user, req)
    _claim(req, "pending", "denied")
    req.decided_at = clock.now()
    req.decider_id = user.id
    req.decider_name = user.username
    req.decision_reason = reason
    target = target_of(cred)
    audit.record("access.deny", target, details=details_of(req, reason=reason))
    _alert(
        "access.denied",
        f"{user.username} denied {req.requester_name}'s access to {target}",
        req,
        cred,
        f"{user.username} denied {req.requester_name}'s access to {target}. Reason: {reason}.",
    )
    return req


def revoke(user: User, req: AccessRequest, reason: str | None) -> AccessRequest:
    """End a request early: the requester cancels theirs or closes their window; an approver
    of the environment (or an admin) revokes someone's window or request."""
    own = req.requester_id == user.id
    if not own and not may_approve(user, req.environment_id):
        raise RequestError(403, "This needs the approve level on the credential's environment.")
    now = clock.now()
    if req.state not in OPEN_STATES or (req.closes_at is not None and req.closes_at <= now):
        raise RequestError(409, f"The request is {_state_now(req)}: nothing to end.")
    cred = db.session.get(Credential, req.credential_id)
    was_pending = req.state == "pending"
    if was_pending:
        _claim(req, "pending", "cancelled" if own else "denied")
        if not own:
            req.decided_at, req.decider_id, req.decider_name = now, user.id, user.username
            req.decision_reason = reason or "revoked"
    else:
        _claim(req, "approved", "closed" if own else "revoked")
        req.closes_at = min(req.closes_at or now, now)
    req.closed_reason = "ended by the requester" if own else f"revoked by {user.username}"
    if cred is not None and not was_pending and req.kind == "break_glass":
        owe_rotation(cred, now)  # whatever the password is now: the requester may know it
    audit.record(
        "access.revoke",
        target_of(cred) if cred else str(req.credential_id),
        details=details_of(req, by=user.username, state=req.state, reason=reason or ""),
    )
    return req


def owe_rotation(cred: Credential, now) -> None:
    """Mark the credential rotation due after a break-glass window (kept if already due)."""
    if cred.rotation_due_since is None:
        cred.rotation_due_since = now
        cred.rotation_due_reason = "break_glass"


def visible(user: User, req: AccessRequest) -> bool:
    """Whether the user may see the request: their own, or one they may decide on."""
    return req.requester_id == user.id or may_approve(user, req.environment_id)


def listing(user: User, state: str | None, mine: bool, limit: int = 200) -> list[dict]:
    """Requests the user may see, newest first: their own (mine) or, else, those of the
    environments they may approve in as well as their own."""
    query = select(AccessRequest).order_by(AccessRequest.id.desc()).limit(limit)
    if state == "open":
        query = query.where(
            AccessRequest.state == "approved", AccessRequest.closes_at > clock.now()
        )
    elif state is not None:
        query = query.where(AccessRequest.state == state)
    if state == "pending":
        query = query.where(AccessRequest.closes_at > clock.now())
    if mine:
        query = query.where(AccessRequest.requester_id == user.id)
    else:
        scope = grants.visible_environment_ids(user, "approve")
        if scope is not None:
            query = query.where(
                (AccessRequest.requester_id == user.id)
                | AccessRequest.environment_id.in_(sorted(scope))
            )
    rows = db.session.scalars(query).all()
    creds = {
        c.id: c
        for c in db.session.scalars(
            select(Credential).where(Credential.id.in_({r.credential_id for r in rows}))
        )
    }
    return [request_dict(r, creds.get(r.credential_id)) for r in rows]


def inbox_counts(user: User) -> tuple[int, int]:
    """What waits for the user as an approver (never their own): pending requests they may
    decide, and break-glass windows open now that they may review and revoke. One query."""
    scope = grants.visible_environment_ids(user, "approve")
    if scope is not None and not scope:
        return 0, 0
    now = clock.now()
    glass = (AccessRequest.state == "approved") & (AccessRequest.kind == "break_glass")
    query = select(
        func.count().filter(AccessRequest.state == "pending"),
        func.count().filter(glass),
    ).where(
        AccessRequest.state.in_(OPEN_STATES),
        AccessRequest.closes_at > now,
        (AccessRequest.state == "pending") | (AccessRequest.opens_at <= now),
        (AccessRequest.requester_id != user.id) | AccessRequest.requester_id.is_(None),
    )
    if scope is not None:
        query = query.where(AccessRequest.environment_id.in_(sorted(scope)))
    pending, opened = db.session.execute(query).one()
    return int(pending), int(opened)


def inbox_count(user: User) -> int:
    """What the top bar counts for the user: pending requests they may decide and others'
    break-glass windows open now."""
    return sum(inbox_counts(user))
