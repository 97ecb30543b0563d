"""What the audit page and API read: the filters they share (user, action prefix, first and
last UTC day), the query of the records that match, and a record as JSON."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, select

from ..models import AuditEvent
from ..platform.clock import iso

# The last day stops short of date.max, so the day after `until` still exists.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(9998, 12, 31)


class AuditQuery(BaseModel):
    """The filters of the audit log: user, action prefix, first and last day (UTC)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    actor: str = Field("", max_length=128)
    action: str = Field("", max_length=64)
    since: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY)
    until: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY)


def select_events(filters: AuditQuery) -> Select[AuditEvent]:
    """The records in the database that match, newest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if filters.actor:
        query = query.where(AuditEvent.actor == filters.actor)
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action))
    if filters.since is not None:
        query = query.where(AuditEvent.at >= datetime.combine(filters.since, time()))
    if filters.until is not None:
        day_after = datetime.combine(filters.until + timedelta(days=1), time())
        query = query.where(AuditEvent.at < day_after)
    return query


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """A record as the API answers it (its seal and link stay out: they prove, not tell;
    `audit verify` checks them)."""
    return {
        "id": event.id,
        "at": iso(event.at),
        "actor": event.actor,
        "ip": event.ip,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "details": event.details,
    }
