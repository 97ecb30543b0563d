"""Forwarding the audit records off the VM: destinations, the record format, and delivery.

The chain is the outbox: records are durable in `audit_events`, and each destination keeps a
cursor (`sent_seq`) in the chain. A delivery pass sends the sealed records after the cursor,
in chain order, in batches, and moves the cursor only once the receiver has taken the batch,
so a receiver that is down for an hour loses nothing and catches up after (at least once:
a batch cut off midway is sent again whole). Signed checkpoints follow the same way.

Kinds: `syslog-tls` (RFC 5424 messages over TLS, RFC 5425 octet-counted framing),
`syslog-tcp` and `syslog-udp` (plain, only where PORTAL_AUDIT_FORWARD_PLAINTEXT allows;
UDP cannot confirm anything), `https-json` (JSON lines, POST, optional bearer token) and
`splunk-hec` (Splunk's HTTP Event Collector, token required). A record carries no secret:
the audit never holds one, and the token is stored encrypted and never shown.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from flask import current_app
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from sqlalchemy import select

from ..models import AuditCheckpoint, AuditDestination, AuditEvent
from ..platform import clock
from ..platform.crypto import AUDIT_FORWARD_TOKEN, cipher
from ..platform.extensions import db
from ..platform.text import escape_controls
from . import chain, record, transports
from .checkpoints import Checkpoint

KINDS = ("syslog-tls", "syslog-tcp", "syslog-udp", "https-json", "splunk-hec")
PLAINTEXT = ("syslog-tcp", "syslog-udp")
SYSLOG = ("syslog-tls", "syslog-tcp", "syslog-udp")
BATCH = 500
MAX_DESTINATIONS = 10
# RFC 5424: facility 13 ("log audit"); severity 5 (notice) for what happened, 4 (warning) for
# what was refused or failed.
_FACILITY = 13
_REFUSED = frozenset({"denied", "failure", "blocked", "locked"})
SD_ID = "vcfportal@32473"  # 32473: the enterprise number RFC 5612 reserves for examples
APP_NAME = "vcf-portal"
_HOST_PORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]{1,253})):(?P<port>\d{1,5})$"
)


class DestinationError(Exception):
    """A destination's settings were refused; `field` names the one at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DestinationIn(BaseModel):
    """A destination to add; the token is write-only."""

    kind: Literal["syslog-tls", "syslog-tcp", "syslog-udp", "https-json", "splunk-hec"]
    address: str = Field(
        max_length=512,
        description="host:port for syslog (IPv6 in brackets); an https:// URL otherwise",
    )
    ca_pem: str | None = Field(
        None, description="PEM bundle of the CA to trust (TLS kinds; default: system CAs)"
    )
    token: str | None = Field(
        None,
        max_length=1024,
        validate_default=True,
        description="Write-only: HEC token (splunk-hec) or bearer token (https-json)",
        json_schema_extra={"writeOnly": True},
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        address = value.strip()
        if info.data.get("kind") in SYSLOG:
            match = _HOST_PORT.match(address)
            if match is None or not 1 <= int(match["port"]) <= 65535:
                raise ValueError("Enter host:port (an IPv6 address in brackets).")
            if match["v6"]:
                try:
                    ipaddress.IPv6Address(match["v6"])
                except ValueError:
                    raise ValueError("Not an IPv6 address.") from None
        else:
            parts = urlsplit(address)
            if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
                raise ValueError("Enter an https:// URL (no user name or password in it).")
        return address

    @field_validator("ca_pem")
    @classmethod
    def _ca(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value or not value.strip():
            return None
        if info.data.get("kind") in PLAINTEXT:
            raise ValueError("Plain syslog has no TLS to trust a CA for.")
        try:
            certificates = x509.load_pem_x509_certificates(value.encode())
        except ValueError:
            certificates = []
        if not certificates:
            raise ValueError("Not a PEM certificate bundle.")
        return value.strip() + "\n"

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if value and not all(33 <= ord(c) <= 126 for c in value):
            raise ValueError("The token is printable ASCII without spaces.")
        if kind == "splunk-hec" and not value:
            raise ValueError("The HTTP Event Collector needs its token.")
        if kind not in ("https-json", "splunk-hec") and value:
            raise ValueError("Only the HTTPS kinds take a token.")
        return value or None


def _plaintext_allowed() -> bool:
    return bool(current_app.config["PORTAL_SETTINGS"].audit_forward_plaintext)


def add(values: DestinationIn, actor: str) -> AuditDestination:
    """Store a new destination; it starts at the chain's beginning, so it gets every record
    still in the database. The caller commits."""
    if values.kind in PLAINTEXT and not _plaintext_allowed():
        raise DestinationError(
            "kind",
            "Plain syslog is off: set PORTAL_AUDIT_FORWARD_PLAINTEXT=on to allow it, or use "
            "syslog-tls.",
        )
    count = db.session.scalar(select(db.func.count()).select_from(AuditDestination)) or 0
    if count >= MAX_DESTINATIONS:
        raise DestinationError("kind", f"At most {MAX_DESTINATIONS} destinations.")
    destination = AuditDestination(
        kind=values.kind,
        address=values.address,
        ca_pem=values.ca_pem,
        token_enc=cipher().encrypt(values.token, AUDIT_FORWARD_TOKEN) if values.token else None,
        created_by=actor,
        sent_seq=chain.anchor()[0],
        sent_checkpoint_id=0,
        behind_alerted=False,
    )
    db.session.add(destination)
    db.session.flush()
    record(
        "settings.audit_forwarding",
        destination.address,
        details={"change": "add", "kind": destination.kind, "id": destination.id},
        actor=actor,
    )
    return destination


def remove(destination: AuditDestination, actor: str) -> None:
    """Stop forwarding to a destination (what it took stays there). The caller commits."""
    record(
        "settings.audit_forwarding",
        destination.address,
        details={"change": "remove", "kind": destination.kind, "id": destination.id},
        actor=actor,
    )
    db.session.delete(destination)


def backlog(destination: AuditDestination, head_seq: int | None = None) -> int:
    """Sealed records not yet taken by the destination."""
    seq = chain.head()[0] if head_seq is None else head_seq
    return max(0, seq - destination.sent_seq)


def describe(destination: AuditDestination, head_seq: int) -> dict[str, Any]:
    """What the API and the page show: never the token."""
    return {
        "id": destination.id,
        "kind": destination.kind,
        "address": destination.address,
        "ca_pem": destination.ca_pem,
        "has_token": destination.token_enc is not None,
        "created_at": clock.iso(destination.created_at),
        "created_by": destination.created_by,
        "sent_seq": destination.sent_seq,
        "backlog": backlog(destination, head_seq),
        "last_success_at": clock.iso(destination.last_success_at),
        "last_error": destination.last_error,
        "last_error_at": clock.iso(destination.last_error_at),
    }


# -- the record format ----------------------------------------------------------------------


def document(row: Any, portal: str) -> dict[str, Any]:
    """The forwarded form of a sealed record (JSON; the same fields in every kind)."""
    try:
        details = json.loads(row.details) if row.details else None
    except ValueError:
        details = {"text": row.details}
    return {
        "type": "audit",
        "portal": portal,
        "id": row.id,
        "seq": row.seq,
        "at": row.at.isoformat(timespec="microseconds") + "Z",
        "actor": row.actor,
        "ip": row.ip,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "details": details,
        "mac": row.mac,
        "chain": row.chain,
    }


def checkpoint_document(checkpoint: Checkpoint, portal: str) -> dict[str, Any]:
    return {"type": "checkpoint", "portal": portal, **checkpoint.document()}


def _sd_value(value: object) -> str:
    text = "" if value is None else escape_controls(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(doc: dict[str, Any]) -> bytes:
    """An RFC 5424 message: the record's fields as structured data, the JSON as the text."""
    severity = 4 if doc.get("outcome") in _REFUSED else 5
    stamp = doc["at"]
    msgid = re.sub(r"[^!-~]", "_", str(doc.get("action") or "checkpoint"))[:32]
    names = ("id", "seq", "actor", "ip", "action", "target", "outcome", "mac", "chain")
    params = " ".join(f'{n}="{_sd_value(doc.get(n))}"' for n in names if doc.get(n) is not None)
    hostname = re.sub(r"[^!-~]", "_", doc["portal"])[:255] or "-"
    text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    line = (
        f"<{_FACILITY * 8 + severity}>1 {stamp} {hostname} {APP_NAME} - {msgid} "
        f"[{SD_ID} {params}] {text}"
    )
    return line.encode("utf-8")  # RFC 5424: parameter values are UTF-8


def hec_event(doc: dict[str, Any]) -> dict[str, Any]:
    """A Splunk HTTP Event Collector event."""
    stamp = datetime.fromisoformat(str(doc["at"]).removesuffix("Z")).replace(tzinfo=clock.UTC)
    return {
        "time": round(stamp.timestamp(), 6),
        "host": doc["portal"],
        "source": APP_NAME,
        "sourcetype": f"vcf:portal:{doc['type']}",
        "event": doc,
    }


# -- delivery -------------------------------------------------------------------------------


def _portal_name() -> str:
    external = current_app.config["PORTAL_SETTINGS"].external_url
    return (urlsplit(external).hostname if external else None) or socket.gethostname()


@dataclass(frozen=True)
class _Target:
    """Where a batch goes, read before the database transaction ends (no transaction stays
    open while the network is slow)."""

    kind: str
    address: str
    ca_pem: str | None
    token: str | None = field(repr=False)

    @classmethod
    def of(cls, destination: AuditDestination) -> _Target:
        token = None
        if destination.token_enc is not None:
            token = cipher().decrypt(destination.token_enc, AUDIT_FORWARD_TOKEN)
        return cls(destination.kind, destination.address, destination.ca_pem, token)


def _send(destination: _Target, documents: list[dict[str, Any]]) -> None:
    token = destination.token
    if destination.kind in SYSLOG:
        messages = [syslog_message(doc) for doc in documents]
        if destination.kind == "syslog-udp":
            transports.syslog_udp(destination.address, messages)
        else:
            tls = destination.kind == "syslog-tls"
            transports.syslog_stream(destination.address, messages, tls, destination.ca_pem)
        return
    if destination.kind == "splunk-hec":
        body = "\n".join(json.dumps(hec_event(doc), separators=(",", ":")) for doc in documents)
        headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
    else:
        body = "\n".join(json.dumps(doc, separators=(",", ":")) for doc in documents) + "\n"
        headers = {"Content-Type": "application/x-ndjson"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
    transports.https_post(destination.address, body.encode(), headers, destination.ca_pem)


def _records_after(seq: int, limit: int) -> list[Any]:
    return list(
        db.session.execute(
            select(
                AuditEvent.id,
                AuditEvent.seq,
                AuditEvent.at,
                AuditEvent.actor,
                AuditEvent.ip,
                AuditEvent.action,
                AuditEvent.target,
                AuditEvent.outcome,
                AuditEvent.details,
                AuditEvent.mac,
                AuditEvent.chain,
            )
            .where(AuditEvent.seq > seq)
            .order_by(AuditEvent.seq)
            .limit(limit)
        )
    )


def _checkpoints_after(checkpoint_id: int) -> list[AuditCheckpoint]:
    return list(
        db.session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.id > checkpoint_id)
            .order_by(AuditCheckpoint.id)
            .limit(50)
        )
    )


def _as_checkpoint(row: AuditCheckpoint) -> Checkpoint:
    return Checkpoint(row.at, row.seq, row.record_id, row.chain, row.key_id, row.signature)


def deliver(destination_id: int, batches: int = 20) -> int:
    """Send what `destination_id` has not taken yet (at most `batches` batches), moving its
    cursor after each batch the receiver took; returns the records sent. A failure is kept
    on the destination (its text never holds the token) and ends the pass."""
    portal = _portal_name()
    sent = 0
    for _ in range(batches):
        destination = db.session.get(AuditDestination, destination_id)
        if destination is None:
            return sent
        rows = _records_after(destination.sent_seq, BATCH)
        marks = _checkpoints_after(destination.sent_checkpoint_id)
        # A checkpoint goes after the records it states.
        marks = [m for m in marks if m.seq <= (rows[-1].seq if rows else destination.sent_seq)]
        documents = [document(row, portal) for row in rows]
        documents += [checkpoint_document(_as_checkpoint(m), portal) for m in marks]
        target = _Target.of(destination)
        db.session.rollback()  # the read ends before the network
        if not documents:
            return sent
        try:
            _send(target, documents)
            error = None
        except transports.ForwardError as exc:
            error = str(exc)[:500]
        destination = db.session.get(AuditDestination, destination_id)
        if destination is None:
            return sent  # removed meanwhile
        if error is not None:
            destination.last_error = error
            destination.last_error_at = clock.now()
            db.session.commit()
            return sent
        if rows:
            destination.sent_seq = rows[-1].seq
        if marks:
            destination.sent_checkpoint_id = marks[-1].id
        destination.last_success_at = clock.now()
        destination.last_error = None
        db.session.commit()
        sent += len(rows)
        if len(rows) < BATCH:
            return sent
    return sent


def destinations() -> Iterable[AuditDestination]:
    return db.session.scalars(select(AuditDestination).order_by(AuditDestination.id))
