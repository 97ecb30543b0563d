"""Retention of the audit log: records older than `PORTAL_AUDIT_RETENTION_DAYS` (400 by
default) leave the database for signed archive files (archives.py), in chain order from the
anchor. The scheduler's leader runs it daily; `flask --app app audit archive` runs it now.

A run may be interrupted at any point and run again:

1. It seals what is committed, and finishes a run that was interrupted: the records of an
   archive already written that are still in the database are deleted.
2. It writes the next archive: the sealed records after the anchor that are older than the
   retention, contiguous in chain order, each checked against its seal and link on the way
   (one that does not verify ends the archive before it and stays in the database, where
   `audit verify` names it). The file is complete, synced and renamed, and its manifest
   signed, before any record leaves the database.
3. It deletes the archived records, read back from the file, in slices of at most
   `writes.CHUNK_ROWS`: each slice in a transaction of its own that also moves the anchor to
   its last record, so that after a crash the database begins exactly where the archives
   end, and requests never wait long for the write lock.

Archive runs take turns with one another and with verifications (`locks.audit_archive_lock`).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select

from ..models import AuditDestination, AuditEvent
from ..platform import clock, locks, writes
from ..platform.extensions import db
from . import archives, chain, checkpoints, record
from .archives import ArchiveError, Manifest

FILE_RECORDS = 50_000  # records per archive file at most
VERIFY_HINT = "run `flask --app app audit verify`"


class ArchiveBusy(Exception):
    """Another archive run holds the archive lock."""


class _Stop(Exception):
    """The run stops here, leaving the database consistent; the message says why."""


@dataclass
class ArchiveRun:
    """What one archive run did."""

    cutoff: datetime  # records older than this were due
    written: list[Manifest] = field(default_factory=list)  # archives written by this run
    resumed: list[Manifest] = field(default_factory=list)  # of an interrupted run, finished
    records: int = 0  # records that left the database
    stopped: str | None = None  # why the run stopped before the cutoff, if it did


def run(
    retention_days: int | None = None, actor: str = "system", file_records: int = FILE_RECORDS
) -> ArchiveRun:
    """Archive every sealed record older than the retention; raises ArchiveBusy when
    another run is at work. Audited as `audit.archive` when records left the database."""
    settings = current_app.config["PORTAL_SETTINGS"]
    days = retention_days or settings.audit_retention_days
    done = ArchiveRun(cutoff=clock.now() - timedelta(days=days))
    chain.seal()
    with locks.audit_archive_lock(settings, exclusive=True, wait=False) as held:
        if not held:
            raise ArchiveBusy("another archive run of the audit log is at work; try again later")
        directory = archives.folder()
        try:
            _clear_leftovers(directory)
            _finish_interrupted(directory, done)
            while done.stopped is None:
                manifest = _write_next(directory, done, file_records)
                if manifest is None:
                    break
                done.written.append(manifest)
                _delete_archived(directory, manifest, done)
        except _Stop as stop:
            done.stopped = str(stop)
    if done.records:
        _audit(done, actor)
    return done


def _clear_leftovers(directory: Path) -> None:
    """Partial files of an interrupted run, and data files whose manifest was never written
    (no record was deleted on their account): the run writes them anew."""
    if not directory.is_dir():
        return
    for path in directory.glob(".audit-*.partial"):  # archives' and manifests' alike
        path.unlink(missing_ok=True)
    anchor_seq = chain.anchor()[0]
    db.session.rollback()
    for path, first in archives.orphans(directory):
        if first > anchor_seq:
            path.unlink(missing_ok=True)


def _finish_interrupted(directory: Path, done: ArchiveRun) -> None:
    """Delete what archives already written hold and the database still has."""
    public = checkpoints.public_key()
    for name, manifest in archives.listing(directory):
        anchor_seq = chain.anchor()[0]
        db.session.rollback()
        if manifest is None or manifest.last_seq <= anchor_seq:
            continue
        if not manifest.signed_by(public):
            raise _Stop(f"archive manifest {name} is not signed by this portal; {VERIFY_HINT}")
        if manifest.first_seq > anchor_seq + 1:
            raise _Stop(
                f"archive file {manifest.file} begins at chain position {manifest.first_seq}, "
                f"but the database's archived records end at {anchor_seq}; {VERIFY_HINT}"
            )
        _delete_archived(directory, manifest, done)
        done.resumed.append(manifest)


def _due(cutoff: datetime, anchor_seq: int, file_records: int) -> int:
    """The last position the next archive may hold: the records after the anchor up to the
    first one that is not older than `cutoff`, at most `file_records` of them."""
    newer = db.session.scalar(
        select(func.min(AuditEvent.seq)).where(AuditEvent.seq > anchor_seq, AuditEvent.at >= cutoff)
    )
    last = newer - 1 if newer is not None else chain.head()[0]
    # A record leaves the database only once every forwarding destination has taken it: one
    # that is behind still gets everything, in order, when it answers again.
    forwarded = db.session.scalar(select(func.min(AuditDestination.sent_seq)))
    if forwarded is not None:
        last = min(last, forwarded)
    db.session.rollback()
    return min(last, anchor_seq + file_records)


def _unverified(key: chain.ChainKey, row: Any, expected: int, previous: str) -> str | None:
    if row.seq != expected:
        return f"records {expected}-{row.seq - 1} of the chain are missing from the database"
    if not key.verifies(row._mapping):
        return f"record {row.id} (chain position {row.seq}) does not match its seal"
    if not hmac.compare_digest(key.link(previous, row.seq, row.id, row.mac), row.chain or ""):
        return f"record {row.id} (chain position {row.seq}) is not linked where it was sealed"
    return None


def _write_next(directory: Path, done: ArchiveRun, file_records: int) -> Manifest | None:
    """Write the next archive file and its manifest; None when nothing more is due."""
    anchor_seq, anchor_chain = chain.anchor()
    last = _due(done.cutoff, anchor_seq, file_records)
    if last <= anchor_seq:
        return None
    key = chain.chain_key()
    writer = archives.Writer(directory, anchor_chain)
    problem = None
    try:
        expected, previous = anchor_seq + 1, anchor_chain
        for row in chain.sealed_rows(expected, last):
            problem = _unverified(key, row, expected, previous)
            if problem is not None:
                break
            writer.add(row._mapping)
            previous, expected = row.chain, row.seq + 1
        if problem is None and expected <= last:
            problem = f"records {expected}-{last} of the chain are missing from the database"
        if not writer.count:
            writer.abandon()
            raise _Stop(f"{problem}: nothing more is archived; {VERIFY_HINT}")
        manifest = writer.finish()
    except _Stop:
        raise
    except BaseException:
        writer.abandon()
        raise
    if problem is not None:
        done.stopped = f"{problem}: archiving stops before it; {VERIFY_HINT}"
    return manifest


def _delete_archived(directory: Path, manifest: Manifest, done: ArchiveRun) -> None:
    """Delete the records an archive holds from the database, slice by slice, as read back
    from the file; the anchor follows each slice."""
    path = directory / manifest.file
    if not path.is_file() or archives.sha256_of(path) != manifest.sha256:
        raise _Stop(f"archive file {manifest.file} does not match its manifest; {VERIFY_HINT}")
    anchor_seq, anchor_chain = chain.anchor()
    db.session.rollback()
    if anchor_seq == manifest.first_seq - 1 and manifest.previous_chain != anchor_chain:
        raise _Stop(f"archive file {manifest.file} does not continue the database's anchor")
    pending: list[tuple[int, str]] = []
    try:
        for values in archives.read(path):
            seq = values["seq"]
            if seq == anchor_seq and values["chain"] != anchor_chain:
                raise _Stop(f"archive file {manifest.file} differs from the database's anchor")
            if seq <= anchor_seq:
                continue
            pending.append((seq, values["chain"]))
            if len(pending) == writes.CHUNK_ROWS:
                _delete_slice(manifest, pending, done)
                pending = []
    except ArchiveError as exc:
        raise _Stop(f"archive file {manifest.file} cannot be read: {exc}") from None
    if pending:
        _delete_slice(manifest, pending, done)


def _delete_slice(manifest: Manifest, pending: list[tuple[int, str]], done: ArchiveRun) -> None:
    """One transaction: the records at the positions of `pending`, if the database holds
    them as archived, leave it and the anchor moves to the last of them."""
    first, last = pending[0][0], pending[-1][0]
    try:
        anchor_seq = chain.lock_anchor()[0]
        if anchor_seq != first - 1:
            raise _Stop(f"the anchor moved to {anchor_seq} while this run archived")
        stored = db.session.execute(
            select(AuditEvent.seq, AuditEvent.chain)
            .where(AuditEvent.seq >= first, AuditEvent.seq <= last)
            .order_by(AuditEvent.seq)
        ).all()
        if [tuple(row) for row in stored] != pending:
            raise _Stop(
                f"the database's records at chain positions {first}-{last} differ from "
                f"archive file {manifest.file}: they stay in the database; {VERIFY_HINT}"
            )
        db.session.execute(
            delete(AuditEvent)
            .where(AuditEvent.seq >= first, AuditEvent.seq <= last)
            .execution_options(synchronize_session=False)
        )
        chain.move_anchor(last, pending[-1][1])
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    done.records += len(pending)
    writes.let_others_write()


def _audit(done: ArchiveRun, actor: str) -> None:
    archived = done.resumed + done.written
    record(
        "audit.archive",
        f"chain positions {archived[0].first_seq}-{chain.anchor()[0]}",
        details={
            "records": done.records,
            "files": ", ".join(m.file for m in archived),
            "older_than": clock.iso(done.cutoff),
        },
        actor=actor,
    )
    db.session.commit()
