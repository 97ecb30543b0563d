"""Alerts to operators: events go into an outbox in the transaction of what they report, and
the scheduler's process delivers them (delivery.py) to the channels that want them, with
retries.

`emit` only adds a row to the caller's session: it never talks to the network, so it never
blocks a sync or a request, and an event rolled back with its transaction is never sent.
Callers pass no secret: a password, token or key never goes into a subject, text or details.
"""

from __future__ import annotations

import json
import logging

from cryptography import x509
from flask import Flask
from sqlalchemy import select, update

from .. import audit
from ..models import (
    Environment,
    NotificationOutbox,
    PortalMeta,
    SyncRun,
)
from ..platform import certs, clock
from ..platform.database import changed_rows
from ..platform.extensions import db
from ..platform.text import escape_controls
from .expiring import expiry_counts

log = logging.getLogger("portal.alerts.notifications")

# Every kind of event, with the label the settings page shows.
KINDS = {
    "sync.failing": "A source failed several syncs in a row",
    "sync.recovered": "A failing source synced again",
    "expiry.digest": "Daily digest of passwords expiring soon",
    "action.succeeded": "A credential action succeeded",
    "action.failed": "A credential action failed",
    "checkout.rotation_failed": "A rotation owed after a check-out or break-glass failed",
    "credential.needs_attention": "Accounts newly need attention (unreachable, expired, stale)",
    "account.locked": "An account was locked",
    "certificate.expiring": "The portal's TLS certificate expires soon",
    "audit.tampered": "The audit log's verification found records changed, removed or added",
    "audit.forwarding_behind": "Audit forwarding to a destination is behind",
    "break_glass.copied": "A break-glass copy was written",
    "break_glass.failed": "A break-glass copy or its hand-off failed",
    "break_glass.changed": "The break-glass settings changed (recipients, folder, schedule)",
    "access.requested": "A person asks for access to a sensitive credential",
    "access.approved": "A request for access to a sensitive credential was approved",
    "access.denied": "A request for access to a sensitive credential was denied",
    "access.break_glass": "A person opened a sensitive credential alone (break-glass)",
    "policy.changed": "The rules for sensitive credentials changed (defaults or an environment's)",
}
SOURCE_LABELS = {
    "manager": "SDDC Manager",
    "installer": "VCF Installer",
    "fleet": "VCF Operations fleet management",
}
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
_MAX_SUBJECT = 200
_MAX_TEXT = 4000


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
    claimed = changed_rows(
        update(PortalMeta)
        .where(PortalMeta.key == key, PortalMeta.value != today)
        .values(value=today)
        .execution_options(synchronize_session=False)
    )
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
