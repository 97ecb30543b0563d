"""Delivery of alerts: the scheduler's process sends each outbox row to the channels that
want it, with retries and backoff, under a lease so that two processes never send one twice;
old rows are pruned. Also the test message of a channel and the recent failures."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import exists, select, update

from .. import audit
from ..models import (
    NotificationChannel,
    NotificationDelivery,
    NotificationOutbox,
)
from ..platform import clock, writes
from ..platform.database import changed_rows
from ..platform.extensions import db
from . import channels
from .notifications import daily_checks

log = logging.getLogger("portal.alerts.delivery")

# The waits after the 1st, 2nd, ... failed attempt; after the last, delivery is abandoned.
BACKOFF_SECONDS = (30, 120, 600, 3600)
PASS_SECONDS = 5
PASS_BUDGET_SECONDS = 30.0
LEASE_SECONDS = 120
KEEP_DAYS = 7
_PRUNE_EVERY = timedelta(minutes=10)
_state: dict = {"pruned_at": None}


def message_of(row: NotificationOutbox) -> channels.Message:
    """The outbox row as channels send it."""
    try:
        details = json.loads(row.details or "{}")
    except ValueError:
        details = {}
    return channels.Message(
        kind=row.kind,
        subject=row.subject,
        body=row.body,
        details=details if isinstance(details, dict) else {},
        at=clock.iso(row.created_at) or "",
    )


def dispatch() -> int:
    """Give every new outbox row a delivery per enabled channel that wants its kind."""
    rows = db.session.scalars(
        select(NotificationOutbox)
        .where(NotificationOutbox.dispatched_at.is_(None))
        .order_by(NotificationOutbox.id)
        .limit(200)
    ).all()
    if not rows:
        return 0
    wanted = [
        (channel.id, set(channels.events_of(channel)))
        for channel in db.session.scalars(
            select(NotificationChannel).where(NotificationChannel.enabled.is_(True))
        )
    ]
    now = clock.now()
    for row in rows:
        for channel_id, kinds in wanted:
            if row.kind in kinds:
                db.session.add(
                    NotificationDelivery(
                        outbox_id=row.id, channel_id=channel_id, next_attempt_at=now
                    )
                )
        row.dispatched_at = now
    db.session.commit()
    return len(rows)


def _backoff() -> tuple[int, ...]:
    return tuple(current_app.config.get("NOTIFY_BACKOFF_SECONDS", BACKOFF_SECONDS))


def _claim_delivery(delivery_id: int, attempts: int) -> bool:
    now = clock.now()
    claimed = changed_rows(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.id == delivery_id,
            NotificationDelivery.state == "pending",
            NotificationDelivery.attempts == attempts,
            NotificationDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return claimed == 1


def record_result(channel: NotificationChannel, error: str | None) -> None:
    """Note a channel's last success or failure (the caller commits)."""
    now = clock.now()
    if error is None:
        channel.last_success_at = now
    else:
        channel.last_failure_at = now
        channel.last_error = error
        channel.failure_count = (channel.failure_count or 0) + 1


def deliver_one(delivery_id: int) -> str | None:
    """Claim a due delivery and carry out one attempt; its new state, or None if not ours."""
    delivery = db.session.get(NotificationDelivery, delivery_id)
    if delivery is None or not _claim_delivery(delivery.id, delivery.attempts):
        return None
    db.session.refresh(delivery)
    channel, message = delivery.channel, message_of(delivery.outbox)
    db.session.refresh(channel)
    # Nothing is held open in the database while the channel's server answers (or not):
    # the channel is read, detached, and the transaction ends before the attempt.
    db.session.expunge(channel)
    db.session.commit()
    error = None
    if not channel.enabled:
        error = "the channel is disabled"
    else:
        try:
            channels.send(channel, message)
        except channels.DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad channel must not stop the others
            log.exception("notification %s: unexpected %s", delivery.id, type(exc).__name__)
            error = f"internal error ({type(exc).__name__}); see the log"
    now = clock.now()
    delivery = db.session.get(NotificationDelivery, delivery_id)
    stored = db.session.get(NotificationChannel, channel.id)
    if delivery is None or stored is None:
        return "deleted"  # the channel was removed meanwhile, and its deliveries with it
    channel = stored
    delivery.attempts += 1
    delivery.last_attempt_at = now
    if error is None:
        delivery.state, delivery.finished_at = "delivered", now
    else:
        delivery.error = error
        waits = _backoff()
        if delivery.attempts > len(waits) or not channel.enabled:
            delivery.state, delivery.finished_at = "abandoned", now
            log.warning(
                "notification %s to channel %s abandoned after %d attempts: %s",
                delivery.id,
                audit.clean(channel.name),
                delivery.attempts,
                error,
            )
        else:
            delivery.next_attempt_at = now + timedelta(seconds=waits[delivery.attempts - 1])
            log.info(
                "notification %s to channel %s failed (attempt %d): %s",
                delivery.id,
                audit.clean(channel.name),
                delivery.attempts,
                error,
            )
    if channel.enabled:
        record_result(channel, error)
    db.session.commit()
    return delivery.state


