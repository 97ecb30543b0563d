"""Fetching one source for a sync: the client of that source, and for fleet management what
the sync must keep besides the credentials: which API answered, the audited use of the
locker decryption password, and notes on an incomplete answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from .. import audit
from ..environments.service import locker_password
from ..models import Credential, Endpoint
from ..platform.extensions import db
from ..vcf import EndpointSettings, FetchedCredential, FleetClient, VcfError, client_for

log = logging.getLogger("portal.sync")


@dataclass
class SourceFacts:
    """What fetching a source told besides its credentials (filled even when it fails)."""

    api_detected: str | None = None
    decryptions: int = 0
    notes: list[str] = field(default_factory=list)


def fetch_source(
    endpoint: Endpoint, settings: EndpointSettings, facts: SourceFacts
) -> list[FetchedCredential]:
    """Every credential of the endpoint's source; VcfError when the source fails."""
    fleet = endpoint.source == "fleet"
    locker = locker_password(endpoint) if fleet else None
    known = endpoint.api_detected if fleet else None
    with client_for(endpoint.source, settings, locker, known) as client:
        try:
            return client.fetch_credentials()
        finally:
            if isinstance(client, FleetClient):
                facts.api_detected = client.api_detected
                facts.decryptions = client.decryptions
                facts.notes = list(client.notes)


# What names an account (clipped, two accounts could become one: refused) and what only
# describes it (clipped to its column), by FetchedCredential field and Credential column.
_IDENTITY = {
    "hostname": "hostname",
    "username": "username",
    "credential_type": "credential_type",
    "remote_id": "remote_id",
}
_DESCRIPTIVE = {
    "account_type": "account_type",
    "resource_type": "resource_type",
    "resource_id": "resource_id",
    "resource_ip": "resource_ip",
    "modified_at": "remote_modified_at",
    "expiry_date": "expiry_date",
    "expiry_status": "expiry_status",
    "auto_rotate_next": "auto_rotate_next",
}


def _length(column: str) -> int:
    return getattr(Credential.__table__.c[column].type, "length", None) or 1 << 30


def fit_columns(items: list[FetchedCredential]) -> list[FetchedCredential]:
    """The fetched credentials as the database can hold them: a descriptive value longer than
    its column (a type, a status, a date) is clipped; a name longer than its column (host,
    user, credential type, remote id) fails the fetch cleanly (VcfError) rather than the
    write halfway (PostgreSQL refuses what SQLite would keep). Applied to every source, so
    SQLite and PostgreSQL keep the same values and refuse the same fetches."""
    names = [(name, _length(column)) for name, column in _IDENTITY.items()]
    descriptive = [(name, _length(column)) for name, column in _DESCRIPTIVE.items()]
    fitted = []
    for item in items:
        for name, limit in names:
            value = getattr(item, name)
            if isinstance(value, str) and len(value) > limit:
                raise VcfError(
                    "malformed",
                    f"a {item.source} account's {name.replace('_', ' ')} is longer than the "
                    f"{limit} characters the portal keeps: nothing was stored",
                )
        clipped = {
            name: value[:limit]
            for name, limit in descriptive
            if isinstance(value := getattr(item, name), str) and len(value) > limit
        }
        fitted.append(replace(item, **clipped) if clipped else item)
    return fitted


def record_facts(endpoint: Endpoint | None, facts: SourceFacts) -> None:
    """Keep which API answered on the endpoint, in the caller's transaction."""
    if endpoint is not None and endpoint.source == "fleet" and facts.api_detected:
        endpoint.api_detected = facts.api_detected


def audit_locker_use(facts: SourceFacts, target: str, run_id: int, actor: str) -> None:
    """Audit the locker decryption password's use (never its value) as soon as the fetch
    ends, whatever its outcome, in a transaction of its own: a run that crashes, fails to
    store, is interrupted or cannot record its end still leaves the record. `actor` is who
    asked for the run (the scheduler for a scheduled one)."""
    if not facts.decryptions:
        return
    try:
        audit.record(
            "fleet.locker_password.use",
            target,
            actor=actor,
            details={"run": run_id, "decryptions": facts.decryptions},
        )
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - the run goes on; the failure is logged loudly
        db.session.rollback()
        log.error(
            "sync run %s: the use of the locker decryption password (%d decryptions) could "
            "not be audited (%s)",
            run_id,
            facts.decryptions,
            type(exc).__name__,
        )
