"""The stored outcome of the newest verification of the audit chain (for the metrics, the
dashboard and the next run's alert)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select

from ..models import PortalMeta
from ..platform.extensions import db

RESULT_META = "audit.verified"  # JSON: at, intact, checked, checkpoints, first problems


@dataclass(frozen=True)
class Outcome:
    """A verification's result, as stored for the metrics and the next run."""

    at: str
    intact: bool
    checked: int
    checkpoints: int
    problems: list[dict]

    def as_json(self) -> str:
        return json.dumps(self.__dict__)


def last_result() -> Outcome | None:
    """The newest stored verification, or None before the first."""
    text = db.session.scalar(select(PortalMeta.value).where(PortalMeta.key == RESULT_META))
    if not text:
        return None
    try:
        return Outcome(**json.loads(text))
    except (ValueError, TypeError):
        return None
