"""Fetching one source for a sync: the client of that source, and for fleet management what
the sync must keep besides the credentials: which API answered, the audited use of the
locker decryption password, and notes on an incomplete answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import audit
from ..environments.service import locker_password
from ..models import Endpoint
from ..vcf import EndpointSettings, FetchedCredential, FleetClient, client_for


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


def record_facts(endpoint: Endpoint | None, facts: SourceFacts, target: str, run_id: int) -> None:
    """Keep which API answered on the endpoint, and audit the locker password's use (never
    its value), in the caller's transaction."""
    if endpoint is None or endpoint.source != "fleet":
        return
    if facts.api_detected:
        endpoint.api_detected = facts.api_detected
    if facts.decryptions:
        audit.record(
            "fleet.locker_password.use",
            target,
            actor="scheduler",
            details={"run": run_id, "decryptions": facts.decryptions},
        )
