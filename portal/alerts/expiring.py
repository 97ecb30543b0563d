"""Passwords near their expiry, as SDDC Manager reported it (expiry_date, expiry_status)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select

from ..models import Credential, Environment
from ..platform import clock
from ..platform.clock import UTC
from ..platform.extensions import db


def parse_expiry(text: str | None) -> datetime | None:
    """A stored expiry date (ISO 8601, as SDDC Manager writes it) as naive UTC, or None."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def expiry_counts(horizons: tuple[int, ...]) -> dict[int, dict]:
    """Per environment id: {"expired": n, days: n for each horizon}, of present credentials.

    A password whose date has passed (or that SDDC Manager calls EXPIRED without a date) is
    expired, and not counted as expiring; one SDDC Manager calls EXPIRING without a readable
    date counts within every horizon, so that a warning is never lost to a date format."""
    now = clock.now()
    limits = {days: now + timedelta(days=days) for days in horizons}
    result: dict[int, dict] = {}
    rows = db.session.execute(
        select(Credential.environment_id, Credential.expiry_date, Credential.expiry_status).where(
            Credential.present.is_(True),
            or_(Credential.expiry_date.is_not(None), Credential.expiry_status.is_not(None)),
        )
    )
    for environment_id, date_text, status in rows:
        counts = result.setdefault(environment_id, {"expired": 0, **dict.fromkeys(horizons, 0)})
        moment = parse_expiry(date_text)
        status = (status or "").upper()
        if moment is None:
            if status == "EXPIRED":
                counts["expired"] += 1
            elif status == "EXPIRING":
                for days in horizons:
                    counts[days] += 1
            continue
        if moment <= now:
            counts["expired"] += 1
            continue
        for days, limit in limits.items():
            if moment <= limit:
                counts[days] += 1
    return result


def summary(days: int, within: set[int] | None = None) -> dict:
    """For the dashboard: present passwords expired, and expiring within `days`, in all and
    per environment (by name), of the environments `within` (None: all)."""
    counts = {
        k: v
        for k, v in expiry_counts((days,)).items()
        if (v[days] or v["expired"]) and (within is None or k in within)
    }
    names = dict(
        db.session.execute(
            select(Environment.id, Environment.name).where(Environment.id.in_(list(counts)))
        ).all()
    )
    environments = sorted(
        (
            {
                "id": env_id,
                "name": names[env_id],
                "count": figures[days] + figures["expired"],
                "expired": figures["expired"],
            }
            for env_id, figures in counts.items()
            if env_id in names
        ),
        key=lambda e: e["name"],
    )
    return {
        "days": days,
        "expired": sum(e["expired"] for e in environments),
        "expiring": sum(e["count"] - e["expired"] for e in environments),
        "environments": environments,
    }
