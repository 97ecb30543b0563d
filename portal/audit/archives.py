"""Archive files of the audit log: records older than the retention leave the database for
compressed, signed files beside the backups (retention.py moves them); this module writes and
reads those files (archive_checks.py verifies them, archive_search.py searches them).

An archive is two files in `PORTAL_DATA_DIR/backups/audit-archive/`, named for the first and
last chain position they hold:

- `audit-<first>-<last>.jsonl.gz`: gzip'd JSON lines, one record per line in chain order,
  with every field the database had (`id`, `at`, `actor`, `ip`, `action`, `target`,
  `outcome`, `details`, `nonce`, `mac`, `seq`, `chain`), so each record's seal and link can
  be checked with the chain key as in the database.
- `audit-<first>-<last>.manifest.json`: what the file holds (its SHA-256, the number of
  records, the first and last position, the link before the first and the last link, the
  oldest and newest record's time), signed with the checkpoint key (Ed25519).

The archives continue one another (each one's link before its first record is the previous
one's last link) and the database's first record links to the last archived one: the anchor
(`chain.ANCHOR_META`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import secrets
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from ..platform import clock
from . import chain, checkpoints

FOLDER = "audit-archive"
FORMAT = "vcf-portal-audit-archive/1"
DATA_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
RECORD_KEYS = tuple(column.key for column in chain.FIELDS)
_STEM = re.compile(r"^audit-(\d{12})-(\d{12})$")
_INTEGERS = ("id", "seq")
_TEXTS = ("at", "actor", "action", "target", "outcome", "nonce", "mac", "chain")


class ArchiveError(Exception):
    """An archive file cannot be read (not gzip, cut short, or a line that is no record)."""


def folder(app: Flask | None = None) -> Path:
    """The archive folder, beside the backups."""
    app = app or current_app
    return app.config["PORTAL_SETTINGS"].data_dir / "backups" / FOLDER


def stem(first_seq: int, last_seq: int) -> str:
    """The name of the archive of positions `first_seq` to `last_seq`, without suffix."""
    return f"audit-{first_seq:012d}-{last_seq:012d}"


def _stamp(at: datetime) -> str:
    return at.replace(tzinfo=None).isoformat(timespec="microseconds")


def encode(values: Mapping[str, Any]) -> bytes:
    """One record as its archive line."""
    line = {name: values[name] for name in RECORD_KEYS}
    line["at"] = _stamp(values["at"])
    return json.dumps(line, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """An archive line as the record's values (`at` a datetime); ValueError if it is none."""
    values = json.loads(line)
    if not isinstance(values, dict) or set(values) != set(RECORD_KEYS):
        raise ValueError("not an audit record")
    for name in _INTEGERS:
        if type(values[name]) is not int:
            raise ValueError(f"{name} is not a number")
    for name in RECORD_KEYS:
        if name not in _INTEGERS and not isinstance(values[name], str | None):
            raise ValueError(f"{name} is not text")
    if any(values[name] is None for name in _TEXTS):
        raise ValueError("a field is missing")
    values["at"] = datetime.fromisoformat(values["at"])
    return values


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an archive file, in order; ArchiveError names what cannot be read."""
    number = 0
    try:
        with gzip.open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):  # noqa: B007 - named in the error
                try:
                    values = decode(line)
                except ValueError:
                    raise ArchiveError(f"line {number} is not an audit record") from None
                yield values
    except (OSError, EOFError, zlib.error):
        raise ArchiveError(f"it is damaged after line {number}") from None


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


@dataclass(frozen=True)
class Manifest:
    """What an archive file holds; `signature` covers `payload()`."""

    file: str
    sha256: str
    records: int
    first_seq: int
    last_seq: int
    previous_chain: str  # the link before the first record ("" before position 1)
    last_chain: str
    first_at: datetime  # the oldest record's time
    last_at: datetime  # the newest record's time
    created: datetime
    key_id: str
    signature: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "file": self.file,
            "sha256": self.sha256,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "previous_chain": self.previous_chain,
            "last_chain": self.last_chain,
            "first_at": _stamp(self.first_at) + "Z",
            "last_at": _stamp(self.last_at) + "Z",
            "created": self.created.replace(microsecond=0).isoformat() + "Z",
            "key": self.key_id,
        }

    def payload(self) -> bytes:
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode("ascii")

    def document(self) -> dict[str, Any]:
        """The manifest file's content."""
        return {**self.body(), "signature": self.signature}

    def signed_by(self, key: Any) -> bool:
        return checkpoints.signed(self.payload(), self.signature, self.key_id, key)

    def overlaps(self, since: datetime | None, until: datetime | None) -> bool:
        """Whether it holds records of [since, until) (None: open)."""
        return (until is None or self.first_at < until) and (since is None or self.last_at >= since)

    def period(self) -> str:
        return f"{self.first_at:%Y-%m-%d %H:%M} to {self.last_at:%Y-%m-%d %H:%M} UTC"


