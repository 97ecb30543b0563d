"""The "needs attention" list: accounts an operator must act on, found by reading every source.

- connectivity: SDDC Manager's last expiry check could not sign in to the account
  (`connectivityStatus: ERROR`; 9.1 says why and what to do in `connectivityErrorDetails`);
- expired: the password has expired (SDDC Manager's or fleet management's `EXPIRED`);
- expiry_unknown: the source does not know when it expires (`UNKNOWN`);
- stale_spec: the VCF Installer's spec and fleet management hold the same account with
  different passwords: the spec keeps the bring-up value, fleet management the current one.

The list is worked out from what is stored, each time it is asked for. `review` compares it
with the findings already announced (`AttentionFinding`): each new one is announced once
(`credential.needs_attention`), and one that no longer holds is forgotten, so that it is
announced again if it comes back. Only present credentials count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import case, delete, func, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from ..models import AttentionFinding, Credential, Environment
from ..platform import clock
from ..platform.extensions import db
from ..platform.http import MAX_ID
from . import notifications

log = logging.getLogger("portal.alerts.attention")

KINDS = {
    "connectivity": "SDDC Manager cannot sign in with the password it holds",
    "expired": "The password has expired",
    "expiry_unknown": "The source does not know when the password expires",
    "stale_spec": "The VCF Installer's spec holds an old password",
}
Kind = Literal["connectivity", "expired", "expiry_unknown", "stale_spec"]
PER_PAGE = 100
MAX_PER_PAGE = 500


class AttentionFilters(BaseModel):
    """One environment or all (those the caller sees), one kind or all, and the page: the one
    reading of the list's query arguments, for the page and the API."""

    environment_id: int | None = Field(None, ge=1, le=MAX_ID)
    kind: Kind | None = None
    page: int = Field(1, ge=1, le=10**6)
    per_page: int = Field(PER_PAGE, ge=1, le=MAX_PER_PAGE)


PROBLEM_STATUSES = ("EXPIRED", "UNKNOWN")
# Lines of one alert that name findings; the rest are counted.
ALERT_LINES = 50
SOURCE_LABELS = {
    "manager": "SDDC Manager",
    "installer": "VCF Installer",
    "fleet": "VCF Operations fleet management",
}
# What an operator can start from the list, per kind, where the account is SDDC Manager's
# and they manage its environment: the existing actions through SDDC Manager.
MANAGER_ACTIONS = {
    "connectivity": ("remediate", "rotate"),
    "expired": ("rotate", "update"),
    "expiry_unknown": ("expiry_check",),
}

_COLUMNS = (
    Credential.id,
    Credential.environment_id,
    Credential.source,
    Credential.hostname,
    Credential.username,
    Credential.credential_type,
    Credential.account_type,
    Credential.resource_type,
    Credential.expiry_date,
    Credential.expiry_status,
    Credential.connectivity_status,
    Credential.connectivity_error,
    Credential.connectivity_remediation,
)


@dataclass(frozen=True)
class Finding:
    """One account that needs attention, and why."""

    credential_id: int
    environment_id: int
    kind: str
    source: str
    hostname: str
    username: str
    credential_type: str
    account_type: str
    resource_type: str
    expiry_date: str | None = None
    expiry_status: str | None = None
    connectivity_status: str | None = None
    message: str | None = None  # the source's own words (SDDC Manager's errorMessage)
    remediation: str | None = None  # what the source says to do (remediationMessage)
    current_source: str | None = None  # stale_spec: the source whose password is current

    @property
    def key(self) -> tuple[int, str]:
        return (self.credential_id, self.kind)


def _scope(query, column, environment_id: int | None, within: set[int] | None):
    if environment_id is not None:
        query = query.where(column == environment_id)
    if within is not None:
        query = query.where(column.in_(sorted(within)))
    return query


