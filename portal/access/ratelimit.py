"""Reveals and exports per minute, per token or per session (PORTAL_REVEALS_PER_MINUTE), and
connection tests per minute and user (TESTS_PER_MINUTE: the test reaches any host and port).

Counted in the database, so the limit holds across workers and nodes; the first refusal of a
window is audited, the others only answered (429 with Retry-After).
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, request
from flask_login import current_user
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import TooManyRequests

from .. import audit
from ..identity.sessions import current_session
from ..models import RateWindow
from ..platform import clock
from ..platform.extensions import db

WINDOW = timedelta(minutes=1)
TESTS_PER_MINUTE = 10
_KEEP = timedelta(minutes=10)


def _subject() -> str:
    token = g.get("api_token")
    if token is not None:
        return f"token:{token.id}"
    row = current_session()
    if row is not None:
        return f"session:{row.id[:32]}"
    return f"user:{current_user.get_id()}"


def _count(subject: str, window) -> int:
    bump = (
        update(RateWindow)
        .where(RateWindow.subject == subject, RateWindow.window_start == window)
        .values(count=RateWindow.count + 1)
        .returning(RateWindow.count)
    )
    count = db.session.execute(bump).scalar_one_or_none()
    if count is None:
        db.session.execute(delete(RateWindow).where(RateWindow.window_start < window - _KEEP))
        try:
            with db.session.begin_nested():
                db.session.add(RateWindow(subject=subject, window_start=window, count=1))
            count = 1
        except IntegrityError:  # another worker opened the window first
            count = db.session.execute(bump).scalar_one()
    db.session.commit()
    return count


def _over(subject: str, limit: int, what: str) -> None:
    now = clock.now()
    window = now.replace(second=0, microsecond=0)
    count = _count(subject, window)
    if count <= limit:
        return
    if count == limit + 1:  # the first refusal of the window is audited, the rest answered
        audit.record(
            "rate_limit",
            request.path,
            outcome="blocked",
            details={"limit_per_minute": limit, "subject": subject.split(":")[0]},
        )
        db.session.commit()
    retry = max(1, int((window + WINDOW - now).total_seconds()) + 1)
    raise TooManyRequests(f"More than {limit} {what} a minute; retry later.", retry_after=retry)


def enforce() -> None:
    """Count a reveal or an export; over the limit, raise 429 (the error handlers answer JSON
    under /api/ and a page elsewhere, with Retry-After)."""
    limit = current_app.config["PORTAL_SETTINGS"].reveals_per_minute
    _over(_subject(), limit, "reveals and exports")


def enforce_tests() -> None:
    """Count a connection test of this user; over TESTS_PER_MINUTE, raise 429."""
    _over(f"test:{current_user.get_id()}", TESTS_PER_MINUTE, "connection tests")