def _from_document(name: str, data: dict) -> Manifest:
    if data.get("format") != FORMAT:
        raise ValueError("not an archive manifest")
    manifest = Manifest(
        file=str(data["file"]),
        sha256=str(data["sha256"]),
        records=int(data["records"]),
        first_seq=int(data["first_seq"]),
        last_seq=int(data["last_seq"]),
        previous_chain=str(data["previous_chain"]),
        last_chain=str(data["last_chain"]),
        first_at=_utc(str(data["first_at"])),
        last_at=_utc(str(data["last_at"])),
        created=_utc(str(data["created"])),
        key_id=str(data["key"]),
        signature=str(data["signature"]),
    )
    # The data file is the manifest's namesake: a manifest never points elsewhere.
    if manifest.file != name.removesuffix(MANIFEST_SUFFIX) + DATA_SUFFIX:
        raise ValueError("names another file")
    return manifest


def listing(directory: Path | None = None) -> list[tuple[str, Manifest | None]]:
    """Every manifest in the folder, in chain order, by file name (None: unreadable)."""
    directory = directory or folder()
    if not directory.is_dir():
        return []
    found: list[tuple[str, Manifest | None]] = []
    for path in sorted(directory.glob(f"audit-*{MANIFEST_SUFFIX}")):
        try:
            found.append((path.name, _from_document(path.name, json.loads(path.read_text()))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            found.append((path.name, None))
    return found


def orphans(directory: Path) -> list[tuple[Path, int]]:
    """Data files without a manifest, with the first position their name states."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob(f"audit-*{DATA_SUFFIX}")):
        name = path.name.removesuffix(DATA_SUFFIX)
        match = _STEM.match(name)
        if match and not (directory / (name + MANIFEST_SUFFIX)).exists():
            found.append((path, int(match[1])))
    return found


def _write_durably(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _sync_folder(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Writer:
    """One archive being written: records are added in chain order to a partial file;
    `finish` makes it durable under its name and writes its signed manifest, `abandon`
    removes it."""

    def __init__(self, directory: Path, previous_chain: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        self.directory = directory
        self.previous_chain = previous_chain
        self.count = 0
        self.first_seq = self.last_seq = 0
        self.last_chain = previous_chain
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None
        self._partial = directory / f".audit-{secrets.token_hex(6)}.partial"
        fd = os.open(self._partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._raw = os.fdopen(fd, "wb")
        # mtime 0 and no name: the same records always make the same bytes.
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)

    def add(self, values: Mapping[str, Any]) -> None:
        self._gzip.write(encode(values))
        if not self.count:
            self.first_seq = values["seq"]
        self.count += 1
        self.last_seq, self.last_chain = values["seq"], values["chain"]
        at = values["at"]
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)

    def finish(self) -> Manifest:
        """Sync and rename the file, then sign and write its manifest; returns it."""
        if self.first_at is None or self.last_at is None:
            raise ValueError("an archive holds one record at least")
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        name = stem(self.first_seq, self.last_seq)
        key_id = checkpoints.fingerprint(checkpoints.public_key())
        unsigned = Manifest(
            file=name + DATA_SUFFIX,
            sha256=sha256_of(self._partial),
            records=self.count,
            first_seq=self.first_seq,
            last_seq=self.last_seq,
            previous_chain=self.previous_chain,
            last_chain=self.last_chain,
            first_at=self.first_at,
            last_at=self.last_at,
            created=clock.now().replace(microsecond=0),
            key_id=key_id,
        )
        signature, _ = checkpoints.sign(unsigned.payload())
        manifest = Manifest(**{**unsigned.__dict__, "signature": signature})
        os.replace(self._partial, self.directory / manifest.file)
        document = json.dumps(manifest.document(), indent=2) + "\n"
        _write_durably(self.directory / (name + MANIFEST_SUFFIX), document.encode("ascii"))
        _sync_folder(self.directory)
        return manifest

    def abandon(self) -> None:
        """Forget the partial file (nothing was deleted on its account)."""
        try:
            self._gzip.close()
            self._raw.close()
        finally:
            self._partial.unlink(missing_ok=True)
