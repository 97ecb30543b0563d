"""The audit chain's upkeep on the scheduler's leader: sealing every few seconds, and daily a
signed checkpoint and a full verification whose failure raises an alert and shows in the
metrics. `flask --app app audit verify` runs the same verification on demand."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Flask

from ..alerts import notifications
from ..audit import chain, checkpoints, forwarding
from ..audit.outcomes import RESULT_META, Outcome, last_result
from ..models import AuditDestination, PortalMeta
from ..platform import clock
from ..platform.extensions import db

log = logging.getLogger("portal.ops.audit_integrity")

SEAL_SECONDS = 5
ALERT_KIND = "audit.tampered"
BEHIND_KIND = "audit.forwarding_behind"
BEHIND_SECONDS = 15 * 60  # a destination that has taken nothing for this long is alerted


def verify(since: datetime | None = None) -> tuple[chain.Report, Outcome]:
    """Seal, verify the chain and the checkpoints, store the outcome, and raise an alert when
    the chain is broken in a way the previous run did not already report."""
    report, checked = checkpoints.verify_all(since)
    outcome = Outcome(
        at=clock.now().isoformat(timespec="seconds") + "Z",
        intact=report.intact,
        checked=report.checked,
        checkpoints=checked,
        problems=[p.as_dict() for p in report.problems[:10]],
    )
    previous = last_result()
    row = db.session.get(PortalMeta, RESULT_META)
    if row is None:
        db.session.add(PortalMeta(key=RESULT_META, value=outcome.as_json()))
    else:
        row.value = outcome.as_json()
    if not report.intact and (previous is None or previous.problems != outcome.problems):
        first = report.problems[0]
        notifications.emit(
            ALERT_KIND,
            "The audit log was tampered with",
            f"The daily verification of the audit chain failed: {first.text}. "
            f"{len(report.problems)} problems in all. Run `flask --app app audit verify` "
            "on the portal's machine for the list, and compare with the forwarded copy.",
            {"problems": len(report.problems), "first": first.as_dict()},
        )
    db.session.commit()
    return report, outcome


def seal_pass(app: Flask) -> None:
    """The scheduler's sealing and forwarding job."""
    with app.app_context():
        try:
            _seal()
            for destination_id in [d.id for d in forwarding.destinations()]:
                forwarding.deliver(destination_id)
                _alert_when_behind(destination_id)
        except Exception:  # noqa: BLE001 - the next pass tries again
            db.session.rollback()
            log.exception("sealing or forwarding the audit chain failed")
        finally:
            db.session.remove()


def _alert_when_behind(destination_id: int) -> None:
    """Alert once when a destination has a backlog and took nothing for BEHIND_SECONDS; again
    only after it caught up."""
    destination = db.session.get(AuditDestination, destination_id)
    if destination is None:
        return
    waiting = forwarding.backlog(destination)
    since = destination.last_success_at or destination.created_at
    behind = waiting > 0 and (clock.now() - since).total_seconds() > BEHIND_SECONDS
    if behind and not destination.behind_alerted:
        notifications.emit(
            BEHIND_KIND,
            f"Audit forwarding to {destination.address} is behind",
            f"{waiting} audit records wait for {destination.kind} {destination.address}; "
            f"the last error: {destination.last_error or 'none'}. Nothing is lost: they are "
            "sent, in order, once it answers.",
            {"destination": destination.id, "backlog": waiting},
        )
        destination.behind_alerted = True
    elif waiting == 0 and destination.behind_alerted:
        destination.behind_alerted = False
    db.session.commit()


def _seal() -> None:
    done = chain.seal()
    if done.refused:
        log.warning(
            "%d audit records have no valid seal and stay out of the chain (first: %d)",
            len(done.refused),
            done.refused[0],
        )


def daily(app: Flask) -> None:
    """The scheduler's daily job: a signed checkpoint, then a full verification."""
    with app.app_context():
        try:
            checkpoint = checkpoints.make()
            report, _ = verify()
            if report.intact:
                log.info(
                    "audit chain intact: %d records, checkpoint at position %d",
                    report.checked,
                    checkpoint.seq,
                )
            else:
                log.error("audit chain verification failed: %s", report.problems[0].text)
        except Exception:  # noqa: BLE001 - tomorrow's run tries again
            db.session.rollback()
            log.exception("the daily audit verification failed to run")
        finally:
            db.session.remove()
