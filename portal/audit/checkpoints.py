"""Signed checkpoints of the audit chain: the newest record's id, place and chain value at a
time, signed with the portal's Ed25519 key (`audit-signing.key` in the data directory, 0600).

Each checkpoint is stored in the database and written as a JSON file to the checkpoint folder
beside the backups, where it outlives a database that someone cut short: `verify_all` checks
every record against every checkpoint it finds in either place. A restore moves checkpoints
newer than the restored database aside (`supersede_after`), so they are kept but not held
against it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from flask import Flask, current_app
from sqlalchemy import select

from ..models import AuditCheckpoint
from ..platform import clock
from ..platform.crypto import write_secret_file
from ..platform.extensions import db
from . import chain, verification

SIGNING_KEY_FILE = "audit-signing.key"
FOLDER = "audit-checkpoints"
FORMAT = "vcf-portal-audit-checkpoint/1"
_EXTENSION = "portal_audit_signing_key"


class SigningKeyError(Exception):
    """The checkpoint signing key is unreadable."""


def read_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The checkpoint signing key in `data_dir`; raises SigningKeyError naming the file."""
    path = data_dir / SIGNING_KEY_FILE
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(
            f"audit signing key {path} is missing; restore it from your key backup"
        ) from None
    except (OSError, ValueError):
        raise SigningKeyError(f"audit signing key {path} is unreadable or malformed") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"audit signing key {path} is not an Ed25519 key")
    return key


def load_signing_key(app: Flask, create: bool) -> Ed25519PrivateKey:
    """Load the checkpoint signing key of this app (made first when `create`)."""
    data_dir: Path = app.config["PORTAL_SETTINGS"].data_dir
    if create:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_secret_file(data_dir / SIGNING_KEY_FILE, pem)
    key = read_signing_key(data_dir)
    app.extensions[_EXTENSION] = key
    return key


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, in hex: the name of the key in every checkpoint."""
    return hashlib.sha256(_public_bytes(key)).hexdigest()


def public_key() -> Ed25519PublicKey:
    return current_app.extensions[_EXTENSION].public_key()


def folder(app: Flask | None = None) -> Path:
    """The checkpoint folder, beside the backups."""
    app = app or current_app
    return app.config["PORTAL_SETTINGS"].data_dir / "backups" / FOLDER


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint states; `signature` covers `payload()`."""

    at: datetime
    seq: int
    record_id: int | None
    chain: str
    key_id: str
    signature: str = ""

    def payload(self) -> bytes:
        body = {
            "format": FORMAT,
            "at": self.at.replace(tzinfo=None).isoformat(timespec="seconds") + "Z",
            "seq": self.seq,
            "record_id": self.record_id,
            "chain": self.chain,
            "key": self.key_id,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")

    def document(self) -> dict:
        """The file's content (also what is forwarded)."""
        return {**json.loads(self.payload()), "signature": self.signature}

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        return signed(self.payload(), self.signature, self.key_id, key)


def sign(payload: bytes) -> tuple[str, str]:
    """Sign `payload` with the portal's signing key: (base64 signature, key fingerprint)."""
    signer: Ed25519PrivateKey = current_app.extensions[_EXTENSION]
    signature = base64.b64encode(signer.sign(payload)).decode("ascii")
    return signature, fingerprint(signer.public_key())


def signed(payload: bytes, signature: str, key_id: str, key: Ed25519PublicKey) -> bool:
    """Whether `signature` over `payload` is `key`'s, and `key_id` names it."""
    try:
        key.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError):
        return False
    return key_id == fingerprint(key)


def make() -> Checkpoint:
    """Seal what is committed, then sign, store and write a checkpoint of the head."""
    chain.seal()
    seq, value = chain.head()
    newest = chain.record_at(seq) if seq else None
    signer: Ed25519PrivateKey = current_app.extensions[_EXTENSION]
    unsigned = Checkpoint(
        at=clock.now().replace(microsecond=0),
        seq=seq,
        record_id=newest.id if newest is not None else None,
        chain=value,
        key_id=fingerprint(signer.public_key()),
    )
    signature, _ = sign(unsigned.payload())
    checkpoint = Checkpoint(**{**unsigned.__dict__, "signature": signature})
    db.session.add(
        AuditCheckpoint(
            at=checkpoint.at,
            seq=checkpoint.seq,
            record_id=checkpoint.record_id,
            chain=checkpoint.chain,
            key_id=checkpoint.key_id,
            signature=checkpoint.signature,
        )
    )
    db.session.commit()
    _write_file(checkpoint)
    return checkpoint


