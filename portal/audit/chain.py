"""Tamper evidence of the audit log: a keyed seal on each record as it is written, and a chain
that links the sealed records in the order they were committed.

- On write (`seal_values`), a record gets a random nonce and a MAC: HMAC-SHA256 under the
  portal's chain key over the record's canonical form. A record changed in the database, or
  written there by anyone but the portal, has no valid MAC.
- Soon after (`seal`: the scheduler's leader every few seconds, and before every checkpoint and
  verification), committed records get their place in the chain, in commit order: `seq`, and
  `chain` = HMAC(key, previous chain | seq | MAC). A record removed, inserted or moved breaks
  the links after it. Sealing after the commit, in short transactions of its own, keeps
  requests from queueing behind one another for the chain's head.
- The head (last seq and chain value) is kept in `portal_meta`; signed checkpoints
  (checkpoints.py) keep it outside the database, where removing the newest records shows.

The chain key lives in the data directory (`audit.key`, 0600) like the data key, never in the
database; the database records only its id, so a wrong or lost key is named at start-up.
Records written before the chain existed are adopted by the first seal, as they were then.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, update

from ..models import AuditEvent, PortalMeta
from ..platform import writes
from ..platform.crypto import write_secret_file
from ..platform.database import changed_rows
from ..platform.extensions import db

KEY_FILE = "audit.key"
KEY_ID_META = "audit_key_id"
HEAD_META = "audit.head"  # "<seq>:<chain>" of the newest sealed record
LEGACY_META = "audit.legacy_until"  # records up to this id predate the chain
ANCHOR_META = "audit.anchor"  # "<seq>:<chain>" of the newest record archived away
SEAL_BATCH = writes.CHUNK_ROWS
VERIFY_CHUNK = 2000
_EXTENSION = "portal_audit_chain"
FIELDS = (  # every column of a record, as the chain and the archives read it
    AuditEvent.id,
    AuditEvent.at,
    AuditEvent.actor,
    AuditEvent.ip,
    AuditEvent.action,
    AuditEvent.target,
    AuditEvent.outcome,
    AuditEvent.details,
    AuditEvent.nonce,
    AuditEvent.mac,
    AuditEvent.seq,
    AuditEvent.chain,
)


class ChainKeyError(Exception):
    """The chain key file is missing, unreadable or not the one this database was sealed with."""


class ChainKey:
    """The secret of the seals and links; never stored in the database."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("the audit chain key must be 32 bytes")
        self._secret = secret
        self.key_id = hashlib.sha256(b"vcf-portal-audit-key-id" + secret).hexdigest()[:16]

    def seal(self, values: Mapping[Any, Any], nonce: str) -> str:
        """The MAC of a record's canonical form."""
        return hmac.new(self._secret, canonical(values, nonce), "sha256").hexdigest()

    def verifies(self, values: Mapping[Any, Any]) -> bool:
        """Whether `values` (a record's fields with its nonce and MAC) carry a valid seal."""
        nonce, mac = values["nonce"], values["mac"]
        if mac is None or nonce is None:
            return False
        return hmac.compare_digest(mac, self.seal(values, nonce))

    def link(self, previous: str, seq: int, record_id: int, mac: str) -> str:
        """The chain value of record `record_id` at `seq`, after the one whose chain is
        `previous`: its place, its id and its seal."""
        message = f"{previous}|{seq}|{record_id}|{mac}".encode("ascii")
        return hmac.new(self._secret, message, "sha256").hexdigest()


def canonical(values: Mapping[Any, Any], nonce: str) -> bytes:
    """The bytes a record's MAC covers: every field a person reads, in a fixed order."""
    at = values["at"]
    stamp = at.replace(tzinfo=None).isoformat(timespec="microseconds")
    fields = [
        1,
        nonce,
        stamp,
        values["actor"],
        values["ip"],
        values["action"],
        values["target"],
        values["outcome"],
        values["details"],
    ]
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def read_key(data_dir: Path) -> ChainKey:
    """The chain key in `data_dir`; raises ChainKeyError naming the file."""
    path = data_dir / KEY_FILE
    try:
        return ChainKey(bytes.fromhex(path.read_text(encoding="ascii").strip()))
    except FileNotFoundError:
        raise ChainKeyError(
            f"audit chain key {path} is missing; restore it from your key backup"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError):
        raise ChainKeyError(f"audit chain key {path} is unreadable or malformed") from None


