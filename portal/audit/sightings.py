"""The audit of a password shown: the record names the credential by id (a reveal, a copy, a
former value) or carries the digest of the exported list, and a sighting row beside it lets
"who saw this password" find it by credential, without searching the records' text.

Ids and names only, never a secret. An export's list is kept as id ranges ("3-250,260"), a few
bytes for a whole environment; its SHA-256 is in the sealed record, so a list changed in the
database no longer counts as recorded (portal.audit.seen then estimates it).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator

from ..models import AuditEvent, CredentialSighting
from ..platform.extensions import db
from . import clean, record

# The audit actions that show passwords, and what each is called in the report.
KINDS = {
    "credential.reveal": "reveal",
    "credential.copy": "copy",
    "credential.history_reveal": "former",
    "credential.export": "export",
}
SHOWN = tuple(KINDS)
# The audit target of an export across environments.
ALL_ENVIRONMENTS = "all environments"
Ranges = list[tuple[int, int]]


def credential_target(environment: str, hostname: str, username: str, ctype: str) -> str:
    """How audit records name a credential: environment, host, user, type (as stored)."""
    return clean(f"{environment} / {hostname} / {username} ({ctype})")


def encode(ids: Iterable[int]) -> str:
    """Ids as sorted ranges: "1-3,7,9-12"."""
    parts: list[str] = []
    for first, last in _runs(sorted(set(ids))):
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


def _runs(ids: list[int]) -> Iterator[tuple[int, int]]:
    start = previous = None
    for value in ids:
        if previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None and previous is not None:
            yield start, previous
        start = previous = value
    if start is not None and previous is not None:
        yield start, previous


def decode(text: str) -> Ranges:
    """The ranges of `encode`'s text, sorted; ValueError when it is not such a text."""
    ranges: Ranges = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        ranges.append((int(first), int(last or first)))
    if any(a > b for a, b in ranges) or ranges != sorted(ranges):
        raise ValueError("not a list of id ranges")
    return ranges


def contains(ranges: Ranges, credential_id: int) -> bool:
    """Whether one of the sorted `ranges` holds the id."""
    index = bisect.bisect_right(ranges, (credential_id, float("inf"))) - 1
    return index >= 0 and ranges[index][0] <= credential_id <= ranges[index][1]


def expand(ranges: Ranges) -> Iterator[int]:
    """Every id of the ranges."""
    for first, last in ranges:
        yield from range(first, last + 1)


def digest(text: str) -> str:
    """The digest of an exported list as the sealed record holds it."""
    return hashlib.sha256(text.encode()).hexdigest()


def password_shown(
    action: str,
    target: str,
    credential_id: int,
    environment_id: int,
    outcome: str = "success",
    details: dict | None = None,
) -> AuditEvent:
    """Audit a reveal, copy or former value of one credential (the caller commits); when a
    password was shown (`success`), index it under the credential."""
    named = {"credential_id": credential_id, "environment_id": environment_id}
    entry = record(action, target, outcome, details={**named, **(details or {})})
    if outcome == "success":
        db.session.add(CredentialSighting(event=entry, credential_id=credential_id))
    return entry


def exported(target: str, details: dict, credential_ids: list[int]) -> AuditEvent:
    """Audit an export with passwords (the caller commits): its record carries the count and
    digest of the exported list, its sighting the list itself."""
    ranges = encode(credential_ids)
    count = len(credential_ids)
    entry = record(
        "credential.export",
        target,
        details={**details, "credentials": count, "list_sha256": digest(ranges)},
    )
    db.session.add(CredentialSighting(event=entry, credential_ids=ranges, count=count))
    return entry
