"""Rotate every password a person saw, for the day they leave the team: the credentials of
their "who saw what" report (portal.audit.seen) whose password they saw is still the current
one, rotated through SDDC Manager with the rotate action (actions.queue).

The rules of actions hold: one environment per action and at most 500 credentials, so the
plan is one action per environment and slice of 500, at most MAX_ACTIONS in one request (the
rest wait for the next run: those queued then count as being changed). Each credential is
planned or skipped with its reason: changed since they saw it, absent, not held by SDDC
Manager, an environment the requester does not manage or whose SDDC Manager is not set up,
or already being changed by an action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from typing import Any

from sqlalchemy import select, tuple_

from .. import audit
from ..audit import seen
from ..models import Credential, CredentialAction, CredentialActionItem, Endpoint
from ..platform.extensions import db
from . import actions

MAX_ACTIONS = 10  # per request: 5,000 credentials
_BUSY = ("queued", "running")


@dataclass
class Plan:
    """What a rotation of what a person saw does: every credential with its state (planned,
    later or skipped) and reason, and the actions it queues."""

    items: list[dict[str, Any]] = field(default_factory=list)
    batches: list[tuple[int, str, list[int]]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many credentials are planned, left for a later run, and skipped."""
        states = [item["state"] for item in self.items]
        return {state: states.count(state) for state in ("planned", "later", "skipped")}


def _item(source: dict[str, Any], state: str, reason: str | None = None) -> dict[str, Any]:
    keys = ("credential_id", "environment_id", "environment", "hostname", "username")
    return {
        **{key: source[key] for key in keys},
        "credential_type": source["credential_type"],
        "state": state,
        "reason": reason,
    }


def _twins(items: list[dict[str, Any]]) -> dict[int, int]:
    """For VCF Installer copies: SDDC Manager's copy of the same account with the same
    password (the one to rotate), by the installer copy's id."""
    ids = [i["credential_id"] for i in items if i["source"] == "installer"]
    if not ids:
        return {}
    copies = db.session.scalars(select(Credential).where(Credential.id.in_(ids))).all()
    keys = {(c.environment_id, c.hostname, c.username, c.credential_type): c for c in copies}
    columns = (
        Credential.environment_id,
        Credential.hostname,
        Credential.username,
        Credential.credential_type,
    )
    twins: dict[int, int] = {}
    for found in db.session.scalars(
        select(Credential).where(Credential.source == "manager", tuple_(*columns).in_(keys))
    ):
        copy = keys[(found.environment_id, found.hostname, found.username, found.credential_type)]
        if found.present and copy.password_mac is not None:
            if found.password_mac == copy.password_mac:
                twins[copy.id] = found.id
    return twins


def _busy(ids: list[int]) -> dict[int, int]:
    """Credentials already in a queued or running action, with that action's id."""
    busy: dict[int, int] = {}
    for start in range(0, len(ids), seen.CHUNK):
        rows = db.session.execute(
            select(CredentialActionItem.credential_id, CredentialAction.id)
            .join(CredentialAction, CredentialAction.id == CredentialActionItem.action_id)
            .where(
                CredentialAction.state.in_(_BUSY),
                CredentialAction.operation.in_(("rotate", "update")),
                CredentialActionItem.credential_id.in_(ids[start : start + seen.CHUNK]),
            )
        )
        busy.update({cred_id: action_id for cred_id, action_id in rows if cred_id is not None})
    return busy


def _reason(item: dict[str, Any], manageable: set[int] | None, managed: set[int]) -> str | None:
    if item["credential_id"] is None:
        return "No credential in the portal matches this record."
    if item["status"] == "purged":
        return "Purged from the portal."
    if not item["still_current"]:
        return "Changed since they saw it."
    if item["source"] != "manager":
        return "The VCF Installer's copy: SDDC Manager holds no account with that password."
    if item["status"] != "present":
        return "Absent from SDDC Manager."
    if manageable is not None and item["environment_id"] not in manageable:
        return "You do not manage this environment."
    if item["environment_id"] not in managed:
        return "This environment has no SDDC Manager configured."
    return None


