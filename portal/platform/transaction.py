"""One transaction per request: what a page or API handler adds to the session is committed
once, after the handler, when the answer is a success (below 400), and rolled back otherwise.

Handlers and services never commit. Two things say more than the status can:

- `keep()`: the answer is a refusal, but what the request wrote must stay (the audit record
  of a failed attempt, a single-use challenge spent);
- `after_commit(callback)`: work that must follow the commit, such as waking the scheduler
  for a queued action.

Background jobs (syncs, actions, expiry checks, deliveries) commit on their own, in short
chunks; so do the few security counters that must survive a failed request (sign-in
attempts, rate limits, refusals) and the claim of a sync run under its unique index.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, g

from .extensions import db


def keep() -> None:
    """Commit this request's work even though its answer is an error."""
    g.transaction_keep = True


def after_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once this request's work is committed (never after a rollback)."""
    g.setdefault("transaction_after_commit", []).append(callback)


def _end(response: Response) -> Response:
    callbacks = g.pop("transaction_after_commit", [])
    if response.status_code < 400 or g.pop("transaction_keep", False):
        db.session.commit()
        for callback in callbacks:
            callback()
    else:
        db.session.rollback()
    return response


def init_app(app: Flask) -> None:
    """Register last among the after-request hooks, so that it runs first (Flask runs them in
    reverse): the handler's work is ended before any hook writes its own records."""
    app.after_request(_end)
