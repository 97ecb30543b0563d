"""Verification of the audit chain: every sealed record's MAC and link in chain order, the head
(database, file), copies of records, and records left unsealed. `verify` names the first record
changed, removed, inserted or moved; checkpoints.py and archive_checks.py add their findings to
the same `Report`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from ..models import AuditEvent
from ..platform.extensions import db
from . import chain
from .chain import ChainKey

MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Problem:
    """One finding of `verify`, with the record it names."""

    kind: str  # changed, removed, inserted, moved, checkpoint
    text: str
    seq: int | None = None
    record_id: int | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "seq": self.seq, "record": self.record_id}


@dataclass
class Report:
    """The outcome of `verify`."""

    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False  # more problems than MAX_PROBLEMS
    archives: int = 0  # archive files checked (archives.py)
    archived: int = 0  # records read from them

    @property
    def intact(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.truncated = True

    def sort(self) -> None:
        """Problems in chain order, the first record changed, removed or inserted first."""
        self.problems.sort(key=lambda p: (p.seq is None, p.seq or 0, p.record_id or 0))


def _start(since: datetime | None, report: Report) -> tuple[int, str | None]:
    """The first seq to check and the chain value before it (None: not checkable)."""
    if since is not None:
        first = db.session.scalar(select(db.func.min(AuditEvent.seq)).where(AuditEvent.at >= since))
        if first is None:
            return chain.head()[0] + 1, None
        before = db.session.scalar(select(AuditEvent.chain).where(AuditEvent.seq == first - 1))
        return first, before
    first = db.session.scalar(select(db.func.min(AuditEvent.seq)))
    archived, archived_chain = chain.anchor()
    if first is None:
        return archived + 1, archived_chain
    if first <= archived:
        return first, None  # archived records still here (an interrupted archive run)
    if first > archived + 1:
        report.add(
            Problem(
                "removed",
                f"records {archived + 1}-{first - 1} of the chain are missing: removed",
                seq=archived + 1,
            )
        )
        return first, None
    return first, archived_chain


def verify(since: datetime | None = None) -> Report:
    """Check every sealed record's MAC and link, the head, and that no record without a valid
    MAC hides among them. Read-only; call `seal` first to include the newest records."""
    key = chain.chain_key()
    report = Report()
    # The head first: what a sealer adds while this runs is after it, and not looked at.
    top = chain.head()
    expected, previous = _start(since, report)
    report.first_seq = expected
    for row in chain.sealed_rows(expected, top[0]):
        if row.seq != expected:
            report.add(
                Problem(
                    "removed",
                    f"records {expected}-{row.seq - 1} of the chain are missing (removed), "
                    f"just before record {row.id}",
                    seq=expected,
                    record_id=row.id,
                )
            )
            previous = None
        if not chain.valid(key, row):
            report.add(
                Problem(
                    "changed",
                    f"record {row.id} (chain position {row.seq}, {row.at:%Y-%m-%d %H:%M:%S}) "
                    "was changed: its content does not match its seal",
                    seq=row.seq,
                    record_id=row.id,
                )
            )
        elif previous is not None and not hmac.compare_digest(
            key.link(previous, row.seq, row.id, row.mac), row.chain or ""
        ):
            report.add(
                Problem(
                    "moved",
                    f"record {row.id} (chain position {row.seq}) is not where it was sealed: "
                    "a record was inserted, moved or renumbered there",
                    seq=row.seq,
                    record_id=row.id,
                )
            )
        previous = row.chain
        expected = row.seq + 1
        report.checked += 1
    report.last_seq = expected - 1
    _check_copies(report)
    _check_head(report, top, previous, since)
    _check_head_file(report)
    _check_unsealed(key, report)
    return report


def _check_head(
    report: Report, top: tuple[int, str], last_chain: str | None, since: datetime | None
) -> None:
    seq, chain = top
    last = report.last_seq or 0
    if seq > last:
        report.add(
            Problem(
                "removed",
                f"the newest records of the chain, {last + 1}-{seq}, are missing: removed",
                seq=last + 1,
            )
        )
    elif seq < last:
        report.add(
            Problem(
                "inserted",
                f"records {seq + 1}-{last} were added to the chain after its head",
                seq=seq + 1,
            )
        )
    elif seq and last_chain is not None and chain != last_chain and since is None:
        report.add(Problem("changed", "the chain's head does not match its newest record", seq))


def _check_copies(report: Report) -> None:
    """Two records with one nonce: one is a copy (possible only with the index dropped)."""
    copies = db.session.execute(
        select(AuditEvent.nonce, db.func.max(AuditEvent.id))
        .where(AuditEvent.nonce.is_not(None))
        .group_by(AuditEvent.nonce)
        .having(db.func.count() > 1)
    ).all()
    for _, newest in copies:
        report.add(
            Problem(
                "inserted",
                f"record {newest} was inserted: it is a copy of another record",
                record_id=newest,
            )
        )


def _check_head_file(report: Report) -> None:
    """The head the last seal on this node left in its file must still be in the chain."""
    noted = chain.head_file()
    if noted is None or noted[0] == 0 or noted[0] <= chain.anchor()[0]:
        return
    row = chain.record_at(noted[0])
    if row is None or row.chain != noted[1]:
        report.add(
            Problem(
                "removed",
                f"records up to chain position {noted[0]}, there at this node's last seal "
                f"({chain.HEAD_FILE} in its data directory), are missing or replaced: removed",
                seq=noted[0],
                record_id=row.id if row is not None else None,
            )
        )


def _check_unsealed(key: ChainKey, report: Report) -> None:
    rows = db.session.execute(
        select(*chain.FIELDS).where(AuditEvent.seq.is_(None)).order_by(AuditEvent.id)
    ).all()
    oldest = chain.oldest_sealable(chain.head()[0])
    for row in rows:
        if not chain.valid(key, row):
            report.add(
                Problem(
                    "inserted",
                    f"record {row.id} ({row.at:%Y-%m-%d %H:%M:%S}, {row.action}) was inserted: "
                    "it has no valid seal",
                    record_id=row.id,
                )
            )
        elif oldest is not None and row.at < oldest:
            report.add(
                Problem(
                    "inserted",
                    f"record {row.id} ({row.at:%Y-%m-%d %H:%M:%S}, {row.action}) was inserted: "
                    "a copy of a record from long before the newest in the chain",
                    record_id=row.id,
                )
            )
