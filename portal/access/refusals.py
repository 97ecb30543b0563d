"""Every refusal of a signed-in person or an API token is audited, once (ASVS V7.2.2).

One rule for every route, pages and API alike: an answer of 403 (not allowed) or 404 (not
found, which is also how the portal hides what a person may not see) to an authenticated
principal becomes an `access.denied` record with the actor, the path, the method and the
reason the answer gave. Routes that audit their own refusal (a re-authentication needed, a
wrong password) are not recorded twice. Nothing of a refused request is kept: its pending
changes are rolled back before the record is written.

So that a probe cannot flood the trail, each process records at most LIMIT_PER_MINUTE
refusals per actor a minute; the first one over the limit is recorded once as
`rate-limited`, the rest only counted in the log.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, Response, g, request
from flask_login import current_user

from .. import audit
from ..platform.extensions import db

log = logging.getLogger("portal.access.refusals")

LIMIT_PER_MINUTE = 20
REFUSED = (403, 404)
_counts: dict[tuple[str, int], int] = {}
_lock = threading.Lock()


def _reason(response: Response) -> str:
    if response.is_json:
        body = response.get_json(silent=True)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"][:200]
    return str(g.get("refusal_reason") or response.status)[:200]


def reset() -> None:
    """Forget this process's counts (tests)."""
    with _lock:
        _counts.clear()


def _minute() -> int:
    return int(time.monotonic() // 60)


def _count(actor: str) -> int:
    minute = _minute()
    with _lock:
        for key in [key for key in _counts if key[1] < minute]:
            del _counts[key]
        _counts[(actor, minute)] = _counts.get((actor, minute), 0) + 1
        return _counts[(actor, minute)]


def _audit_refusal(response: Response) -> Response:
    if response.status_code not in REFUSED or g.get("refusal_audited"):
        return response
    if request.endpoint in (None, "static") or not current_user.is_authenticated:
        return response  # no route (a mistyped address) refuses nothing; files are files
    actor = current_user.username
    count = _count(actor)
    if count > LIMIT_PER_MINUTE + 1:
        log.info("refusal of %s not audited (over %d a minute)", actor, LIMIT_PER_MINUTE)
        return response
    details = {"method": request.method, "status": response.status_code}
    if count > LIMIT_PER_MINUTE:
        outcome, details["reason"] = (
            "rate-limited",
            (
                f"more than {LIMIT_PER_MINUTE} refusals a minute: the next ones this minute are "
                "only counted in portal.log"
            ),
        )
    else:
        outcome, details["reason"] = "denied", _reason(response)
    try:
        db.session.rollback()
        audit.record("access.denied", request.path, outcome=outcome, details=details)
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - the answer stands; the log says what was lost
        db.session.rollback()
        log.warning("a refusal of %s could not be audited (%s)", actor, type(exc).__name__)
    return response


def init_app(app: Flask) -> None:
    """Audit refusals after every request."""
    app.after_request(_audit_refusal)
