"""The periodic job of dual control, `tick`, every TICK_SECONDS on the scheduler's leader:
check-outs whose time ran out end (and owe a rotation), and the "needs rotation" queue
takes its next step (rotation_due.py)."""

from __future__ import annotations

import logging

from flask import Flask

from ..lifecycle import actions
from ..platform.extensions import db
from . import checkouts, rotation_due

log = logging.getLogger("portal.control.jobs")

TICK_SECONDS = 30


def checkouts_and_rotations(app: Flask) -> dict[str, int]:
    """End expired check-outs, then one pass of the rotation queue; committed, and the
    scheduler woken when a rotation was queued."""
    ended = checkouts.expire_due()
    if ended:
        db.session.commit()
        log.info("%d check-out(s) ran out", ended)
    counts = rotation_due.run()
    db.session.commit()
    if counts["queued"]:
        actions.wake(app.config["PORTAL_SETTINGS"])
    return {"expired": ended, **counts}


def tick(app: Flask) -> None:
    """The job: each part on its own, so that one failing does not stop the other."""
    with app.app_context():
        for part in (checkouts_and_rotations,):
            try:
                part(app)
            except Exception:  # noqa: BLE001 - the next tick tries again
                db.session.rollback()
                log.exception("dual control: %s failed", part.__name__)
        db.session.remove()
