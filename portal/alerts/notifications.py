"""Alerts to operators: events go into an outbox in the transaction of what they report, and
the scheduler's process delivers them to the channels that want them, with retries.

`emit` only adds a row to the caller's session: it never talks to the network, so it never
blocks a sync or a request, and an event rolled back with its transaction is never sent.
Callers pass no secret: a password, token or key never goes into a subject, text or details.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

from cryptography import x509
from flask import Flask, current_app
from sqlalchemy import exists, select, update

from .. import audit
from ..models import (
    Environment,
    NotificationChannel,
    NotificationDelivery,
    NotificationOutbox,
    PortalMeta,
    SyncRun,
)
from ..platform import certs, clock, writes
from ..platform.extensions import db
from ..platform.text import escape_controls
from . import channels
from .expiring import expiry_counts

log = logging.getLogger("portal.alerts.notifications")

# Every kind of event, with the label the settings page shows.
KINDS = {
    "sync.failing": "A source failed several syncs in a row",
    "sync.recovered": "A failing source synced again",
    "expiry.digest": "Daily digest of passwords expiring soon",
    "action.succeeded": "A credential action succeeded",
    "action.failed": "A credential action failed",
    "account.locked": "An account was locked",
    "certificate.expiring": "The portal's TLS certificate expires soon",
}
SOURCE_LABELS = {"manager": "SDDC Manager", "installer": "VCF Installer"}
FAILING_AFTER_KEY = "notify.failing_after"
EXPIRY_DAYS_KEY = "notify.expiry_days"
DIGEST_SENT_KEY = "notify.digest_sent"
CERTIFICATE_SENT_KEY = "notify.certificate_sent"
DEFAULT_FAILING_AFTER = 3
DEFAULT_EXPIRY_DAYS = 14
FAILING_AFTER_RANGE = (1, 100)
EXPIRY_DAYS_RANGE = (1, 365)
CERTIFICATE_WARN_DAYS = 30
DIGEST_HOUR_UTC = 6  # the daily digest and certificate check go out after 06:00 UTC
# The waits after the 1st, 2nd, ... failed attempt; after the last, delivery is abandoned.
BACKOFF_SECONDS = (30, 120, 600, 3600)
PASS_SECONDS = 5
PASS_BUDGET_SECONDS = 30.0
LEASE_SECONDS = 120
KEEP_DAYS = 7
_PRUNE_EVERY = timedelta(minutes=10)
_MAX_SUBJECT = 200
_MAX_TEXT = 4000
_state: dict = {"pruned_at": None}


def _clean_text(text: str) -> str:
    lines = [escape_controls(line) for line in str(text).splitlines()]
    return "\n".join(lines)[:_MAX_TEXT]


def _clean_value(value: object, depth: int = 0) -> object:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict) and depth < 3:
        return {
            audit.clean(k, 100): _clean_value(v, depth + 1) for k, v in list(value.items())[:50]
        }
    if isinstance(value, (list, tuple)) and depth < 3:
        return [_clean_value(v, depth + 1) for v in list(value)[:50]]
    return audit.clean(value)


def emit(kind: str, subject: str, text: str, details: dict | None = None) -> None:
    """Add an event to the outbox in the caller's session (the caller commits).

    Pass no secret: subject, text and details are shown in e-mails and chat rooms. Untrusted
    text (names from SDDC Manager) is made safe here: control characters escaped, bounded."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    db.session.add(
        NotificationOutbox(
            kind=kind,
            subject=escape_controls(subject)[:_MAX_SUBJECT],
            body=_clean_text(text),
            details=json.dumps(_clean_value(details or {})),
        )
    )


# -- settings ------------------------------------------------------------------------------


def _meta_int(key: str, default: int, bounds: tuple[int, int]) -> int:
    value = db.session.scalar(select(PortalMeta.value).where(PortalMeta.key == key))
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return number if bounds[0] <= number <= bounds[1] else default


def failing_after() -> int:
    """How many failed syncs in a row make a source "failing"."""
    return _meta_int(FAILING_AFTER_KEY, DEFAULT_FAILING_AFTER, FAILING_AFTER_RANGE)


def expiry_days() -> int:
    """The daily digest lists passwords expiring within this many days."""
    return _meta_int(EXPIRY_DAYS_KEY, DEFAULT_EXPIRY_DAYS, EXPIRY_DAYS_RANGE)


def _set_meta(key: str, value: str) -> None:
    row = db.session.get(PortalMeta, key)
    if row is None:
        db.session.add(PortalMeta(key=key, value=value))
    else:
        row.value = value


def set_thresholds(failing: int, days: int) -> None:
    """Save the two thresholds and audit the change (the caller commits)."""
    for name, value, bounds in (
        ("failing_after", failing, FAILING_AFTER_RANGE),
        ("expiry_days", days, EXPIRY_DAYS_RANGE),
    ):
        if not bounds[0] <= value <= bounds[1]:
            raise ValueError(f"{name} must be between {bounds[0]} and {bounds[1]}")
    previous = {"failing_after": failing_after(), "expiry_days": expiry_days()}
    _set_meta(FAILING_AFTER_KEY, str(failing))
    _set_meta(EXPIRY_DAYS_KEY, str(days))
    audit.record(
        "settings.notifications",
        "thresholds",
        details={"failing_after": failing, "expiry_days": days, "previous": previous},
    )


# -- events --------------------------------------------------------------------------------


