"""Alerts: events into the outbox, delivered to a real SMTP server and an HTTPS webhook
receiver on loopback; retries, failures shown, and never a password in any message."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pyrage
import pytest
from receivers import SMTP_PASSWORD, WEBHOOK_SECRET, smtp_server, webhook_receiver
from sqlalchemy import func, select, update
from support import PASSWORD

from portal import sync
from portal.alerts import channels, delivery, notifications
from portal.audit import forwarding
from portal.control import policies, rotation_due
from portal.control import requests as control_requests
from portal.models import (
    AccessRequest,
    AuditEvent,
    Credential,
    Endpoint,
    Environment,
    NotificationChannel,
    NotificationDelivery,
    NotificationOutbox,
    PasswordHistory,
    User,
)
from portal.ops import audit_integrity, break_glass, break_glass_settings
from portal.platform import certs, clock
from portal.platform.crypto import CREDENTIAL_PASSWORD, ENDPOINT_PASSWORD, HISTORY_PASSWORD, cipher
from portal.platform.extensions import db
from portal.vcf import VcfError

ALL_KINDS = list(notifications.KINDS)


def _channel(kind: str, form: dict, events=None) -> int:
    channel = NotificationChannel(kind=kind, name="", events="[]", config="{}")
    channels.apply_form(channel, {**form, "events": events or ALL_KINDS}, tuple(ALL_KINDS))
    db.session.add(channel)
    db.session.commit()
    return channel.id


def _deliver_all(rounds: int = 3) -> None:
    for _ in range(rounds):
        delivery.dispatch()
        delivery.deliver_due()


def _failing_fetch(settings):
    raise VcfError("refused", "connection refused by sddc.example:443")


def _sync(env_id: int, fetch=None):
    run = sync.request_sync(env_id, "manager", "manual", "alice")
    return sync.execute_run(run.id, fetch=fetch)


def _kinds_in_outbox() -> list[str]:
    return list(db.session.scalars(select(NotificationOutbox.kind).order_by(NotificationOutbox.id)))


def _clear_outbox() -> None:
    """Drop what the fixture's sync announced (the accounts that need attention, tested in
    tests/test_attention.py): the test looks at other kinds."""
    db.session.execute(NotificationOutbox.__table__.delete())
    db.session.commit()


def test_emit_only_adds_to_the_callers_session(app):
    with app.app_context():
        notifications.emit("action.failed", "Rotate failed\x1b[31m", "line 1\nline\x002")
        assert db.session.new  # nothing written until the caller commits
        db.session.rollback()
        assert _kinds_in_outbox() == []
        notifications.emit("action.failed", "Rotate failed\x1b[31m", "a\nb\x00", {"n": 1})
        db.session.commit()
        row = db.session.scalar(select(NotificationOutbox))
        assert row.subject == "Rotate failed\\x1b[31m"
        assert row.body == "a\nb\\x00"
        assert json.loads(row.details) == {"n": 1}
        with pytest.raises(ValueError):
            notifications.emit("no.such.kind", "x", "y")


def test_sync_failing_after_n_in_a_row_once_then_recovered(app, synced):
    _, env = synced
    with app.app_context():
        _clear_outbox()
        notifications.set_thresholds(2, 14)
        db.session.commit()
        _sync(env["id"], _failing_fetch)
        assert _kinds_in_outbox() == []
        _sync(env["id"], _failing_fetch)
        assert _kinds_in_outbox() == ["sync.failing"]
        _sync(env["id"], _failing_fetch)  # the third failure is not announced again
        assert _kinds_in_outbox() == ["sync.failing"]
        assert _sync(env["id"]).state == "success"
        assert _kinds_in_outbox() == ["sync.failing", "sync.recovered"]
        assert _sync(env["id"]).state == "success"
        assert _kinds_in_outbox() == ["sync.failing", "sync.recovered"]
        failing = db.session.scalar(
            select(NotificationOutbox).where(NotificationOutbox.kind == "sync.failing")
        )
        assert "sfo / SDDC Manager" in failing.subject
        assert "connection refused" in failing.body
        assert json.loads(failing.details)["failures"] == 2


def test_a_locked_account_is_announced(app, anon):
    for _ in range(5):
        anon.login("bob", "wrong password!!")
    with app.app_context():
        rows = db.session.scalars(select(NotificationOutbox)).all()
        assert [r.kind for r in rows] == ["account.locked"]
        assert json.loads(rows[0].details) == {"username": "bob", "minutes": 15}


def test_expiry_digest_counts_from_the_credentials_table(app, synced):
    _, env = synced
    with app.app_context():
        _clear_outbox()
        now = clock.now()
        creds = db.session.scalars(
            select(Credential).where(Credential.environment_id == env["id"]).order_by(Credential.id)
        ).all()
        for cred in creds:
            cred.expiry_date, cred.expiry_status = None, None
        for cred, days in zip(creds[:6], (3, 10, 13, 20, 40, -2), strict=True):
            cred.expiry_date = (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        creds[6].expiry_status = "EXPIRED"  # no date: counted as expired
        db.session.commit()
        assert notifications.expiry_digest()
        row = db.session.scalar(select(NotificationOutbox))
        details = json.loads(row.details)
        assert (details["expiring"], details["expired"], details["within_days"]) == (3, 2, 14)
        assert details["environments"] == {"sfo": {"expiring": 3, "expired": 2}}
        assert row.subject == "3 passwords expire within 14 days"


def test_daily_checks_run_once_a_day(app, tmp_path):
    app.config["NOTIFY_DIGEST_HOUR"] = 0
    ssl_dir = app.config["PORTAL_SETTINGS"].ssl_dir
    ssl_dir.mkdir(parents=True, exist_ok=True)
    certs.generate_self_signed(ssl_dir / "cert.pem", ssl_dir / "key.pem", days=10)
    with app.app_context():
        notifications.daily_checks(app)
        notifications.daily_checks(app)
        assert _kinds_in_outbox() == ["certificate.expiring"]  # nothing expires: no digest
        details = json.loads(db.session.scalar(select(NotificationOutbox.details)))
        assert details["days_left"] in (9, 10)
        clock.offset = timedelta(days=1)
        notifications.daily_checks(app)
        assert _kinds_in_outbox() == ["certificate.expiring"] * 2


def _every_secret(app) -> list[str]:
    """Every password the portal stores, decrypted, and the channels' secrets."""
    data_cipher = cipher(app)
    found = [SMTP_PASSWORD, WEBHOOK_SECRET, "s3cr3t-path-token"]
    for blob in db.session.scalars(select(Credential.password_enc)):
        if blob is not None:
            found.append(data_cipher.decrypt(blob, CREDENTIAL_PASSWORD))
    for blob in db.session.scalars(select(PasswordHistory.password_enc)):
        found.append(data_cipher.decrypt(blob, HISTORY_PASSWORD))
    for blob in db.session.scalars(select(Endpoint.password_enc)):
        found.append(data_cipher.decrypt(blob, ENDPOINT_PASSWORD))
    return [secret for secret in found if len(secret) >= 4]


