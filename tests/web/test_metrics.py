"""GET /metrics: who may read it, and figures that match the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import PASSWORD, client_for, make_app

from portal.identity import tokens
from portal.models import Credential, CredentialCheckout, User
from portal.platform import clock
from portal.platform.extensions import db


def _token(app, scope: str = "read", owner: str = "bob") -> str:
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == owner))
        _, value = tokens.create(user, "prometheus", scope, 30, None)
        db.session.commit()
    return value


def _samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_token_is_needed_without_an_allowed_address(app, anon):
    answer = anon.client.get("/metrics")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    bad = anon.client.get("/metrics", headers={"Authorization": "Bearer vcfp_nope"})
    assert bad.status_code == 401
    good = anon.client.get("/metrics", headers={"Authorization": f"Bearer {_token(app)}"})
    assert good.status_code == 200
    assert good.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert good.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in good.headers


def test_allowed_networks(tmp_path):
    allowed = make_app(tmp_path / "a", PORTAL_METRICS_ALLOW="127.0.0.0/8, ::1")
    assert client_for(allowed).get("/metrics").status_code == 200
    elsewhere = make_app(tmp_path / "b", PORTAL_METRICS_ALLOW="10.0.0.0/8")
    assert client_for(elsewhere).get("/metrics").status_code == 403


def test_a_bad_network_stops_the_start(tmp_path):
    from portal.platform.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="PORTAL_METRICS_ALLOW"):
        load_settings({"PORTAL_DATA_DIR": str(tmp_path), "PORTAL_METRICS_ALLOW": "nonsense"})


def test_figures_match_the_database(app, synced, anon):
    sim, env = synced
    with app.app_context():
        now = clock.now()
        creds = db.session.scalars(db.select(Credential).order_by(Credential.id)).all()
        for cred in creds:
            cred.expiry_date, cred.expiry_status = None, None
        for cred, days in zip(creds[:4], (3, 6, 20, -1), strict=True):
            cred.expiry_date = clock.iso(now + timedelta(days=days))
        # Two rotations owed (one failed once) and one check-out held.
        for cred, attempts in ((creds[5], 0), (creds[6], 1)):
            cred.rotation_due_since, cred.rotation_due_reason = now, "checkin"
            cred.rotation_attempts = attempts
        db.session.add(
            CredentialCheckout(
                credential_id=creds[7].id,
                environment_id=creds[7].environment_id,
                holder_name="bob",
                reason="metrics",
                due_at=now + timedelta(hours=1),
            )
        )
        db.session.commit()
    for _ in range(5):
        anon.login("bob", "wrong password!!")
    anon.login("carol-unknown", PASSWORD)
    answer = anon.client.get("/metrics", headers={"Authorization": f"Bearer {_token(app)}"})
    assert answer.status_code == 200
    samples = _samples(answer.get_data(as_text=True))
    key = (("environment", "sfo"), ("source", "manager"))
    runs = (("environment", "sfo"), ("outcome", "success"), ("source", "manager"))
    assert samples[("vcf_portal_sync_runs_total", runs)] == 1
    assert samples[("vcf_portal_sync_duration_seconds_count", (("source", "manager"),))] == 1
    assert samples[("vcf_portal_credentials", key)] == 120
    assert samples[("vcf_portal_credentials_absent", key)] == 0
    assert samples[("vcf_portal_source_last_sync_ok", key)] == 1
    assert samples[("vcf_portal_source_last_success_timestamp_seconds", key)] > 1.7e9
    refused = sum(
        v for (name, _), v in samples.items() if name == "vcf_portal_signin_failures_total"
    )
    assert refused == 6
    assert samples[("vcf_portal_account_lockouts_total", ())] == 1
    assert samples[("vcf_portal_credential_actions", (("state", "failed"),))] == 0
    for days, count in ((7, 2), (30, 3)):
        labels = (("environment", "sfo"), ("within_days", str(days)))
        assert samples[("vcf_portal_passwords_expiring", labels)] == count
    assert samples[("vcf_portal_passwords_expired", (("environment", "sfo"),))] == 1
    assert samples[("vcf_portal_notifications_pending", ())] == 0
    assert samples[("vcf_portal_credentials_rotation_due", (("failing", "yes"),))] == 1
    assert samples[("vcf_portal_credentials_rotation_due", (("failing", "no"),))] == 1
    assert samples[("vcf_portal_checkouts_active", ())] == 1
    bucket = samples[
        ("vcf_portal_sync_duration_seconds_bucket", (("le", "+Inf"), ("source", "manager")))
    ]
    assert bucket == 1


def test_the_duration_histogram_on_postgresql(tmp_path, pg_url):
    from portal.alerts import metrics
    from portal.models import Environment, SyncRun

    app = make_app(tmp_path, DATABASE_URL=pg_url)
    try:
        with app.app_context():
            env = Environment(name="pg")
            db.session.add(env)
            db.session.flush()
            start = clock.now()
            for seconds, state in ((3, "success"), (40, "failed")):
                db.session.add(
                    SyncRun(
                        environment_id=env.id,
                        source="manager",
                        trigger="manual",
                        state=state,
                        started_at=start,
                        finished_at=start + timedelta(seconds=seconds),
                    )
                )
            db.session.commit()
            samples = _samples(metrics.exposition().decode())
    finally:
        with app.app_context():
            db.engine.dispose()
    bucket = "vcf_portal_sync_duration_seconds_bucket"
    assert samples[(bucket, (("le", "5.0"), ("source", "manager")))] == 1
    assert samples[(bucket, (("le", "60.0"), ("source", "manager")))] == 2
    assert samples[("vcf_portal_sync_duration_seconds_sum", (("source", "manager"),))] == 43


def test_a_token_of_someone_who_sees_only_some_environments_is_refused(app, anon):
    with app.app_context():
        db.session.add(User(username="mia", role="member", password_hash="x"))
        db.session.commit()
    refused = anon.client.get(
        "/metrics", headers={"Authorization": f"Bearer {_token(app, owner='mia')}"}
    )
    assert refused.status_code == 403
