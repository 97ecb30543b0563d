"""The audit chain's upkeep on the scheduler's leader: sealing every few seconds; daily the
archiving of records older than the retention, then a signed checkpoint and a full
verification (database, checkpoints and archives) whose failure raises an alert and shows in
the metrics. `flask --app app audit archive|verify` run the same on demand."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from flask import Flask, current_app

from ..alerts import notifications
from ..audit import archive_checks, chain, checkpoints, forwarding, retention, verification
from ..audit.outcomes import RESULT_META, Outcome, last_result
from ..models import AuditDestination, PortalMeta
from ..platform import clock, locks
from ..platform.extensions import db

log = logging.getLogger("portal.ops.audit_integrity")

SEAL_SECONDS = 5
ALERT_KIND = "audit.tampered"
BEHIND_KIND = "audit.forwarding_behind"
BEHIND_SECONDS = 15 * 60  # a destination that has taken nothing for this long is alerted


# How far a verification reads the archives: every record, the files against their signed
# manifests (what the daily run does: the signature covers their content), or not at all.
ArchiveDepth = Literal["records", "files", "off"]


def _verify_all(since: datetime | None, archives: ArchiveDepth) -> tuple[verification.Report, int]:
    report, checked = checkpoints.verify_all(since)
    if since is None and archives != "off":
        archive_checks.check(report, records=archives == "records")
        report.sort()
    return report, checked


def verify(
    since: datetime | None = None,
    archives: ArchiveDepth = "files",
    waiting: Callable[[], None] | None = None,
) -> tuple[verification.Report, Outcome]:
    """Seal, verify the chain, the checkpoints and (without `since`) the archives, store the
    outcome, and raise an alert when the chain is broken in a way the previous run did not
    already report. An archive run at work is waited for (`waiting` is told first)."""
    settings = current_app.config["PORTAL_SETTINGS"]
    with locks.audit_archive_lock(settings, exclusive=False, wait=False) as held:
        if held:
            return _store(*_verify_all(since, archives))
    if waiting is not None:
        waiting()
    with locks.audit_archive_lock(settings, exclusive=False, wait=True):
        return _store(*_verify_all(since, archives))


def _store(report: verification.Report, checked: int) -> tuple[verification.Report, Outcome]:
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
    """The scheduler's sealing job (every few seconds; nothing else holds it up)."""
    with app.app_context():
        try:
            _seal()
        except Exception:  # noqa: BLE001 - the next pass tries again
            db.session.rollback()
            log.exception("sealing the audit chain failed")
        finally:
            db.session.remove()


def forward_pass(app: Flask) -> None:
    """The scheduler's forwarding job: each destination on its own, so one that fails in any
    way keeps its error and its alert and holds up no other."""
    with app.app_context():
        try:
            ids = [d.id for d in forwarding.destinations()]
            db.session.rollback()
        finally:
            db.session.remove()
        for destination_id in ids:
            try:
                forwarding.deliver(destination_id)
            except Exception as exc:  # noqa: BLE001 - kept on the destination, tried again
                db.session.rollback()
                log.exception("forwarding audit records to destination %d failed", destination_id)
                _keep_error(
                    destination_id, f"internal error ({type(exc).__name__}); see portal.log"
                )
            try:
                _alert_when_behind(destination_id)
            except Exception:  # noqa: BLE001 - the next pass tries again
                db.session.rollback()
                log.exception("checking the backlog of destination %d failed", destination_id)
            finally:
                db.session.remove()


def _keep_error(destination_id: int, text: str) -> None:
    destination = db.session.get(AuditDestination, destination_id)
    if destination is not None:
        destination.last_error = text
        destination.last_error_at = clock.now()
        db.session.commit()


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


def archive(app: Flask) -> None:
    """The scheduler's daily archive run: records older than the retention leave the
    database for signed archive files."""
    with app.app_context():
        try:
            done = retention.run()
            if done.records:
                log.info(
                    "audit records archived: %d older than %s, now in %s",
                    done.records,
                    clock.iso(done.cutoff),
                    ", ".join(m.file for m in done.resumed + done.written),
                )
            if done.stopped:
                log.error("archiving the audit log stopped: %s", done.stopped)
        except retention.ArchiveBusy as exc:
            log.warning("%s", exc)
        except Exception:  # noqa: BLE001 - tomorrow's run tries again
            db.session.rollback()
            log.exception("archiving the audit log failed")
        finally:
            db.session.remove()


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
