"""Prometheus metrics read from the database at scrape time.

Every figure comes from the tables, not from counters in a process, so any worker of any node
gives the same answer: a fresh registry with this collector is built for each scrape.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from sqlalchemy import case, extract, func, select

from ..audit import outcomes
from ..models import (
    AuditEvent,
    Credential,
    CredentialAction,
    CredentialCheckout,
    Endpoint,
    Environment,
    NotificationChannel,
    NotificationDelivery,
    SyncRun,
)
from ..platform.clock import UTC
from ..platform.extensions import db
from ..version import __version__
from . import attention
from .expiring import expiry_counts

PREFIX = "vcf_portal"
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800)
EXPIRY_HORIZONS = (7, 30)
FINISHED = ("success", "partial", "failed")
ACTION_STATES = ("queued", "running", "success", "partial", "failed", "cancelled")


def _duration_seconds():
    """The SQL expression of a run's duration in seconds, for either database."""
    if db.engine.dialect.name == "sqlite":
        return (func.julianday(SyncRun.finished_at) - func.julianday(SyncRun.started_at)) * 86400.0
    return extract("epoch", SyncRun.finished_at - SyncRun.started_at)


def _names() -> dict[int, str]:
    return dict(db.session.execute(select(Environment.id, Environment.name)).all())


