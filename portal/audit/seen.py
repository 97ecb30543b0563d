"""Who saw what: every password a person revealed, copied or exported in a period, and who saw
a credential's password since it last changed.

Read from the audit records (actor, time, outcome and the ids their sealed details name) and
the sightings beside them (portal.audit.sightings). Each credential of the report says how it
is known:

- `recorded`: the record names the credential (reveals, copies, former values), or the
  export's list matches the digest its sealed record holds;
- `by_name`: a reveal or copy recorded before records named credentials by id (migration
  0016): matched by its target text "environment / host / user (type)", so both sources' copies
  of an account match, and none once the environment was renamed (the row then shows the
  record's target);
- `estimated`: an export whose list was not recorded (older ones, or a list changed since):
  every credential its environment, or every environment, held at that time. An upper bound:
  the filters of older exports were not recorded.

Only records with the outcome `success` count: a reveal of no password showed nothing. The
caller says which environments the reader may see (`scope`, None for all); records that match
no credential are shown only to readers of every environment.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from flask import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select

from ..models import AuditEvent, Credential, CredentialSighting, Environment
from ..platform import clock
from ..platform.clock import iso
from ..platform.extensions import db
from ..platform.text import neutralise, visible
from . import record as audit_record
from .shown import (
    CHUNK,
    FIRST_DAY,
    LAST_DAY,
    Record,
    Resolver,
    details_of,
    entry_ids,
    legacy_until,
    number,
    period,
)
from .shown import records as read_records
from .sightings import KINDS, SHOWN, contains, credential_target

BASES = ("recorded", "by_name", "estimated")  # the best first
_RANK = {basis: rank for rank, basis in enumerate(BASES)}
MAX_NAME = 128  # a person is a user name
WAYS = ("reveal", "copy", "former", "export")
DEFINITIONS_EXPORT = "environment.export_definitions"


@dataclass
class _Seen:
    """What one person saw of one credential (or of one unmatched target)."""

    target: str
    ways: set[str] = field(default_factory=set)
    records: set[int] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    basis: str = "estimated"
    last_current: datetime | None = None  # the newest reveal, copy or export of it
    former_current: bool = False  # a former-value reveal of what is still the current value

    def add(self, record: Record, basis: str, current_entry: bool = False) -> None:
        # Called once per credential of every export: kept to plain comparisons.
        self.ways.add(record.kind)
        self.records.add(record.id)
        if self.first is None or record.at < self.first:
            self.first = record.at
        if self.last is None or record.at > self.last:
            self.last = record.at
        if _RANK[basis] < _RANK[self.basis]:
            self.basis = basis
        if record.kind == "former":
            self.former_current = self.former_current or current_entry
        elif self.last_current is None or record.at > self.last_current:
            self.last_current = record.at

    def ways_list(self) -> list[str]:
        return [way for way in WAYS if way in self.ways]


# --- one person, one period -------------------------------------------------------------------


class SeenQuery(BaseModel):
    """Whose report and which period: a user name, the first and last day (UTC, both
    included; either may be left open). The one reading of the page's form and the API's
    query."""

    model_config = ConfigDict(str_strip_whitespace=True)

    person: str = Field(min_length=1, max_length=MAX_NAME, description="A user name")
    since: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="The first day (UTC)")
    until: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="The last day (UTC)")

    @field_validator("person")
    @classmethod
    def _a_name(cls, person: str) -> str:
        # No user name holds a control character; PostgreSQL refuses NUL in a query.
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in person):
            raise ValueError("No user has such a name.")
        return person

    @model_validator(mode="after")
    def _in_order(self) -> SeenQuery:
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError("The last day comes before the first.")
        return self


def report(
    person: str, since: date | None, until: date | None, scope: set[int] | None
) -> dict[str, Any]:
    """Every password `person` revealed, copied or exported from `since` to `until` (whole UTC
    days, both included; None: no bound), one item per credential, in the environments
    `scope` (None: all, with the records that match no credential)."""
    query = period(
        select(AuditEvent).where(
            AuditEvent.actor == person,
            AuditEvent.action.in_(SHOWN),
            AuditEvent.outcome == "success",
        ),
        since,
        until,
    )
    records = read_records(query)
    resolver = Resolver()
    resolver.load_entries(records)
    seen: dict[int, _Seen] = {}
    unmatched: dict[str, _Seen] = {}
    for record in records:
        ids, basis = resolver.credentials(record)
        if not ids:
            unmatched.setdefault(record.target, _Seen(record.target)).add(record, basis)
            continue
        current = resolver.current_entry(record)
        for cred_id in ids:
            seen.setdefault(cred_id, _Seen(record.target)).add(record, basis, current)
    items = _items(seen, scope)
    if scope is None:
        items += [_item(None, s) for _, s in sorted(unmatched.items())]
    counted = {way: set() for way in WAYS}
    kinds = {r.id: r.kind for r in records}
    for item in items:
        for record_id in item.pop("_records"):
            counted[kinds[record_id]].add(record_id)
    return {
        "person": person,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "items": items,
        "records": {way: len(ids) for way, ids in counted.items()},
        "definitions_exports": _definitions_exports(person, since, until) if scope is None else [],
    }


_COLUMNS = (
    Credential.id,
    Credential.environment_id,
    Credential.hostname,
    Credential.username,
    Credential.credential_type,
    Credential.source,
    Credential.present,
    Credential.last_changed_at,
)


def _items(seen: dict[int, _Seen], scope: set[int] | None) -> list[dict[str, Any]]:
    names = dict(db.session.execute(select(Environment.id, Environment.name)).all())
    ordered = sorted(seen)
    items = []
    found: set[int] = set()
    for start in range(0, len(ordered), CHUNK):
        query = select(*_COLUMNS).where(Credential.id.in_(ordered[start : start + CHUNK]))
        for row in db.session.execute(query):
            found.add(row.id)
            if scope is not None and row.environment_id not in scope:
                continue
            items.append(_item(row, seen[row.id], names.get(row.environment_id, "")))
    items.sort(key=lambda i: (i["environment"], i["hostname"], i["username"], i["credential_type"]))
    if scope is None:  # purged since: no environment to place them in
        items += [_item(None, seen[n], purged=n) for n in ordered if n not in found]
    return items


def _item(row, shown: _Seen, environment: str = "", purged: int | None = None) -> dict[str, Any]:
    still = None
    if row is not None:
        still = shown.former_current or (
            shown.last_current is not None and shown.last_current >= row.last_changed_at
        )
    return {
        "credential_id": row.id if row is not None else purged,
        "environment_id": row.environment_id if row is not None else None,
        "environment": environment,
        "hostname": row.hostname if row is not None else "",
        "username": row.username if row is not None else "",
        "credential_type": row.credential_type if row is not None else "",
        "source": row.source if row is not None else None,
        "status": _status(row, purged),
        "ways": shown.ways_list(),
        "times": len(shown.records),
        "first_shown_at": iso(shown.first),
        "last_shown_at": iso(shown.last),
        "still_current": still,
        "basis": shown.basis,
        "target": shown.target if row is None else None,
        "_records": shown.records,
    }


def _status(row, purged: int | None) -> str:
    if row is not None:
        return "present" if row.present else "absent"
    return "purged" if purged is not None else "unmatched"


def _definitions_exports(person: str, since: date | None, until: date | None) -> list[str]:
    """When the person exported the environment definitions with the service accounts'
    passwords (these are no credentials of the table: they are changed by hand)."""
    query = period(
        select(AuditEvent.at, AuditEvent.details).where(
            AuditEvent.actor == person,
            AuditEvent.action == DEFINITIONS_EXPORT,
            AuditEvent.outcome == "success",
        ),
        since,
        until,
    )
    return [
        iso(at)
        for at, details in db.session.execute(query.order_by(AuditEvent.id))
        if details_of(details).get("passwords") == "yes"
    ]


# --- one credential since its password last changed -------------------------------------------


def seen_by(cred: Credential) -> dict[str, Any]:
    """Who saw the credential's current password: every reveal, copy or export of it since
    the portal stored that value (a former-value reveal counts when it showed that value),
    one item per person, the most recent first."""
    since = cred.last_changed_at
    resolver = Resolver()
    environment = next(
        (name for name, env_id in resolver.environments.items() if env_id == cred.environment_id),
        "",
    )
    recent = select(AuditEvent).where(AuditEvent.at >= since, AuditEvent.outcome == "success")
    indexed = recent.where(
        AuditEvent.id.in_(
            select(CredentialSighting.event_id).where(CredentialSighting.credential_id == cred.id)
        )
    )
    named = recent.where(
        AuditEvent.id <= legacy_until(),
        AuditEvent.action.in_(tuple(a for a, k in KINDS.items() if k != "export")),
        AuditEvent.target
        == credential_target(environment, cred.hostname, cred.username, cred.credential_type),
    )
    exports = recent.where(AuditEvent.action == "credential.export")
    records = {r.id: r for q in (indexed, named, exports) for r in read_records(q)}
    resolver.load_entries(records.values())
    people: dict[str, _Seen] = {}
    for record in sorted(records.values(), key=lambda r: r.id):
        basis = _showed(resolver, record, cred)
        if basis is not None:
            people.setdefault(record.actor, _Seen(record.actor)).add(record, basis)
    items = [
        {
            "person": person,
            "ways": shown.ways_list(),
            "times": len(shown.records),
            "first_shown_at": iso(shown.first),
            "last_shown_at": iso(shown.last),
            "basis": shown.basis,
        }
        for person, shown in people.items()
    ]
    items.sort(key=lambda i: i["last_shown_at"] or "", reverse=True)
    return {"since": iso(since), "items": items}


def _showed(resolver: Resolver, record: Record, cred: Credential) -> str | None:
    """How `record` is known to have shown the credential's current password, or None."""
    if record.kind == "export":
        listed = resolver.export_list(record)
        if listed is not None:
            return "recorded" if contains(listed, cred.id) else None
        within = resolver.export_environments(record)
        held = cred.first_seen_at <= record.at
        return "estimated" if held and (within is None or cred.environment_id in within) else None
    if record.kind == "former":
        entries = [resolver.entries.get(n) for n in entry_ids(record)]
        return "recorded" if (cred.id, True) in entries else None
    named = number(record.details.get("credential_id"))
    if named is not None:
        return "recorded" if named == cred.id else None
    return "by_name"


