"""Search of the archived audit records (archives.py), for `flask --app app audit search`,
and the note the audit page and API show when the period asked for reaches before the
database's oldest record: the archive files that hold it and the command that searches them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from ..models import AuditEvent
from ..platform import clock
from ..platform.extensions import db
from . import chain, checkpoints
from .archives import FOLDER, ArchiveError, Manifest, folder, listing, read, sha256_of

SEARCH_COMMAND = "flask --app app audit search"
NOTE_FILES = 10  # archive files a note names; beyond, it counts them


@dataclass(frozen=True)
class Query:
    """What `search` looks for: a time range [since, until), a user, an action prefix."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str = ""
    action: str = ""

    def matches(self, values: Mapping[str, Any]) -> bool:
        at = values["at"]
        return (
            (self.since is None or at >= self.since)
            and (self.until is None or at < self.until)
            and (not self.actor or values["actor"] == self.actor)
            and values["action"].startswith(self.action)
        )


def search(query: Query, problems: list[str]) -> Iterator[dict[str, Any]]:
    """The archived records that match, oldest archive first. Each archive read is checked
    (signature, SHA-256, every matching record's seal); what fails goes into `problems`."""
    key = chain.chain_key()
    public = checkpoints.public_key()
    directory = folder()
    for name, manifest in listing(directory):
        if manifest is None:
            problems.append(f"archive manifest {name} cannot be read")
            continue
        if not manifest.signed_by(public):
            problems.append(f"archive manifest {name} is not signed by this portal's key")
            continue
        if not manifest.overlaps(query.since, query.until):
            continue
        path = directory / manifest.file
        if not path.is_file():
            problems.append(f"archive file {manifest.file} ({manifest.period()}) is missing")
            continue
        if sha256_of(path) != manifest.sha256:
            problems.append(f"archive file {manifest.file} was changed since it was signed")
        try:
            for values in read(path):
                if query.matches(values):
                    if not key.verifies(values):
                        problems.append(
                            f"archived record {values['id']} in {manifest.file} was changed: "
                            "its content does not match its seal"
                        )
                    yield values
        except ArchiveError as exc:
            problems.append(f"archive file {manifest.file} cannot be read: {exc}")


# -- what the audit page and API say ---------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """Records of the period asked for may be archived: since when, where, how to search."""

    before: datetime | None  # the oldest record the database holds (None: it holds none)
    files: list[Manifest]  # the archives here that hold records of the period
    command: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "before": clock.iso(self.before),
            "folder": f"backups/{FOLDER}/",
            "files": [m.file for m in self.files[:NOTE_FILES]],
            "file_count": len(self.files),
            "search": self.command,
        }


def note(since: date | None, until: date | None) -> Note | None:
    """For the days [since, until] (None: open) that reach before the database's oldest
    record, once records were archived: which archive files hold them, and the command that
    searches them. None when the database holds the whole period, or when the archives in
    this data directory hold none of it (with none here, another node may hold them)."""
    if chain.anchor()[0] == 0:
        return None
    oldest = db.session.scalar(select(func.min(AuditEvent.at)))
    start = datetime.combine(since, time()) if since is not None else None
    end = datetime.combine(until + timedelta(days=1), time()) if until is not None else None
    if oldest is not None and start is not None and start >= oldest:
        return None
    manifests = [m for _, m in listing() if m is not None]
    files = [m for m in manifests if m.overlaps(start, end)]
    if manifests and not files:
        return None  # the archives here hold nothing of the period
    command = SEARCH_COMMAND
    if since is not None:
        command += f" --since {since.isoformat()}"
    if until is not None:
        command += f" --until {until.isoformat()}"
    return Note(before=oldest, files=files, command=command)