def test_every_event_kind_arrives_by_mail_and_webhook_without_a_password(
    app, synced, anon, tmp_path
):
    _, env = synced
    app.config["NOTIFY_DIGEST_HOUR"] = 0
    ssl_dir = app.config["PORTAL_SETTINGS"].ssl_dir
    ssl_dir.mkdir(parents=True, exist_ok=True)
    certs.generate_self_signed(ssl_dir / "cert.pem", ssl_dir / "key.pem", days=5)
    with (
        smtp_server(tmp_path, "starttls") as mail,
        webhook_receiver(tmp_path) as hook,
        webhook_receiver(tmp_path, secret=None) as chat,
        app.app_context(),
    ):
        _channel("email", mail.form())
        _channel("webhook", hook.form())
        _channel("webhook", chat.form(name="chat", webhook_format="text"))
        notifications.set_thresholds(1, 30)
        db.session.execute(
            Credential.__table__.update()
            .where(Credential.environment_id == env["id"])
            .values(expiry_date=(clock.now() + timedelta(days=5)).isoformat() + "Z")
        )
        db.session.commit()
        _sync(env["id"], _failing_fetch)
        _sync(env["id"])
        notifications.daily_checks(app)
        notifications.emit(
            "action.succeeded",
            "Rotate succeeded: sfo (5 credentials)",
            "SDDC Manager rotated 5 passwords.",
            {"action_id": 1, "environment": "sfo", "operation": "rotate", "credentials": 5},
        )
        notifications.emit(
            "action.failed",
            "Update failed: sfo",
            "SDDC Manager refused the update of esx-1.",
            {"action_id": 2, "environment": "sfo", "operation": "update", "failed": 1},
        )
        db.session.commit()
        # Someone edits an audit record in the database: the verification raises the alert.
        first = db.session.scalar(select(func.min(AuditEvent.id)))
        db.session.execute(
            update(AuditEvent).where(AuditEvent.id == first).values(target="nothing to see")
        )
        db.session.commit()
        assert not audit_integrity.verify()[0].intact
        # An audit forwarding destination that takes nothing for 16 minutes.
        forwarding.add(
            forwarding.DestinationIn(kind="https-json", address="https://127.0.0.1:9/in"), "t"
        )
        db.session.commit()
        clock.offset += timedelta(minutes=16)
        audit_integrity.forward_pass(app)
        clock.offset -= timedelta(minutes=16)
        # Break-glass: a change of the settings, a copy written, then one that cannot be.
        offline = str(pyrage.x25519.Identity.generate().to_public())
        folder = tmp_path / "break-glass"
        break_glass_settings.save({"recipients": [offline], "folder": str(folder)})
        assert break_glass.copy_now(app, "tester").state == "success"
        shutil.rmtree(folder)
        folder.write_text("in the way")
        assert break_glass.copy_now(app, "tester").state == "failed"
        db.session.commit()
        # A rotation owed after a check-out fails in SDDC Manager: the queue's alert.
        owed = db.session.scalar(select(Credential).where(Credential.environment_id == env["id"]))
        rotation_due.mark_due(owed, "checkin")
        rotation_due.record_failure(owed, 1, "Unable to reach host over SSH")
        db.session.commit()
        _dual_control(env["id"])
        for _ in range(5):
            anon.login("bob", "wrong password!!")
        _deliver_all()
        secrets = _every_secret(app)

        assert sorted(m["X-Portal-Event"] for m in mail.messages) == sorted(ALL_KINDS)
        assert all(m["To"] == "ops@example.net, oncall@example.net" for m in mail.messages)
        assert sorted(d["kind"] for d in hook.documents()) == sorted(ALL_KINDS)
        assert hook.bad_signatures == 0
        assert all(r["headers"]["X-Portal-Signature"].startswith("sha256=") for r in hook.requests)
        assert len(chat.requests) == len(ALL_KINDS)
        assert all(set(doc) == {"text"} for doc in chat.documents())
        assert any("passwords expire within 30 days" in d["text"] for d in chat.documents())
        delivered = mail.raw + [r["body"] for r in hook.requests + chat.requests]
        for message in delivered:
            text = message.decode("utf-8", "replace")
            leaked = [secret for secret in secrets if secret in text]
            assert leaked == [], "a stored secret appears in a delivered message"
        states = set(db.session.scalars(select(NotificationDelivery.state)))
        assert states == {"delivered"}