def load_key(app: Flask, create: bool) -> tuple[ChainKey, bool]:
    """Load `audit.key` from the data directory (made first when `create`) for this app;
    with whether this call made it."""
    data_dir: Path = app.config["PORTAL_SETTINGS"].data_dir
    created = False
    if create:
        created = write_secret_file(
            data_dir / KEY_FILE, secrets.token_hex(32).encode("ascii") + b"\n"
        )
    key = read_key(data_dir)
    app.extensions[_EXTENSION] = key
    return key, created


def chain_key(app: Flask | None = None) -> ChainKey:
    """The chain key of `app` (default: the current one)."""
    return (app or current_app).extensions[_EXTENSION]


def seal_values(values: dict[str, Any]) -> dict[str, Any]:
    """The record's values with its nonce and MAC added (written with it)."""
    nonce = os.urandom(16).hex()
    return {**values, "nonce": nonce, "mac": chain_key().seal(values, nonce)}


def _meta(key: str) -> str | None:
    return db.session.scalar(select(PortalMeta.value).where(PortalMeta.key == key))


def _pair(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    seq, _, value = text.partition(":")
    return int(seq), value


def head() -> tuple[int, str]:
    """(seq, chain) of the newest sealed record; (0, "") before the first."""
    return _pair(_meta(HEAD_META)) or (0, "")


def anchor() -> tuple[int, str]:
    """(seq, chain) of the newest record archived out of the database; (0, "") if none."""
    return _pair(_meta(ANCHOR_META)) or (0, "")


def lock_anchor() -> tuple[int, str]:
    """Take the anchor's row lock for this transaction (made first when missing) and return
    the anchor: archive runs that move it take turns (SQLite: the write lock)."""
    locked = changed_rows(
        update(PortalMeta).where(PortalMeta.key == ANCHOR_META).values(value=PortalMeta.value)
    )
    if not locked:
        db.session.add(PortalMeta(key=ANCHOR_META, value="0:"))
        db.session.flush()
    return anchor()


def move_anchor(seq: int, value: str) -> None:
    """Record (seq, chain) of the newest record archived away (the caller commits, in the
    transaction that deletes the records up to it)."""
    db.session.execute(
        update(PortalMeta).where(PortalMeta.key == ANCHOR_META).values(value=f"{seq}:{value}")
    )


def ensure_started() -> None:
    """Record the head and the key's id for a database that has neither (the caller
    commits)."""
    if _meta(HEAD_META) is None:
        legacy = db.session.scalar(select(db.func.max(AuditEvent.id))) or 0
        db.session.add(PortalMeta(key=HEAD_META, value="0:"))
        db.session.add(PortalMeta(key=LEGACY_META, value=str(legacy)))
    if _meta(KEY_ID_META) is None:
        db.session.add(PortalMeta(key=KEY_ID_META, value=chain_key().key_id))


def stored_key_id() -> str | None:
    return _meta(KEY_ID_META)


def adopt_legacy() -> int:
    """Seal the records written before the chain existed, as they are: only at the start that
    made the chain key (the first after the upgrade), never later, so that a record put into
    the table afterwards can never pass for an old one. Short transactions; returns how many."""
    key = chain_key()
    legacy = int(_meta(LEGACY_META) or 0)
    adopted = 0
    while True:
        rows = db.session.execute(
            select(*FIELDS)
            .where(AuditEvent.mac.is_(None), AuditEvent.id <= legacy)
            .order_by(AuditEvent.id)
            .limit(SEAL_BATCH)
        ).all()
        if not rows:
            db.session.commit()
            return adopted
        changes = []
        for row in rows:
            nonce = os.urandom(16).hex()
            changes.append({"id": row.id, "nonce": nonce, "mac": key.seal(row._mapping, nonce)})
        db.session.execute(update(AuditEvent), changes)
        db.session.commit()
        adopted += len(changes)


@dataclass
class SealPass:
    """What one pass of `seal` did."""

    sealed: int = 0
    refused: list[int] = field(default_factory=list)  # ids of records without a valid MAC


def valid(key: ChainKey, row: Any) -> bool:
    return key.verifies(row._mapping)


def _sealed_nonces(nonces: list[str]) -> set[str | None]:
    """The nonces among `nonces` that a sealed record already has."""
    if not nonces:
        return set()
    return set(
        db.session.scalars(
            select(AuditEvent.nonce).where(
                AuditEvent.nonce.in_(nonces), AuditEvent.seq.is_not(None)
            )
        )
    )


# A record commits within seconds of being written: one written this much before the newest
# sealed record was not written by the portal then (a copy of an archived record).
LATE_LIMIT = timedelta(days=1)
HEAD_FILE = "audit-head"  # the head as the last seal left it, outside the database


def oldest_sealable(seq: int) -> datetime | None:
    if seq == 0:
        return None
    newest = db.session.scalar(select(AuditEvent.at).where(AuditEvent.seq == seq))
    return None if newest is None else newest - LATE_LIMIT


def _head_path() -> Path:
    return current_app.config["PORTAL_SETTINGS"].data_dir / HEAD_FILE


def _write_head_file(seq: int, value: str) -> None:
    """Keep the head in a 0600 file of the data directory too: records cut off the end of the
    database, with its head set back, show against it (each node keeps its own)."""
    path = _head_path()
    partial = path.with_name(f".{HEAD_FILE}.{os.getpid()}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(f"{seq}:{value}\n")
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)  # the database's own head still counts


def head_file() -> tuple[int, str] | None:
    """(seq, chain) in the head file of this node's data directory, or None."""
    try:
        return _pair(_head_path().read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def forget_head_file(data_dir: Path) -> None:
    """After a restore to an older database: the head file speaks of records it never had."""
    (data_dir / HEAD_FILE).unlink(missing_ok=True)


def seal(batch: int = SEAL_BATCH) -> SealPass:
    """Give every committed, unsealed record its place in the chain, in short transactions of
    `batch` records each. Records without a valid MAC are left out (and reported)."""
    key = chain_key()
    done = SealPass()
    after = 0
    while True:
        pending = db.session.scalar(
            select(AuditEvent.id)
            .where(AuditEvent.seq.is_(None), AuditEvent.id > after)
            .order_by(AuditEvent.id)
            .limit(1)
        )
        if pending is None:
            db.session.rollback()  # nothing to seal: no write, no lock taken
            return done
        # The head row is written first: it takes the database's write lock (SQLite) or the
        # row's lock (PostgreSQL), so two sealers take turns and never fork the chain.
        db.session.execute(
            update(PortalMeta).where(PortalMeta.key == HEAD_META).values(value=PortalMeta.value)
        )
        seq, chain = head()
        oldest = oldest_sealable(seq)
        rows = db.session.execute(
            select(*FIELDS)
            .where(AuditEvent.seq.is_(None), AuditEvent.id > after)
            .order_by(AuditEvent.id)
            .limit(batch)
        ).all()
        taken = _sealed_nonces([row.nonce for row in rows if row.nonce])
        changes = []
        for row in rows:
            fresh = oldest is None or row.at >= oldest
            if valid(key, row) and row.nonce not in taken and fresh:
                nonce, mac = row.nonce, str(row.mac)
            else:
                # Forged, changed, a copy of a sealed record, or one far older than the
                # newest sealed one (a copy of an archived record): never chained.
                done.refused.append(row.id)
                continue
            taken.add(nonce)
            seq += 1
            chain = key.link(chain, seq, row.id, mac)
            changes.append({"id": row.id, "seq": seq, "chain": chain, "nonce": nonce, "mac": mac})
        if changes:
            db.session.execute(update(AuditEvent), changes)
            db.session.execute(
                update(PortalMeta).where(PortalMeta.key == HEAD_META).values(value=f"{seq}:{chain}")
            )
        db.session.commit()
        done.sealed += len(changes)
        if changes:
            _write_head_file(seq, chain)
        if len(rows) < batch:
            return done
        after = rows[-1].id
        writes.let_others_write()


def record_at(seq: int) -> Any | None:
    """The sealed record at `seq` (id, chain, at), or None."""
    return db.session.execute(
        select(AuditEvent.id, AuditEvent.chain, AuditEvent.at).where(AuditEvent.seq == seq)
    ).first()


def sealed_rows(first: int, last: int) -> Iterator[Any]:
    """Sealed records at positions `first` to `last`, in chain order, read in short chunks
    (each its own short read: verification and the archive run never hold the database)."""
    after = first - 1
    while True:
        rows = db.session.execute(
            select(*FIELDS)
            .where(AuditEvent.seq > after, AuditEvent.seq <= last)
            .order_by(AuditEvent.seq)
            .limit(VERIFY_CHUNK)
        ).all()
        db.session.rollback()
        yield from rows
        if len(rows) < VERIFY_CHUNK:
            return
        after = rows[-1].seq