def _write_file(checkpoint: Checkpoint) -> Path:
    target_dir = folder()
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = target_dir / f"checkpoint-{checkpoint.at:%Y%m%dT%H%M%SZ}-{checkpoint.seq}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(checkpoint.document(), indent=2) + "\n", encoding="ascii")
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return path


def _from_document(data: dict) -> Checkpoint:
    return Checkpoint(
        at=datetime.fromisoformat(str(data["at"]).removesuffix("Z")),
        seq=int(data["seq"]),
        record_id=None if data.get("record_id") is None else int(data["record_id"]),
        chain=str(data["chain"]),
        key_id=str(data["key"]),
        signature=str(data["signature"]),
    )


def stored() -> list[tuple[str, Checkpoint | None]]:
    """Every checkpoint in the database and the folder, with where it came from (None: a
    file that could not be read)."""
    found: list[tuple[str, Checkpoint | None]] = []
    for row in db.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)):
        found.append(
            (
                f"database checkpoint {row.id}",
                Checkpoint(row.at, row.seq, row.record_id, row.chain, row.key_id, row.signature),
            )
        )
    directory = folder()
    for path in sorted(directory.glob("checkpoint-*.json")) if directory.is_dir() else []:
        try:
            found.append((f"file {path.name}", _from_document(json.loads(path.read_text()))))
        except (OSError, ValueError, KeyError, TypeError):
            found.append((f"file {path.name}", None))
    return found


def check(report: verification.Report) -> int:
    """Hold the records against every checkpoint; returns how many were checked."""
    key = public_key()
    anchor_seq = chain.anchor()[0]
    count = 0
    for origin, checkpoint in stored():
        count += 1
        if checkpoint is None:
            report.add(verification.Problem("checkpoint", f"{origin} cannot be read"))
            continue
        when = f"{checkpoint.at:%Y-%m-%d %H:%M} UTC"
        if not checkpoint.signed_by(key):
            report.add(
                verification.Problem(
                    "checkpoint",
                    f"{origin} of {when} is not signed by this portal's checkpoint key",
                )
            )
            continue
        if checkpoint.seq == 0 or checkpoint.seq <= anchor_seq:
            continue  # before the first record, or archived (the archive holds it)
        row = chain.record_at(checkpoint.seq)
        if row is None:
            report.add(
                verification.Problem(
                    "removed",
                    f"record {checkpoint.record_id} (chain position {checkpoint.seq}), "
                    f"stated by the {origin} of {when}, is missing: removed",
                    seq=checkpoint.seq,
                    record_id=checkpoint.record_id,
                )
            )
        elif row.chain != checkpoint.chain or row.id != checkpoint.record_id:
            report.add(
                verification.Problem(
                    "changed",
                    f"the chain up to position {checkpoint.seq} differs from the {origin} "
                    f"of {when}: records before it were replaced",
                    seq=checkpoint.seq,
                    record_id=row.id,
                )
            )
    return count


def verify_all(since: datetime | None = None) -> tuple[verification.Report, int]:
    """Seal, then verify the chain and every checkpoint: (report, checkpoints checked)."""
    chain.seal()
    report = verification.verify(since)
    checked = check(report)
    report.sort()
    return report, checked


def supersede_after(app: Flask, seq: int) -> int:
    """Move checkpoint files newer than `seq` aside (after a restore to an older database);
    returns how many. They are kept, in a folder named for the restore."""
    directory = folder(app)
    moved = 0
    if not directory.is_dir():
        return 0
    aside = directory / f"superseded-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    for path in sorted(directory.glob("checkpoint-*.json")):
        try:
            stated = int(json.loads(path.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if stated > seq:
            aside.mkdir(mode=0o700, exist_ok=True)
            os.replace(path, aside / path.name)
            moved += 1
    return moved