class PortalCollector:
    """Collects every figure in a few aggregate queries."""

    def collect(self):
        """Yield the metric families (called once per scrape)."""
        names = _names()
        yield from self._info()
        yield from self._syncs(names)
        yield from self._sources(names)
        yield from self._expiry(names)
        yield from self._attention(names)
        yield from self._actions()
        yield from self._signins()
        yield from self._notifications()
        yield from self._audit()

    def _info(self):
        info = GaugeMetricFamily(f"{PREFIX}_info", "The portal's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _syncs(self, names):
        runs = CounterMetricFamily(
            f"{PREFIX}_sync_runs",
            "Finished sync runs by environment, source and outcome.",
            labels=["environment", "source", "outcome"],
        )
        for env_id, source, state, count in db.session.execute(
            select(SyncRun.environment_id, SyncRun.source, SyncRun.state, func.count())
            .where(SyncRun.state.in_(FINISHED))
            .group_by(SyncRun.environment_id, SyncRun.source, SyncRun.state)
        ):
            if env_id in names:
                runs.add_metric([names[env_id], source, state], count)
        yield runs
        duration = _duration_seconds()
        columns = [func.count(), func.coalesce(func.sum(duration), 0.0)]
        columns += [func.sum(case((duration <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
        histogram = HistogramMetricFamily(
            f"{PREFIX}_sync_duration_seconds",
            "How long finished sync runs took, by source.",
            labels=["source"],
        )
        for source, count, total, *within in db.session.execute(
            select(SyncRun.source, *columns)
            .where(
                SyncRun.state.in_(FINISHED),
                SyncRun.started_at.is_not(None),
                SyncRun.finished_at.is_not(None),
            )
            .group_by(SyncRun.source)
        ):
            buckets = [
                (str(float(b)), int(n or 0)) for b, n in zip(DURATION_BUCKETS, within, strict=True)
            ]
            histogram.add_metric([source], buckets + [("+Inf", count)], float(total or 0))
        yield histogram

    def _sources(self, names):
        labels = ["environment", "source"]
        last_success = GaugeMetricFamily(
            f"{PREFIX}_source_last_success_timestamp_seconds",
            "When each source last synced successfully (or partly), Unix time.",
            labels=labels,
        )
        healthy = GaugeMetricFamily(
            f"{PREFIX}_source_last_sync_ok",
            "1 when the source's last sync succeeded (or partly), 0 when it failed.",
            labels=labels,
        )
        present = GaugeMetricFamily(
            f"{PREFIX}_credentials", "Credentials present upstream.", labels=labels
        )
        absent = GaugeMetricFamily(
            f"{PREFIX}_credentials_absent",
            "Credentials kept but gone upstream.",
            labels=labels,
        )
        for endpoint in db.session.scalars(select(Endpoint)):
            key = [
                names.get(endpoint.environment_id, str(endpoint.environment_id)),
                endpoint.source,
            ]
            if endpoint.last_success_at is not None:
                stamp = endpoint.last_success_at.replace(tzinfo=UTC).timestamp()
                last_success.add_metric(key, stamp)
            if endpoint.last_status is not None:
                healthy.add_metric(key, 0 if endpoint.last_status == "failed" else 1)
            present.add_metric(key, endpoint.credential_count)
            absent.add_metric(key, endpoint.absent_count)
        yield from (last_success, healthy, present, absent)

    def _expiry(self, names):
        expiring = GaugeMetricFamily(
            f"{PREFIX}_passwords_expiring",
            "Present credentials whose password expires within the given days (not yet expired).",
            labels=["environment", "within_days"],
        )
        expired = GaugeMetricFamily(
            f"{PREFIX}_passwords_expired",
            "Present credentials whose password has expired.",
            labels=["environment"],
        )
        counts = expiry_counts(EXPIRY_HORIZONS)
        for env_id, name in sorted(names.items(), key=lambda item: item[1]):
            figures = counts.get(env_id, {"expired": 0, **dict.fromkeys(EXPIRY_HORIZONS, 0)})
            for days in EXPIRY_HORIZONS:
                expiring.add_metric([name, str(days)], figures[days])
            expired.add_metric([name], figures["expired"])
        yield from (expiring, expired)

    def _attention(self, names):
        gauge = GaugeMetricFamily(
            f"{PREFIX}_accounts_needing_attention",
            "Present accounts on the needs-attention list, by reason (connectivity, expired, "
            "expiry_unknown, stale_spec).",
            labels=["environment", "reason"],
        )
        counts = attention.counts()
        for env_id, name in sorted(names.items(), key=lambda item: item[1]):
            for kind, value in counts.get(env_id, dict.fromkeys(attention.KINDS, 0)).items():
                gauge.add_metric([name, kind], value)
        yield gauge

    def _actions(self):
        actions = GaugeMetricFamily(
            f"{PREFIX}_credential_actions",
            "Credential actions (rotate, update, remediate, auto-rotate) by state.",
            labels=["state"],
        )
        found = dict(
            db.session.execute(
                select(CredentialAction.state, func.count()).group_by(CredentialAction.state)
            ).all()
        )
        for state in dict.fromkeys((*ACTION_STATES, *found)):
            actions.add_metric([state], found.get(state, 0))
        yield actions
        # Rotations owed after a check-out or break-glass, and the check-outs held now.
        owed = GaugeMetricFamily(
            f"{PREFIX}_credentials_rotation_due",
            "Credentials whose rotation the portal owes; failing: an attempt failed.",
            labels=["failing"],
        )
        due = Credential.rotation_due_since.is_not(None)
        for label, where in (
            ("no", Credential.rotation_attempts == 0),
            ("yes", Credential.rotation_attempts > 0),
        ):
            count = db.session.scalar(select(func.count(Credential.id)).where(due, where))
            owed.add_metric([label], count or 0)
        yield owed
        held = GaugeMetricFamily(f"{PREFIX}_checkouts_active", "Credentials checked out now.")
        held.add_metric(
            [],
            db.session.scalar(
                select(func.count(CredentialCheckout.id)).where(
                    CredentialCheckout.ended_at.is_(None)
                )
            )
            or 0,
        )
        yield held

    def _signins(self):
        failures = CounterMetricFamily(
            f"{PREFIX}_signin_failures",
            "Refused sign-ins by reason (from the audit log).",
            labels=["outcome"],
        )
        for outcome, count in db.session.execute(
            select(AuditEvent.outcome, func.count())
            .where(AuditEvent.action == "auth.login", AuditEvent.outcome != "success")
            .group_by(AuditEvent.outcome)
        ):
            failures.add_metric([outcome], count)
        yield failures
        lockouts = CounterMetricFamily(
            f"{PREFIX}_account_lockouts", "Accounts locked after failed sign-ins."
        )
        lockouts.add_metric(
            [],
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "auth.lockout")
            )
            or 0,
        )
        yield lockouts

    def _notifications(self):
        failures = CounterMetricFamily(
            f"{PREFIX}_notification_failures",
            "Failed notification delivery attempts, by channel.",
            labels=["channel"],
        )
        for name, count in db.session.execute(
            select(NotificationChannel.name, NotificationChannel.failure_count)
        ):
            failures.add_metric([name], count)
        yield failures
        pending = GaugeMetricFamily(
            f"{PREFIX}_notifications_pending", "Notifications waiting for (another) attempt."
        )
        pending.add_metric(
            [],
            db.session.scalar(
                select(func.count())
                .select_from(NotificationDelivery)
                .where(NotificationDelivery.state == "pending")
            )
            or 0,
        )
        yield pending

    def _audit(self):
        outcome = outcomes.last_result()
        intact = GaugeMetricFamily(
            f"{PREFIX}_audit_chain_intact",
            "1 when the newest verification of the audit chain found it intact, 0 when it "
            "found records changed, removed or inserted (absent before the first).",
        )
        verified = GaugeMetricFamily(
            f"{PREFIX}_audit_verified_timestamp_seconds",
            "When the audit chain was last verified (Unix time).",
        )
        if outcome is not None:
            intact.add_metric([], 1 if outcome.intact else 0)
            at = datetime.fromisoformat(outcome.at.removesuffix("Z")).replace(tzinfo=UTC)
            verified.add_metric([], at.timestamp())
        yield intact
        yield verified
        unsealed = GaugeMetricFamily(
            f"{PREFIX}_audit_unsealed_records",
            "Audit records not yet in the chain (sealed every few seconds by the scheduler).",
        )
        unsealed.add_metric(
            [],
            db.session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.seq.is_(None))
            )
            or 0,
        )
        yield unsealed


def exposition() -> bytes:
    """The metrics in Prometheus' text format, read now from the database."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    return generate_latest(registry)