def _dual_control(env_id: int) -> None:
    """Dual control: a request (asked, then approved), another denied, a break-glass."""
    environment = db.session.get(Environment, env_id)
    policies.set_rules(environment, policies.PolicyIn(rules=[{"requires": ["approval"]}]), "alice")
    users = {u.username: u for u in db.session.scalars(select(User))}
    creds = db.session.scalars(
        select(Credential).where(Credential.environment_id == env_id).limit(3)
    ).all()
    ask = control_requests.AccessRequestIn(reason="patch night", minutes=30)
    first = control_requests.create(users["bob"], creds[0], ask)
    control_requests.approve(users["alice"], first, "ok")
    # One request of each kind is alerted: the second is stored as it would be, unannounced.
    second = AccessRequest(
        credential_id=creds[1].id,
        environment_id=env_id,
        requester_id=users["bob"].id,
        requester_name="bob",
        reason="again",
        minutes=30,
        state="pending",
        closes_at=clock.now() + timedelta(hours=1),
    )
    db.session.add(second)
    control_requests.deny(users["alice"], second, "not tonight")
    glass = ask.model_copy(update={"break_glass": True})
    control_requests.create(users["bob"], creds[2], glass)
    db.session.commit()


@pytest.mark.parametrize("mode", ["none", "tls"])
def test_plain_and_implicit_tls_smtp(app, tmp_path, mode):
    with smtp_server(tmp_path, mode) as mail, app.app_context():
        channel_id = _channel("email", mail.form(), ["account.locked"])
        assert delivery.send_test(db.session.get(NotificationChannel, channel_id), "t") is None
        notifications.account_locked("carol", 15)
        db.session.commit()
        _deliver_all()
        assert [m["X-Portal-Event"] for m in mail.messages] == ["test", "account.locked"]


