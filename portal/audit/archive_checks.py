"""Verification of the audit archives (archives.py): each archive file against its signed
manifest, every archived record's seal and link with the chain key, the archives against one
another (each continues the one before, from the chain's first position), and the last of
them against the database's anchor, which the database's first record links to
(`verification.verify` checks that link). `audit verify` runs it after the database's check.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from . import chain, checkpoints
from .archives import ArchiveError, Manifest, folder, listing, orphans, read, sha256_of
from .chain import ChainKey
from .verification import Problem, Report


@dataclass
class _Seen:
    """What reading the archives found, for the checks across them."""

    manifests: list[Manifest] = field(default_factory=list)
    wanted: set[int] = field(default_factory=set)  # the anchor's and checkpoints' positions
    links: dict[int, tuple[int, str]] = field(default_factory=dict)  # there: (id, link)


def check(report: Report, records: bool = True) -> None:
    """Hold the archives against their signed manifests, one another and the database's
    anchor; with `records`, also every archived record's seal and link (otherwise only
    files whose SHA-256 differs, or that the anchor falls inside, are read)."""
    directory = folder()
    anchor_seq, anchor_chain = chain.anchor()
    if not anchor_seq and not directory.is_dir():
        return  # nothing was ever archived here
    stated = _archived_checkpoints(anchor_seq)
    seen = _Seen(manifests=_signed_manifests(directory, report), wanted={anchor_seq, *stated})
    for path, first in orphans(directory):
        if first <= anchor_seq:
            report.add(
                Problem(
                    "archive",
                    f"archive file {path.name} has no manifest: it cannot be verified",
                    seq=first,
                )
            )
    key = chain.chain_key()
    for manifest in seen.manifests:
        report.archives += 1
        path = directory / manifest.file
        if not path.is_file():
            report.add(
                Problem(
                    "removed",
                    f"archive file {manifest.file} (chain positions {manifest.first_seq}-"
                    f"{manifest.last_seq}, {manifest.period()}) is missing",
                    seq=manifest.first_seq,
                )
            )
            continue
        changed = sha256_of(path) != manifest.sha256
        if changed:
            report.add(
                Problem(
                    "changed",
                    f"archive file {manifest.file} was changed: its SHA-256 does not match "
                    "its signed manifest",
                    seq=manifest.first_seq,
                )
            )
        inside = manifest.first_seq <= anchor_seq < manifest.last_seq
        if records or changed or inside:
            _check_records(key, manifest, path, report, anchor_seq, seen)
    archived_up_to = _check_sequence(seen.manifests, report)
    _check_anchor(seen, anchor_seq, anchor_chain, archived_up_to, report)
    _check_checkpoints(seen, stated, report)


def _signed_manifests(directory: Path, report: Report) -> list[Manifest]:
    public = checkpoints.public_key()
    trusted = []
    for name, manifest in listing(directory):
        if manifest is None:
            report.add(Problem("archive", f"archive manifest {name} cannot be read"))
        elif not manifest.signed_by(public):
            report.add(
                Problem(
                    "archive",
                    f"archive manifest {name} is not signed by this portal's checkpoint key",
                    seq=manifest.first_seq,
                )
            )
        else:
            trusted.append(manifest)
    return sorted(trusted, key=lambda m: (m.first_seq, m.last_seq))


def _record_problems(
    key: ChainKey, values: dict, expected: int, previous: str | None, where: str
) -> list[Problem]:
    """What is wrong with one archived record, read after position `expected` - 1 whose
    link was `previous` (None: not known)."""
    seq, record_id = values["seq"], values["id"]
    found = []
    if seq != expected:
        found.append(
            Problem(
                "removed",
                f"archived records {expected}-{seq - 1} are missing from {where}, just before "
                f"record {record_id}",
                seq=expected,
                record_id=record_id,
            )
        )
        previous = None
    if not key.verifies(values):
        found.append(
            Problem(
                "changed",
                f"archived record {record_id} (chain position {seq}, "
                f"{values['at']:%Y-%m-%d %H:%M:%S}) in {where} was changed: its content does "
                "not match its seal",
                seq=seq,
                record_id=record_id,
            )
        )
    elif previous is not None and not hmac.compare_digest(
        key.link(previous, seq, record_id, values["mac"]), values["chain"]
    ):
        found.append(
            Problem(
                "moved",
                f"archived record {record_id} (chain position {seq}) in {where} is not where "
                "it was sealed: a record was inserted, moved or renumbered there",
                seq=seq,
                record_id=record_id,
            )
        )
    return found


def _check_records(
    key: ChainKey,
    manifest: Manifest,
    path: Path,
    report: Report,
    anchor_seq: int,
    seen: _Seen,
) -> None:
    where = f"archive file {manifest.file}"
    expected, previous = manifest.first_seq, manifest.previous_chain
    count = 0
    try:
        for values in read(path):
            for problem in _record_problems(key, values, expected, previous, where):
                report.add(problem)
            previous, expected = values["chain"], values["seq"] + 1
            if values["seq"] in seen.wanted:
                seen.links[values["seq"]] = (values["id"], values["chain"])
            count += 1
    except ArchiveError as exc:
        report.add(Problem("archive", f"{where} cannot be read: {exc}", seq=expected))
        return
    finally:
        report.archived += count
    if (count, expected - 1, previous) != (
        manifest.records,
        manifest.last_seq,
        manifest.last_chain,
    ):
        report.add(
            Problem(
                "archive",
                f"{where} does not hold what its manifest states: {manifest.records} records, "
                f"chain positions {manifest.first_seq}-{manifest.last_seq}",
                seq=manifest.first_seq,
            )
        )


def _check_sequence(manifests: list[Manifest], report: Report) -> int:
    """Each archive continues the one before; returns the last position they cover."""
    expected, previous = 1, ""
    for manifest in manifests:
        if manifest.first_seq > expected:
            report.add(
                Problem(
                    "removed",
                    f"records {expected}-{manifest.first_seq - 1} of the chain are in no "
                    f"archive file: the archive before {manifest.file} is missing",
                    seq=expected,
                )
            )
        elif manifest.first_seq < expected:
            report.add(
                Problem(
                    "archive",
                    f"archive file {manifest.file} overlaps the archive before it",
                    seq=manifest.first_seq,
                )
            )
        elif manifest.previous_chain != previous:
            report.add(
                Problem(
                    "moved",
                    f"archive file {manifest.file} does not continue the archive before it: "
                    "its first record was not linked to that archive's last",
                    seq=manifest.first_seq,
                )
            )
        expected = max(expected, manifest.last_seq + 1)
        previous = manifest.last_chain
    return expected - 1


def _check_anchor(
    seen: _Seen, anchor_seq: int, anchor_chain: str, archived_up_to: int, report: Report
) -> None:
    if anchor_seq and archived_up_to < anchor_seq:
        report.add(
            Problem(
                "removed",
                f"records {archived_up_to + 1}-{anchor_seq}, archived out of the database, are "
                "in no archive file: missing",
                seq=archived_up_to + 1,
            )
        )
    for manifest in seen.manifests:
        if anchor_seq and manifest.first_seq <= anchor_seq <= manifest.last_seq:
            if manifest.last_seq == anchor_seq:
                link: str | None = manifest.last_chain
            else:
                archived = seen.links.get(anchor_seq)
                link = archived[1] if archived is not None else None
            if link is not None and link != anchor_chain:
                report.add(
                    Problem(
                        "changed",
                        f"archive file {manifest.file} and the database's anchor differ at "
                        f"chain position {anchor_seq}: the database does not continue the "
                        "archives",
                        seq=anchor_seq,
                    )
                )
        if manifest.last_seq > anchor_seq:
            # An archive run was interrupted: these records are in the database as well.
            row = chain.record_at(manifest.last_seq)
            if row is not None and row.chain != manifest.last_chain:
                report.add(
                    Problem(
                        "changed",
                        f"archive file {manifest.file} and the database differ at chain "
                        f"position {manifest.last_seq}",
                        seq=manifest.last_seq,
                        record_id=row.id,
                    )
                )


def _archived_checkpoints(anchor_seq: int) -> dict[int, list[tuple[str, checkpoints.Checkpoint]]]:
    """The signed checkpoints of positions archived away (`checkpoints.check` leaves them to
    the archives), by position."""
    key = checkpoints.public_key()
    found: dict[int, list[tuple[str, checkpoints.Checkpoint]]] = {}
    for origin, checkpoint in checkpoints.stored():
        if checkpoint is not None and 0 < checkpoint.seq <= anchor_seq:
            if checkpoint.signed_by(key):  # an unsigned one is named by checkpoints.check
                found.setdefault(checkpoint.seq, []).append((origin, checkpoint))
    return found


def _check_checkpoints(
    seen: _Seen, stated: dict[int, list[tuple[str, checkpoints.Checkpoint]]], report: Report
) -> None:
    """Each checkpoint of an archived position against the archived record there (when it
    was read): an archive rewritten before it, even with valid seals, differs."""
    for seq, found in stated.items():
        archived = seen.links.get(seq)
        if archived is None:
            continue  # not read (`--archives files`), or its archive is named missing
        for origin, checkpoint in found:
            if archived != (checkpoint.record_id, checkpoint.chain):
                report.add(
                    Problem(
                        "changed",
                        f"the archived chain up to position {seq} differs from the {origin} "
                        f"of {checkpoint.at:%Y-%m-%d %H:%M} UTC: archived records before it "
                        "were replaced",
                        seq=seq,
                        record_id=archived[0],
                    )
                )