def _source_name(environment_id: int, source: str) -> tuple[str, str]:
    env = db.session.get(Environment, environment_id)
    return (env.name if env else str(environment_id)), SOURCE_LABELS.get(source, source)


def sync_ended(environment_id: int, source: str, state: str, error: str | None) -> None:
    """Where a run's outcome is recorded, in its transaction: announce a source that just
    reached N failures in a row, or that synced after such a streak."""
    threshold = failing_after()
    recent = db.session.scalars(
        select(SyncRun.state)
        .where(
            SyncRun.environment_id == environment_id,
            SyncRun.source == source,
            SyncRun.state.in_(("success", "partial", "failed")),
        )
        .order_by(SyncRun.finished_at.desc(), SyncRun.id.desc())
        .limit(threshold + 1)
    ).all()
    if not recent:
        return
    env_name, source_label = _source_name(environment_id, source)
    where = f"{env_name} / {source_label}"
    details = {"environment": env_name, "environment_id": environment_id, "source": source}
    if state == "failed":
        streak = 0
        for value in recent:
            if value != "failed":
                break
            streak += 1
        if streak == threshold:  # announced once, when the streak reaches the threshold
            emit(
                "sync.failing",
                f"Sync failing: {where} ({threshold} in a row)",
                f"The last {threshold} syncs of {source_label} in environment {env_name} "
                f"failed.\nLast error: {error or 'unknown'}",
                {**details, "failures": threshold, "error": error or ""},
            )
    elif state in ("success", "partial"):
        before = recent[1:]
        if len(before) >= threshold and all(v == "failed" for v in before[:threshold]):
            emit(
                "sync.recovered",
                f"Sync recovered: {where}",
                f"{source_label} in environment {env_name} synced again ({state}) after "
                f"at least {threshold} failed syncs.",
                {**details, "state": state},
            )


def account_locked(username: str, minutes: int) -> None:
    """An account was locked after wrong passwords or codes (the caller commits)."""
    emit(
        "account.locked",
        f"Account locked: {username}",
        f"The account {username} was locked for {minutes} minutes after repeated failed "
        "sign-ins or re-authentications. The audit log shows from where.",
        {"username": username, "minutes": minutes},
    )


def _claim_day(key: str) -> bool:
    """True once per UTC day per key, whichever process asks (a conditional UPDATE)."""
    today = clock.now().date().isoformat()
    row = db.session.get(PortalMeta, key)
    if row is None:
        db.session.add(PortalMeta(key=key, value=today))
        db.session.flush()
        return True
    claimed = db.session.execute(
        update(PortalMeta)
        .where(PortalMeta.key == key, PortalMeta.value != today)
        .values(value=today)
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def expiry_digest() -> bool:
    """Emit the digest of passwords expiring within the configured days; False when none."""
    days = expiry_days()
    counts = expiry_counts((days,))
    names = dict(db.session.execute(select(Environment.id, Environment.name)).all())
    per_env = {
        names.get(env_id, str(env_id)): {"expiring": c[days], "expired": c["expired"]}
        for env_id, c in sorted(counts.items())
        if c[days] or c["expired"]
    }
    if not per_env:
        return False
    expiring = sum(v["expiring"] for v in per_env.values())
    expired = sum(v["expired"] for v in per_env.values())
    lines = [f"{expiring} passwords expire within {days} days; {expired} have expired."]
    lines += [
        f"- {name}: {v['expiring']} expiring, {v['expired']} expired" for name, v in per_env.items()
    ]
    emit(
        "expiry.digest",
        f"{expiring} passwords expire within {days} days",
        "\n".join(lines),
        {"within_days": days, "expiring": expiring, "expired": expired, "environments": per_env},
    )
    return True


def certificate_check(app: Flask) -> bool:
    """Emit certificate.expiring when the served certificate expires within 30 days."""
    path = app.config["PORTAL_SETTINGS"].ssl_dir / "cert.pem"
    try:
        described = certs.describe(x509.load_pem_x509_certificate(path.read_bytes()))
    except (OSError, ValueError):
        return False
    days_left = described["days_left"]
    if days_left > CERTIFICATE_WARN_DAYS:
        return False
    state = "has expired" if days_left < 0 else f"expires in {days_left} days"
    emit(
        "certificate.expiring",
        f"The portal's TLS certificate {state}",
        f"The certificate the portal serves ({described['subject']}) {state}, on "
        f"{described['not_after']}. Replace it on Settings → TLS certificate.",
        {
            "days_left": days_left,
            "not_after": described["not_after"],
            "subject": described["subject"],
            "sha256": described["sha256"],
        },
    )
    return True


def daily_checks(app: Flask) -> None:
    """Once a day after DIGEST_HOUR_UTC: the expiry digest and the certificate check."""
    if clock.now().hour < app.config.get("NOTIFY_DIGEST_HOUR", DIGEST_HOUR_UTC):
        return
    if _claim_day(DIGEST_SENT_KEY):
        expiry_digest()
        db.session.commit()
    if _claim_day(CERTIFICATE_SENT_KEY):
        certificate_check(app)
        db.session.commit()
    db.session.commit()


# -- delivery ------------------------------------------------------------------------------


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
    claimed = db.session.execute(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.id == delivery_id,
            NotificationDelivery.state == "pending",
            NotificationDelivery.attempts == attempts,
            NotificationDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    ).rowcount
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