def test_smtp_refuses_an_untrusted_certificate_and_a_wrong_password(app, tmp_path, monkeypatch):
    # aiosmtpd leaves a refused AUTH unanswered (like servers that hang up): the portal tells
    # it as a refused sign-in once its timeout runs out, here 1 s instead of 10.
    monkeypatch.setattr(channels, "SEND_TIMEOUT", 1.0)
    with smtp_server(tmp_path, "starttls") as mail, app.app_context():
        untrusted = db.session.get(
            NotificationChannel, _channel("email", mail.form(name="a", ca_pem=""))
        )
        error = delivery.send_test(untrusted, "t")
        assert error is not None and "TLS" in error
        wrong = db.session.get(
            NotificationChannel,
            _channel("email", mail.form(name="b", smtp_password="wrong-password-123")),
        )
        error = delivery.send_test(wrong, "t")
        assert "sign-in refused" in error and "wrong-password-123" not in error
        assert mail.messages == []


def test_sign_in_over_plain_smtp_is_refused_in_the_settings(app, tmp_path):
    with app.app_context(), pytest.raises(channels.ChannelError) as refused:
        _channel(
            "email",
            {
                "name": "x",
                "smtp_host": "127.0.0.1",
                "smtp_security": "none",
                "smtp_username": "u",
                "smtp_password": "p",
                "mail_from": "a@b.c",
                "mail_to": "d@e.f",
            },
        )
    assert refused.value.field == "smtp_username"


def test_a_failing_channel_is_retried_with_backoff_and_its_failure_shown(app, admin, tmp_path):
    with webhook_receiver(tmp_path) as hook, app.app_context():
        channel_id = _channel("webhook", hook.form(), ["account.locked"])
        hook.fail_next = 2
        notifications.account_locked("carol", 15)
        db.session.commit()
        delivery.dispatch()
        assert delivery.deliver_due() == 1
        row = db.session.scalar(select(NotificationDelivery))
        assert (row.state, row.attempts) == ("pending", 1)
        assert row.next_attempt_at - row.last_attempt_at == timedelta(seconds=30)
        assert "answered HTTP 500" in row.error
        assert "s3cr3t-path-token" not in row.error
        assert delivery.deliver_due() == 0  # not due yet
        clock.offset = timedelta(seconds=31)
        delivery.deliver_due()
        row = db.session.scalar(select(NotificationDelivery))
        assert (row.state, row.attempts) == ("pending", 2)
        assert row.next_attempt_at - row.last_attempt_at == timedelta(seconds=120)
        page = admin.client.get("/settings/notifications").get_data(as_text=True)
        assert "answered HTTP 500" in page and "s3cr3t-path-token" not in page
        clock.offset = timedelta(seconds=200)
        delivery.deliver_due()
        row = db.session.scalar(select(NotificationDelivery))
        assert (row.state, row.attempts) == ("delivered", 3)
        assert [d["kind"] for d in hook.documents()] == ["account.locked"]
        assert db.session.get(NotificationChannel, channel_id).failure_count == 2