def deliver_due(budget_seconds: float = PASS_BUDGET_SECONDS) -> int:
    """Attempt the deliveries that are due, oldest first, for at most `budget_seconds`."""
    deadline = time.monotonic() + budget_seconds
    due = db.session.scalars(
        select(NotificationDelivery.id)
        .where(
            NotificationDelivery.state == "pending",
            NotificationDelivery.next_attempt_at <= clock.now(),
        )
        .order_by(NotificationDelivery.id)
        .limit(50)
    ).all()
    db.session.commit()
    done = 0
    for delivery_id in due:
        if time.monotonic() > deadline:
            break
        if deliver_one(delivery_id) is not None:
            done += 1
    return done


def prune(keep_days: int = KEEP_DAYS) -> None:
    """Forget finished deliveries and their events after `keep_days` (outbox stays bounded)."""
    limit = clock.now() - timedelta(days=keep_days)
    writes.delete_in_chunks(
        NotificationDelivery,
        NotificationDelivery.state != "pending",
        NotificationDelivery.finished_at < limit,
    )
    pending = exists().where(NotificationDelivery.outbox_id == NotificationOutbox.id)
    writes.delete_in_chunks(NotificationOutbox, NotificationOutbox.dispatched_at < limit, ~pending)


def run_pass(app: Flask) -> None:
    """The scheduler's job, every few seconds: daily checks, fan-out, due deliveries, and
    now and then the pruning of old rows. Never raises."""
    with app.app_context():
        try:
            daily_checks(app)
            dispatch()
            deliver_due()
            now = clock.now()
            if _state["pruned_at"] is None or now - _state["pruned_at"] > _PRUNE_EVERY:
                prune()
                _state["pruned_at"] = now
        except Exception as exc:  # noqa: BLE001 - the next pass tries again
            db.session.rollback()
            log.error("notification pass failed: %s", type(exc).__name__, exc_info=True)
        finally:
            db.session.remove()


def send_test(channel: NotificationChannel, actor: str) -> str | None:
    """Send a test message to one channel now; None when it arrived, else the error. The
    result is noted on the channel and audited (the caller commits)."""
    message = channels.Message(
        kind="test",
        subject="Test message from the VCF Credential Portal",
        body=f"{actor} sent this test to the channel {channel.name}. It carries no secret.",
        details={"channel": channel.name},
        at=clock.iso(clock.now()) or "",
    )
    try:
        channels.send(channel, message)
        error = None
    except channels.DeliveryError as exc:
        error = str(exc)
    record_result(channel, error)
    audit.record(
        "settings.notification_test",
        channel.name,
        outcome="success" if error is None else "failure",
        details={"error": error} if error else None,
    )
    return error


def recent_failures(limit: int = 20) -> list[dict]:
    """The last failed attempts, newest first, for the settings page (errors hold no secret)."""
    rows = db.session.execute(
        select(NotificationDelivery, NotificationChannel.name, NotificationOutbox.kind)
        .join(NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id)
        .join(NotificationOutbox, NotificationOutbox.id == NotificationDelivery.outbox_id)
        .where(NotificationDelivery.error.is_not(None))
        .order_by(NotificationDelivery.last_attempt_at.desc(), NotificationDelivery.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "channel": name,
            "kind": kind,
            "at": clock.iso(delivery.last_attempt_at),
            "attempts": delivery.attempts,
            "state": delivery.state,
            "next_attempt_at": clock.iso(delivery.next_attempt_at)
            if delivery.state == "pending"
            else None,
            "error": delivery.error,
        }
        for delivery, name, kind in rows
    ]
