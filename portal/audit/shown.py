"""The audit records that showed passwords, and the credentials each one showed.

A record names its credential by id (reveals, copies and former values since migration 0016),
by its history entry (former values), by its target text (older reveals and copies), or by
the list of its export (portal.audit.sightings). `Resolver` reads each in turn; see
portal.audit.seen for what the report makes of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, select

from ..models import (
    AuditEvent,
    Credential,
    CredentialSighting,
    Environment,
    PasswordHistory,
    PortalMeta,
)
from ..platform.extensions import db
from .sightings import (
    ALL_ENVIRONMENTS,
    KINDS,
    Ranges,
    credential_target,
    decode,
    digest,
    expand,
)

LEGACY_META = "seen.legacy_until"  # records up to this id name credentials only by text
CHUNK = 900  # ids per IN (...) query
# The days a period may name; the last stops short of date.max, so the day after exists.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(9998, 12, 31)


@dataclass
class Record:
    """One audit record that showed passwords."""

    id: int
    at: datetime
    actor: str
    kind: str
    target: str
    details: dict
    sighting: CredentialSighting | None


def details_of(text: str | None) -> dict:
    """A record's details as a mapping (empty when there are none or they do not parse)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def number(value: Any) -> int | None:
    """A positive id from a record's details (stored as text), or None."""
    try:
        found = int(value)
    except (TypeError, ValueError):
        return None
    return found if found > 0 else None


def records(query: Select) -> list[Record]:
    """The records `query` selects (of the actions in KINDS), with their sightings."""
    rows = db.session.execute(
        query.add_columns(CredentialSighting)
        .outerjoin(CredentialSighting, CredentialSighting.event_id == AuditEvent.id)
        .order_by(AuditEvent.id)
    ).all()
    return [
        Record(e.id, e.at, e.actor, KINDS[e.action], e.target, details_of(e.details), sighting)
        for e, sighting in rows
    ]


def legacy_until() -> int:
    """The newest record written before records named credentials by id."""
    row = db.session.get(PortalMeta, LEGACY_META)
    if row is None:
        return 0
    return number(row.value) or 0


class Resolver:
    """The credentials an audit record showed, and how that is known."""

    def __init__(self) -> None:
        rows = db.session.execute(select(Environment.id, Environment.name))
        self.environments = {name: env_id for env_id, name in rows}
        self.entries: dict[int, tuple[int, bool]] = {}
        self._by_name: dict[str, list[int]] = {}

    def load_entries(self, records: Iterable[Record]) -> None:
        """Read the history entries of former-value reveals: their credential and whether
        the value is still the current one."""
        wanted = sorted({n for r in records if r.kind == "former" for n in entry_ids(r)})
        for start in range(0, len(wanted), CHUNK):
            rows = db.session.execute(
                select(
                    PasswordHistory.id, PasswordHistory.credential_id, PasswordHistory.changed_at
                ).where(PasswordHistory.id.in_(wanted[start : start + CHUNK]))
            )
            for entry_id, credential_id, changed_at in rows:
                self.entries[entry_id] = (credential_id, changed_at is None)

    def export_list(self, record: Record) -> Ranges | None:
        """The recorded list of an export, when it is there and matches its sealed digest."""
        listed = record.sighting.credential_ids if record.sighting is not None else None
        if listed is None or record.details.get("list_sha256") != digest(listed):
            return None
        try:
            return decode(listed)
        except ValueError:
            return None

    def export_environments(self, record: Record) -> set[int] | None:
        """The environments an unrecorded export covered: its own, or all (None); an empty set
        when the environment is no longer known by that name."""
        if record.target == ALL_ENVIRONMENTS:
            return None
        env_id = self.environments.get(record.target)
        return {env_id} if env_id is not None else set()

    def estimate(self, record: Record) -> list[int]:
        """Every credential the export's environments held at its time."""
        within = self.export_environments(record)
        if within is not None and not within:
            return []
        query = select(Credential.id).where(Credential.first_seen_at <= record.at)
        if within is not None:
            query = query.where(Credential.environment_id.in_(sorted(within)))
        return list(db.session.scalars(query))

    def by_name(self, target: str) -> list[int]:
        """The credentials whose audit target is `target` (both sources' copies)."""
        if target not in self._by_name:
            self._by_name[target] = self._lookup(target)
        return self._by_name[target]

    def _lookup(self, target: str) -> list[int]:
        head, _, ctype = target.rpartition(" (")
        env_host, _, username = head.rpartition(" / ")
        environment, _, hostname = env_host.rpartition(" / ")
        env_id = self.environments.get(environment)
        if env_id is None or not ctype.endswith(")"):
            return []
        rows = db.session.execute(
            select(Credential.id, Credential.hostname, Credential.username).where(
                Credential.environment_id == env_id,
                Credential.hostname == hostname,
                Credential.username == username,
                Credential.credential_type == ctype[:-1],
            )
        )
        return [
            cred_id
            for cred_id, host, user in rows
            if credential_target(environment, host, user, ctype[:-1]) == target
        ]

    def credentials(self, record: Record) -> tuple[list[int], str]:
        """The ids a record showed and their basis; no ids when nothing matches."""
        if record.kind == "export":
            listed = self.export_list(record)
            if listed is not None:
                return list(expand(listed)), "recorded"
            return self.estimate(record), "estimated"
        named = number(record.details.get("credential_id"))
        if named is not None:
            return [named], "recorded"
        for entry_id in entry_ids(record):
            if entry_id in self.entries:
                return [self.entries[entry_id][0]], "recorded"
        return self.by_name(record.target), "by_name"

    def current_entry(self, record: Record) -> bool:
        """Whether a former-value reveal showed what is still the current value."""
        return any(self.entries.get(n, (0, False))[1] for n in entry_ids(record))


def entry_ids(record: Record) -> list[int]:
    """The history entry a former-value reveal names, as a list of none or one."""
    entry = number(record.details.get("entry"))
    return [entry] if entry is not None else []


def period(query: Select, since: date | None, until: date | None) -> Select:
    """`query` limited to records from `since` to `until`, whole UTC days (None: no bound)."""
    if since is not None:
        query = query.where(AuditEvent.at >= datetime.combine(since, time()))
    if until is not None:
        query = query.where(AuditEvent.at < datetime.combine(until + timedelta(days=1), time()))
    return query