def test_delivery_is_abandoned_after_the_last_retry_and_old_rows_pruned(app, tmp_path):
    app.config["NOTIFY_BACKOFF_SECONDS"] = (0, 0)
    with webhook_receiver(tmp_path) as hook, app.app_context():
        _channel("webhook", hook.form(), ["account.locked"])
        hook.fail_next = 10
        notifications.account_locked("carol", 15)
        db.session.commit()
        _deliver_all(rounds=4)
        row = db.session.scalar(select(NotificationDelivery))
        assert (row.state, row.attempts) == ("abandoned", 3)
        clock.offset = timedelta(days=delivery.KEEP_DAYS + 1)
        delivery.prune()
        assert db.session.scalar(select(NotificationDelivery)) is None
        assert db.session.scalar(select(NotificationOutbox)) is None


def test_channel_secrets_are_encrypted_and_never_audited(app, admin, tmp_path):
    with webhook_receiver(tmp_path) as hook:
        form = {**hook.form(), "events": ["sync.failing"], "confirm_password": PASSWORD}
        response = admin.post("/settings/notifications/channels/new?kind=webhook", data=form)
        assert response.status_code == 302
        with app.app_context():
            channel = db.session.scalar(select(NotificationChannel))
            for column in ("config", "events", "name"):
                assert "s3cr3t" not in getattr(channel, column)
            assert hook.url.encode() not in channel.webhook_url_enc
            assert WEBHOOK_SECRET.encode() not in channel.webhook_secret_enc
            details = db.session.scalars(
                select(AuditEvent.details).where(AuditEvent.action.like("settings.notif%"))
            ).all()
            assert details and all("s3cr3t" not in d and WEBHOOK_SECRET not in d for d in details)
            channel_id = channel.id
        response = admin.post(f"/settings/notifications/channels/{channel_id}/test")
        assert response.status_code == 302
        assert [d["kind"] for d in hook.documents()] == ["test"]
        page = admin.client.get("/settings/notifications").get_data(as_text=True)
        assert "A test message went to hook" in page


def test_changes_need_a_recent_sign_in_or_the_password(app, admin):
    clock.offset = timedelta(minutes=20)
    form = {"failing_after": "5", "expiry_days": "30"}
    admin.post("/settings/notifications/thresholds", data=form)
    with app.app_context():
        assert notifications.failing_after() == notifications.DEFAULT_FAILING_AFTER
        outcomes = db.session.scalars(
            select(AuditEvent.outcome).where(AuditEvent.action == "settings.notifications")
        ).all()
        assert outcomes == ["denied"]
    admin.post("/settings/notifications/thresholds", data={**form, "confirm_password": PASSWORD})
    with app.app_context():
        assert (notifications.failing_after(), notifications.expiry_days()) == (5, 30)
    page = admin.client.get("/settings/notifications").get_data(as_text=True)
    assert 'value="5"' in page and "Notifications" in page


def test_the_channel_test_shows_the_code_not_the_far_sides_words(app, admin, tmp_path):
    class Refusing:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook
            return "550 <b>FAR-SIDE-WORDS</b> relay.internal.example denied"

    with smtp_server(tmp_path) as mail:
        mail.controller.handler = Refusing()
        form = {**mail.form(), "events": ["sync.failing"], "confirm_password": PASSWORD}
        assert admin.post("/settings/notifications/channels/new?kind=email", data=form)
        with app.app_context():
            channel_id = db.session.scalar(select(NotificationChannel.id))
        admin.post(f"/settings/notifications/channels/{channel_id}/test")
    page = admin.client.get("/settings/notifications").get_data(as_text=True)
    assert "answered 550 (mailbox or sender refused" in page
    assert "FAR-SIDE-WORDS" not in page and "relay.internal" not in page


def test_the_empty_notifications_page_says_what_happens_to_alerts(admin):
    page = admin.client.get("/settings/notifications").get_data(as_text=True)
    assert "alerts are recorded but sent nowhere" in page and "for none" not in page
