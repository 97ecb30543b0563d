"""Search of the archived audit records (archives.py), for `flask --app app audit search`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import chain, checkpoints
from .archives import ArchiveError, folder, listing, read, sha256_of


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