def _status_findings(environment_id: int | None, within: set[int] | None) -> list[Finding]:
    query = select(*_COLUMNS).where(
        Credential.present.is_(True),
        or_(
            Credential.connectivity_status == "ERROR",
            func.upper(Credential.expiry_status).in_(PROBLEM_STATUSES),
        ),
    )
    found = []
    for row in db.session.execute(_scope(query, Credential.environment_id, environment_id, within)):
        status = (row.expiry_status or "").upper()
        if row.connectivity_status == "ERROR":
            # An account SDDC Manager cannot reach has no known expiry either: one finding.
            kind = "connectivity"
        elif status == "EXPIRED":
            kind = "expired"
        else:
            kind = "expiry_unknown"
        found.append(
            _finding(
                row,
                kind,
                expiry_date=row.expiry_date,
                expiry_status=row.expiry_status,
                connectivity_status=row.connectivity_status,
                message=row.connectivity_error if kind == "connectivity" else None,
                remediation=row.connectivity_remediation if kind == "connectivity" else None,
            )
        )
    return found


def _finding(row: Any, kind: str, **facts: Any) -> Finding:
    """A finding about one stored credential (`row` of `_COLUMNS`)."""
    return Finding(
        credential_id=row.id,
        environment_id=row.environment_id,
        kind=kind,
        source=row.source,
        hostname=row.hostname,
        username=row.username,
        credential_type=row.credential_type or "",
        account_type=row.account_type or "",
        resource_type=row.resource_type or "",
        **facts,
    )


def _stale_spec_findings(environment_id: int | None, within: set[int] | None) -> list[Finding]:
    """Installer copies of accounts fleet management holds with another password (compared by
    their keyed hashes, never decrypted)."""
    fleet = aliased(Credential)
    query = select(*_COLUMNS).where(
        Credential.source == "installer",
        Credential.present.is_(True),
        Credential.password_mac.is_not(None),
        select(fleet.id)
        .where(
            fleet.environment_id == Credential.environment_id,
            fleet.source == "fleet",
            fleet.present.is_(True),
            func.lower(fleet.hostname) == func.lower(Credential.hostname),
            fleet.username == Credential.username,
            fleet.password_mac.is_not(None),
            fleet.password_mac != Credential.password_mac,
            # The same account: one type on both sides, or one side does not say.
            or_(
                fleet.credential_type == Credential.credential_type,
                fleet.credential_type == "",
                Credential.credential_type == "",
            ),
        )
        .exists(),
    )
    return [
        _finding(row, "stale_spec", current_source="fleet")
        for row in db.session.execute(
            _scope(query, Credential.environment_id, environment_id, within)
        )
    ]


def findings(environment_id: int | None = None, within: set[int] | None = None) -> list[Finding]:
    """Every finding of one environment (or all), of the environments `within` (None: all),
    sorted by environment, host, user."""
    found = _status_findings(environment_id, within) + _stale_spec_findings(environment_id, within)
    return sorted(
        found,
        key=lambda f: (f.environment_id, f.hostname.lower(), f.username, f.kind, f.credential_id),
    )


def counts(within: set[int] | None = None) -> dict[int, dict[str, int]]:
    """Per environment id, findings per kind (environments `within`; None: all), counted by
    the database (the dashboard and the metrics ask at every view and scrape)."""
    status = func.upper(Credential.expiry_status)
    kind = case(
        (Credential.connectivity_status == "ERROR", "connectivity"),
        (status == "EXPIRED", "expired"),
        else_="expiry_unknown",
    )
    query = (
        select(Credential.environment_id, kind, func.count())
        .where(
            Credential.present.is_(True),
            or_(Credential.connectivity_status == "ERROR", status.in_(PROBLEM_STATUSES)),
        )
        .group_by(Credential.environment_id, kind)
    )
    result: dict[int, dict[str, int]] = {}
    for environment_id, name, number in db.session.execute(
        _scope(query, Credential.environment_id, None, within)
    ):
        result.setdefault(environment_id, dict.fromkeys(KINDS, 0))[name] = number
    for finding in _stale_spec_findings(None, within):
        result.setdefault(finding.environment_id, dict.fromkeys(KINDS, 0))["stale_spec"] += 1
    return result


