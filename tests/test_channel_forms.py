"""The notification channel forms (portal/alerts/channel_forms.py): every rule refuses with
its message on the field to change; a good form is parsed and stored without secrets in
the settings."""

from __future__ import annotations

import json

import pytest

from portal.alerts import channels
from portal.alerts.channel_forms import ChannelError, EmailForm, WebhookForm, parse
from portal.models import NotificationChannel
from portal.platform.extensions import db

EMAIL = {
    "name": "ops mail",
    "enabled": "1",
    "events": ["sync.failing", "not.an.event", 7],
    "smtp_security": "starttls",
    "smtp_host": "mail.example.net",
    "smtp_port": "",
    "smtp_username": "portal",
    "smtp_password": "s3cr3t-smtp-password",
    "mail_from": "portal@example.net",
    "mail_to": "ops@example.net, oncall@example.net; ops@example.net",
    "verify_tls": "1",
}
WEBHOOK = {
    "name": "chat",
    "webhook_format": "json",
    "webhook_url": "https://hooks.example.net/s3cr3t-path",
    "webhook_secret": "a-signing-secret-of-24ch",
}


@pytest.mark.parametrize(
    ("model", "base", "change", "field", "message"),
    [
        (EmailForm, EMAIL, {"name": "  "}, "name", "Give the channel a name."),
        (EmailForm, EMAIL, {"name": "x" * 65}, "name", "At most 64 printable characters."),
        (EmailForm, EMAIL, {"name": "a\x00b"}, "name", "At most 64 printable characters."),
        (EmailForm, EMAIL, {"ca_pem": "not a certificate"}, "ca_pem", ""),
        (EmailForm, EMAIL, {"smtp_security": "ssl3"}, "smtp_security", "Choose STARTTLS"),
        (EmailForm, EMAIL, {"smtp_host": "bad host!"}, "smtp_host", "host name or address"),
        (EmailForm, EMAIL, {"smtp_port": "70000"}, "smtp_port", "from 1 to 65535"),
        (EmailForm, EMAIL, {"smtp_password": "p" * 257}, "smtp_password", "At most 256"),
        (EmailForm, EMAIL, {"smtp_security": "none"}, "smtp_username", "never sent in clear"),
        (EmailForm, EMAIL, {"mail_from": "two@a.b, three@c.d"}, "mail_from", "one e-mail"),
        (EmailForm, EMAIL, {"mail_to": ""}, "mail_to", "Enter 1 to 20"),
        (EmailForm, EMAIL, {"mail_to": "ok@a.b, \u202enot-an-address"}, "mail_to", "is not an"),
        (WebhookForm, WEBHOOK, {"webhook_format": "xml"}, "webhook_format", "JSON or text"),
        (WebhookForm, WEBHOOK, {"webhook_url": "http://x.example"}, "webhook_url", "https://"),
        (WebhookForm, WEBHOOK, {"webhook_secret": "short"}, "webhook_secret", "16 to 256"),
    ],
)
def test_each_rule_refuses_on_its_field(model, base, change, field, message):
    with pytest.raises(ChannelError) as refused:
        parse(model, {**base, **change})
    assert refused.value.field == field
    assert message in str(refused.value)
    assert "\u202e" not in str(refused.value)  # a hostile address is shown escaped


def test_a_good_form_is_stored_with_its_secrets_encrypted(app):
    with app.app_context():
        channel = NotificationChannel(kind="email", name="", events="[]", config="{}")
        changed = channels.apply_form(channel, EMAIL, ("sync.failing",))
        assert set(changed) >= {"name", "enabled", "events", "settings", "smtp_password"}
        config = json.loads(channel.config)
        assert config["port"] == 587 and config["mail_to"] == [
            "ops@example.net",
            "oncall@example.net",
        ]
        assert json.loads(channel.events) == ["sync.failing"]
        assert "s3cr3t" not in channel.config and channel.smtp_password_enc is not None
        # A blank password keeps the stored one; no user name drops it.
        assert "smtp_password" not in channels.apply_form(
            channel, {**EMAIL, "smtp_password": ""}, ()
        )
        channels.apply_form(channel, {**EMAIL, "smtp_username": ""}, ())
        assert channel.smtp_password_enc is None
        hook = NotificationChannel(kind="webhook", name="", events="[]", config="{}")
        with pytest.raises(ChannelError) as refused:
            channels.apply_form(hook, {**WEBHOOK, "webhook_secret": ""}, ())
        assert refused.value.field == "webhook_secret"
        channels.apply_form(hook, WEBHOOK, ())
        assert json.loads(hook.config)["url_host"] == "hooks.example.net"
        assert "s3cr3t" not in hook.config
        db.session.rollback()