# --- the CSV file -------------------------------------------------------------------------------

CSV_COLUMNS = (
    "Environment",
    "Host",
    "User",
    "Credential type",
    "Source",
    "Status",
    "How",
    "Times",
    "First shown (UTC)",
    "Last shown (UTC)",
    "Password still current",
    "Basis",
    "Audit target",
)
_CSVCHUNK = 64 * 1024


def _csv_time(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else ""


def _csv_row(item: dict[str, Any]) -> list[str]:
    still = item["still_current"]
    values = (
        item["environment"],
        item["hostname"],
        item["username"],
        item["credential_type"],
        item["source"] or "",
        item["status"],
        " ".join(item["ways"]),
        item["times"],
        _csv_time(item["first_shown_at"]),
        _csv_time(item["last_shown_at"]),
        "unknown" if still is None else "yes" if still else "no",
        item["basis"],
        item["target"] or "",
    )
    return [neutralise(visible(value)) for value in values]


def csv_chunks(items: list[dict[str, Any]]) -> Generator[bytes, None, None]:
    """The report as CSV (UTF-8 with BOM, formula-safe cells), in pieces written as sent."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    for item in items:
        writer.writerow(_csv_row(item))
        if buffer.tell() >= _CSVCHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def csv_response(query: SeenQuery, scope: set[int] | None) -> Response:
    """The report as a CSV download, for pages and API alike: computed now, written as it is
    sent, audited as an export of the audit log."""
    items = report(query.person, query.since, query.until, scope)["items"]
    period_ = {"since": query.since, "until": query.until}
    audit_record(
        "audit.export",
        f"who saw what: {query.person}",
        details={**{k: v.isoformat() for k, v in period_.items() if v}, "rows": len(items)},
    )
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    label = _NAME_UNSAFE.sub("_", query.person).strip("_") or "person"
    return Response(
        csv_chunks(items),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="vcf-portal-seen_{label}_{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