# -- what to do ----------------------------------------------------------------------------


def what_to_do(finding: Finding) -> str:
    """The portal's advice for one finding, in an operator's words."""
    source = SOURCE_LABELS.get(finding.source, finding.source)
    if finding.kind == "connectivity":
        return (
            "SDDC Manager cannot sign in to this account with the password it holds. If the "
            "password was changed on the component outside VCF, Remediate with the password "
            "the component has now; if the component is down or unreachable, bring it back, "
            "then check the expiry again. Once SDDC Manager reaches it, Rotate to set a new one."
        )
    if finding.kind == "stale_spec":
        return (
            "The VCF Installer's spec keeps the password set at bring-up; VCF Operations fleet "
            "management holds the current one. Use the fleet management copy: the spec's value "
            "no longer works. Nothing to change upstream."
        )
    if finding.kind == "expired":
        if finding.source == "manager":
            return (
                "Rotate it through SDDC Manager (or Update it with a password you choose) "
                "before it stalls SDDC Manager's tasks: an expired root or service password "
                "stops the operations that need it."
            )
        if finding.source == "fleet":
            return (
                "Update it: the portal changes it through VCF Operations fleet management's "
                "password management (VCF 9.1) with the current password it holds; on VCF 9.0 "
                "change it in fleet management, then sync."
            )
        return f"Change it where {source} manages it."
    if finding.source == "manager":
        return (
            "SDDC Manager does not know when this password expires. Check the expiry again; "
            "if it stays unknown, check that SDDC Manager reaches the component."
        )
    return (
        f"{source} does not know when this password expires: look at the account there "
        "(for a management appliance, in VCF Operations fleet management)."
    )


def entry(
    finding: Finding,
    environment_name: str,
    manage: bool,
    announced_at: str | None = None,
) -> dict:
    """The API and page shape of one finding; `manage`: the caller manages its environment."""
    actions: tuple[str, ...] = ()
    if manage and finding.source == "manager":
        actions = MANAGER_ACTIONS.get(finding.kind, ())
    elif manage and finding.source == "fleet" and finding.kind in ("expired", "expiry_unknown"):
        actions = ("update",)  # through fleet password management (VCF 9.1)
    return {
        "credential_id": finding.credential_id,
        "environment_id": finding.environment_id,
        "environment": environment_name,
        "kind": finding.kind,
        "reason": KINDS[finding.kind],
        "source": finding.source,
        "hostname": finding.hostname,
        "username": finding.username,
        "credential_type": finding.credential_type,
        "account_type": finding.account_type,
        "resource_type": finding.resource_type,
        "expiry_date": finding.expiry_date,
        "expiry_status": finding.expiry_status,
        "connectivity_status": finding.connectivity_status,
        "message": finding.message,
        "remediation_message": finding.remediation,
        "current_source": finding.current_source,
        "what_to_do": what_to_do(finding),
        "actions": list(actions),
        "announced_at": announced_at,
    }


def page(
    within: set[int] | None,
    managed: set[int] | None,
    page_number: int,
    per_page: int,
    environment_id: int | None = None,
    kind: str | None = None,
) -> dict:
    """One page of the list for a caller who sees the environments `within` and manages those
    `managed` (None: all)."""
    found = findings(environment_id, within)
    if kind is not None:
        found = [f for f in found if f.kind == kind]
    total = len(found)
    shown = found[(page_number - 1) * per_page : page_number * per_page]
    names = dict(db.session.execute(select(Environment.id, Environment.name)).all())
    announced = _announced({f.key for f in shown})
    return {
        "items": [
            entry(
                f,
                names.get(f.environment_id, str(f.environment_id)),
                managed is None or f.environment_id in managed,
                announced.get(f.key),
            )
            for f in shown
        ],
        "total": total,
        "page": page_number,
        "per_page": per_page,
        "by_kind": {k: sum(1 for f in found if f.kind == k) for k in KINDS}
        if kind is None
        else {kind: total},
    }


