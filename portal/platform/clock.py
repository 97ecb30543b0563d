"""The portal's notion of now (naive UTC); tests move it with `offset` instead of sleeping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import overload

UTC = timezone.utc  # datetime.UTC needs Python 3.11; the portal runs on 3.10 too

__all__ = ["UTC", "iso", "now", "offset", "timedelta"]

offset = timedelta(0)


def now() -> datetime:
    """Current UTC time as a naive datetime, plus the test offset."""
    return datetime.now(UTC).replace(tzinfo=None) + offset


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    """Format a stored naive-UTC datetime as ISO 8601 with a Z suffix."""
    if value is None:
        return None
    return value.replace(microsecond=0).isoformat() + "Z"