def plan(
    person: str,
    since: date | None,
    until: date | None,
    scope: set[int] | None,
    manageable: set[int] | None,
) -> Plan:
    """What rotating the passwords `person` saw from `since` to `until` would do, for a
    requester who reads the report of `scope` and manages `manageable` (None: all)."""
    items = seen.report(person, since, until, scope)["items"]
    result = Plan()
    candidates = _candidates(items, manageable, result)
    busy = _busy(sorted({target["credential_id"] for _, target in candidates}))
    chosen: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    taken: set[int] = set()
    for item, target in candidates:
        cred_id = target["credential_id"]
        if cred_id in busy:
            reason = f"Already being changed by action {busy[cred_id]}."
            result.items.append(_item(item, "skipped", reason))
        elif cred_id in taken:
            result.items.append(_item(item, "skipped", "SDDC Manager's copy is listed already."))
        else:
            taken.add(cred_id)
            chosen.setdefault(target["environment_id"], []).append(cred_id)
            names[target["environment_id"]] = target["environment"]
            result.items.append(_item(target, "planned"))
    slices = (
        (env_id, names[env_id], ids[start : start + actions.MAX_ITEMS])
        for env_id, ids in sorted(chosen.items(), key=lambda pair: names[pair[0]])
        for start in range(0, len(ids), actions.MAX_ITEMS)
    )
    result.batches = list(islice(slices, MAX_ACTIONS))
    queued = {cred_id for _, _, ids in result.batches for cred_id in ids}
    for entry in result.items:
        if entry["state"] == "planned" and entry["credential_id"] not in queued:
            entry["state"] = "later"
            entry["reason"] = f"Over {MAX_ACTIONS} actions in one go: run it again for these."
    return result


def _candidates(
    items: list[dict[str, Any]], manageable: set[int] | None, result: Plan
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The report's items that can be rotated, each with the item to rotate (SDDC Manager's
    copy for a VCF Installer one); the others are added to `result` as skipped."""
    twins = _twins([i for i in items if i["still_current"]])
    by_id = {i["credential_id"]: i for i in items if i["credential_id"] is not None}
    missing = [twin for twin in twins.values() if twin not in by_id]
    extra = {
        c.id: c for c in db.session.scalars(select(Credential).where(Credential.id.in_(missing)))
    }
    managed = set(
        db.session.scalars(select(Endpoint.environment_id).where(Endpoint.source == "manager"))
    )
    candidates = []
    for item in items:
        target = item
        twin = twins.get(item["credential_id"])
        if twin is not None:
            target = by_id.get(twin) or _from(extra[twin], item)
        reason = _reason(target, manageable, managed)
        if reason is not None:
            result.items.append(_item(item, "skipped", reason))
        else:
            candidates.append((item, target))
    return candidates


def _from(cred: Credential, like: dict[str, Any]) -> dict[str, Any]:
    """A report item for SDDC Manager's copy of an account the report holds as another's."""
    return {
        **like,
        "credential_id": cred.id,
        "source": cred.source,
        "status": "present" if cred.present else "absent",
    }


def queue(requested_by: str, person: str, the_plan: Plan, period: dict[str, str]) -> list[dict]:
    """Queue the plan's actions (the caller commits, then wakes the scheduler); audited as
    one record naming the person, beside the actions' own records per credential."""
    queued = []
    for env_id, environment, ids in the_plan.batches:
        action = actions.queue(requested_by, "rotate", ids)
        queued.append(
            {
                "id": action.id,
                "environment_id": env_id,
                "environment": environment,
                "credentials": len(ids),
            }
        )
    audit.record(
        "credential.rotate_seen",
        person,
        details={
            **period,
            "actions": ",".join(str(a["id"]) for a in queued),
            **the_plan.counts(),
        },
    )
    return queued