def _announced(keys: set[tuple[int, str]]) -> dict[tuple[int, str], str | None]:
    if not keys:
        return {}
    ids = sorted({credential_id for credential_id, _ in keys})
    rows = db.session.execute(
        select(
            AttentionFinding.credential_id, AttentionFinding.kind, AttentionFinding.first_seen_at
        ).where(AttentionFinding.credential_id.in_(ids))
    )
    return {(r[0], r[1]): clock.iso(r[2]) for r in rows if (r[0], r[1]) in keys}


# -- announcing ----------------------------------------------------------------------------


def review(environment_id: int) -> int:
    """Announce the environment's new findings once and forget those gone (in a savepoint of
    the caller's transaction; the caller commits). Returns how many were new; a failure here
    is logged and changes nothing, so that it never fails the sync or check that called it."""
    try:
        with db.session.begin_nested():
            return _review(environment_id)
    except SQLAlchemyError:
        # Another process announced the same finding at the same moment (the unique key), or
        # the database refused: the next sync or check reviews again.
        log.warning(
            "needs-attention review of environment %s failed", environment_id, exc_info=True
        )
        return 0


def _review(environment_id: int) -> int:
    current = {f.key: f for f in findings(environment_id)}
    known = {
        (row.credential_id, row.kind): row.id
        for row in db.session.execute(
            select(
                AttentionFinding.id, AttentionFinding.credential_id, AttentionFinding.kind
            ).where(AttentionFinding.environment_id == environment_id)
        )
    }
    gone = [row_id for key, row_id in known.items() if key not in current]
    for start in range(0, len(gone), 500):
        db.session.execute(
            delete(AttentionFinding).where(AttentionFinding.id.in_(gone[start : start + 500]))
        )
    new = [f for key, f in current.items() if key not in known]
    if not new:
        return 0
    now = clock.now()
    db.session.execute(
        insert(AttentionFinding),
        [
            {
                "credential_id": f.credential_id,
                "environment_id": f.environment_id,
                "kind": f.kind,
                "first_seen_at": now,
            }
            for f in new
        ],
    )
    _announce(environment_id, new)
    return len(new)


def _announce(environment_id: int, new: list[Finding]) -> None:
    env = db.session.get(Environment, environment_id)
    name = env.name if env else str(environment_id)
    per_kind = {k: sum(1 for f in new if f.kind == k) for k in KINDS}
    lines = [
        f"{len(new)} account{'s' if len(new) != 1 else ''} in environment {name} "
        "newly need attention:"
    ]
    lines += [_line(f) for f in new[:ALERT_LINES]]
    if len(new) > ALERT_LINES:
        lines.append(f"… and {len(new) - ALERT_LINES} more: see Needs attention in the portal.")
    notifications.emit(
        "credential.needs_attention",
        f"{len(new)} account{'s' if len(new) != 1 else ''} need attention: {name}",
        "\n".join(lines),
        {
            "environment": name,
            "environment_id": environment_id,
            "count": len(new),
            "kinds": {k: v for k, v in per_kind.items() if v},
            "findings": [
                {
                    "hostname": f.hostname,
                    "username": f.username,
                    "credential_type": f.credential_type,
                    "source": f.source,
                    "kind": f.kind,
                }
                for f in new[:ALERT_LINES]
            ],
        },
    )


def _line(finding: Finding) -> str:
    where = f"{finding.hostname} / {finding.username} ({finding.credential_type or '-'})"
    source = SOURCE_LABELS.get(finding.source, finding.source)
    text = f"- {where}, {source}: {KINDS[finding.kind]}"
    if finding.message:
        text += f": {finding.message}"
    if finding.remediation:
        text += f" (SDDC Manager says: {finding.remediation})"
    return text
