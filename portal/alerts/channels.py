"""Notification channels: e-mail over SMTP and webhooks. Their settings (secrets encrypted),
and sending one message with short timeouts and errors that never carry a secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

import requests

from ..models import NotificationChannel
from ..platform import clock
from ..platform.crypto import SMTP_PASSWORD, WEBHOOK_SECRET, WEBHOOK_URL, cipher
from ..platform.text import escape_controls
from ..vcf import VcfError
from ..vcf.tls import EndpointTlsAdapter, build_ca_context
from .channel_forms import (
    ChannelError,
    EmailForm,
    WebhookForm,
    parse,
)

log = logging.getLogger("portal.alerts.channels")

KINDS = ("email", "webhook")
SIGNATURE_HEADER = "X-Portal-Signature"
CONNECT_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0
MAX_ERROR = 300


class DeliveryError(Exception):
    """A message was not delivered; the text is safe to store and show (no secret)."""


@dataclass(frozen=True)
class Message:
    """What a channel sends: never a password (see notifications.emit)."""

    kind: str
    subject: str
    body: str
    details: dict = field(default_factory=dict)
    at: str = ""


def config_of(channel: NotificationChannel) -> dict:
    """The channel's settings that are not secret."""
    try:
        value = json.loads(channel.config or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def events_of(channel: NotificationChannel) -> list[str]:
    """The event kinds the channel gets."""
    try:
        value = json.loads(channel.events or "[]")
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def apply_form(channel: NotificationChannel, form: dict, valid_events: tuple[str, ...]) -> list:
    """Check the form (channel_forms) and write it into the channel (secrets encrypted; a blank
    secret field keeps the stored one). Returns the names of the fields that changed, for the
    audit."""
    before = (channel.name, channel.enabled, channel.events, channel.config)
    if channel.kind == "email":
        values = parse(EmailForm, form)
        config, secrets_changed = _email_settings(channel, values)
    else:
        values = parse(WebhookForm, form)
        config, secrets_changed = _webhook_settings(channel, values)
    config.update(verify_tls=values.verify_tls, ca_pem=values.ca_pem)
    channel.name = values.name
    channel.enabled = values.enabled
    channel.events = json.dumps([e for e in values.events if e in valid_events])
    channel.config = json.dumps(config, sort_keys=True)
    channel.updated_at = clock.now()
    after = (channel.name, channel.enabled, channel.events, channel.config)
    labels = ("name", "enabled", "events", "settings")
    return [label for label, a, b in zip(labels, before, after, strict=True) if a != b] + (
        secrets_changed
    )


def _email_settings(channel: NotificationChannel, values: EmailForm) -> tuple[dict, list[str]]:
    config = {
        "host": values.smtp_host,
        "port": values.port,
        "security": values.smtp_security,
        "username": values.smtp_username,
        "mail_from": values.mail_from,
        "mail_to": values.mail_to,
    }
    changed = []
    if not values.smtp_username:
        if channel.smtp_password_enc is not None:
            changed.append("smtp_password")
        channel.smtp_password_enc = None
    elif values.smtp_password:
        channel.smtp_password_enc = cipher().encrypt(values.smtp_password, SMTP_PASSWORD)
        changed.append("smtp_password")
    elif channel.smtp_password_enc is None:
        raise ChannelError("smtp_password", "Enter the password of this SMTP user.")
    return config, changed


def _webhook_settings(channel: NotificationChannel, values: WebhookForm) -> tuple[dict, list[str]]:
    config: dict = {"format": values.webhook_format}
    changed = []
    if values.webhook_url:
        channel.webhook_url_enc = cipher().encrypt(values.webhook_url, WEBHOOK_URL)
        config["url_host"] = urlsplit(values.webhook_url).hostname
        changed.append("webhook_url")
    elif channel.webhook_url_enc is None:
        raise ChannelError("webhook_url", "Enter the webhook's URL.")
    else:
        config["url_host"] = config_of(channel).get("url_host", "")
    if values.webhook_secret:
        channel.webhook_secret_enc = cipher().encrypt(values.webhook_secret, WEBHOOK_SECRET)
        changed.append("webhook_secret")
    elif values.webhook_format == "json" and channel.webhook_secret_enc is None:
        raise ChannelError("webhook_secret", "JSON messages are signed: enter a secret.")
    return config, changed


def describe(channel: NotificationChannel) -> str:
    """One line for lists and the audit: where the channel sends, without secrets."""
    config = config_of(channel)
    if channel.kind == "email":
        to = ", ".join(config.get("mail_to", []))
        return f"{to} via {config.get('host')}:{config.get('port')}"
    return f"{config.get('format', 'json')} to https://{config.get('url_host', '?')}/…"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _tls_context(config: dict) -> ssl.SSLContext:
    if not config.get("verify_tls", True):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the operator chose so, for this channel
        return context
    if config.get("ca_pem"):
        return build_ca_context(config["ca_pem"])
    return ssl.create_default_context()


def _text_of(message: Message) -> str:
    lines = [message.body, ""]
    for key, value in message.details.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        lines.append(f"{key}: {value}")
    lines += ["", f"{message.at} · VCF Credential Portal on {socket.getfqdn()}"]
    return "\n".join(lines)


def _send_email(channel: NotificationChannel, config: dict, message: Message) -> None:
    password = None
    if channel.smtp_password_enc is not None:
        password = cipher().decrypt(channel.smtp_password_enc, SMTP_PASSWORD)
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = config["mail_from"]
    mail["To"] = ", ".join(config["mail_to"])
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(domain=config["mail_from"].rpartition("@")[2])
    mail["X-Portal-Event"] = message.kind
    mail.set_content(_text_of(message))
    security, host, port = config["security"], config["host"], config["port"]
    try:
        context = _tls_context(config) if security != "none" else None
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=SEND_TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=SEND_TIMEOUT)
        # Not `with smtp`: its exit sends QUIT and waits for the answer, which a server left
        # mid-handshake (a refused certificate) never gives: the test would hang for the
        # whole timeout. A failure closes the socket at once.
        try:
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if config.get("username"):
                try:
                    smtp.login(config["username"], password or "")
                except (smtplib.SMTPAuthenticationError, smtplib.SMTPServerDisconnected) as exc:
                    # Some servers hang up on a wrong password instead of answering 535.
                    code = getattr(exc, "smtp_code", "disconnected")
                    raise DeliveryError(f"SMTP sign-in refused by {host}:{port} ({code})") from None
            smtp.send_message(mail)
            smtp.quit()
        finally:
            smtp.close()
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"SMTP sign-in refused by {host}:{port} ({exc.smtp_code})") from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError(f"{host}:{port} does not offer STARTTLS or sign-in") from None
    except smtplib.SMTPResponseException as exc:
        # The far side's own words stay in the log: an operator sees the code and what it
        # means, never text a server (or something posing as one) chose.
        said = exc.smtp_error  # the reply's bytes, or text smtplib wrote itself
        text = said.decode("utf-8", "replace") if isinstance(said, bytes) else said or ""
        log.warning("SMTP %s:%s answered %s %s", host, port, exc.smtp_code, text[:200])
        meaning = _smtp_meaning(exc.smtp_code)
        raise DeliveryError(f"{host}:{port} answered {exc.smtp_code} ({meaning})") from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError(f"{host}:{port} refused every recipient") from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise DeliveryError(f"TLS with {host}:{port} failed: {reason}") from None
    except VcfError as exc:
        raise DeliveryError(str(exc)) from None
    except TimeoutError:
        raise DeliveryError(f"timed out talking to {host}:{port}") from None
    except (OSError, smtplib.SMTPException) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise DeliveryError(f"cannot send through {host}:{port}: {reason}") from None


def _smtp_meaning(code: int) -> str:
    """What an SMTP reply code means, in general terms (RFC 5321, section 4.2)."""
    if code in (421, 554):
        return "the service refused the session"
    if code in (530, 534, 535, 538):
        return "sign-in needed or refused"
    if code in (550, 551, 553):
        return "mailbox or sender refused; check the addresses and relaying"
    if code == 552:
        return "message too large or storage exceeded"
    if 400 <= code < 500:
        return "a temporary failure; it will be retried"
    if 500 <= code < 550:
        return "the server did not accept a command"
    return "an unexpected reply; see portal.log"


def _send_webhook(channel: NotificationChannel, config: dict, message: Message) -> None:
    if channel.webhook_url_enc is None:
        raise DeliveryError("the webhook channel has no URL")
    url = cipher().decrypt(channel.webhook_url_enc, WEBHOOK_URL)
    secret = None
    if channel.webhook_secret_enc is not None:
        secret = cipher().decrypt(channel.webhook_secret_enc, WEBHOOK_SECRET)
    if config.get("format") == "text":
        document: dict = {"text": f"*{message.subject}*\n{_text_of(message)}"}
    else:
        document = {
            "kind": message.kind,
            "subject": message.subject,
            "text": message.body,
            "details": message.details,
            "at": message.at,
            "portal": socket.getfqdn(),
        }
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "vcf-credential-portal",
        "X-Portal-Event": message.kind,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    host = urlsplit(url).hostname
    try:
        with requests.Session() as session:
            verify: bool = bool(config.get("verify_tls", True))
            if verify and config.get("ca_pem"):
                context = build_ca_context(config["ca_pem"])
                session.mount("https://", EndpointTlsAdapter(ssl_context=context))
            answer = session.post(
                url,
                data=body,
                headers=headers,
                timeout=(CONNECT_TIMEOUT, SEND_TIMEOUT),
                allow_redirects=False,
                verify=verify,
            )
    except requests.exceptions.SSLError:
        raise DeliveryError(f"TLS with {host} failed (certificate not trusted?)") from None
    except requests.exceptions.Timeout:
        raise DeliveryError(f"timed out talking to {host}") from None
    except requests.exceptions.ConnectionError:
        raise DeliveryError(f"cannot connect to {host}") from None
    except VcfError as exc:
        raise DeliveryError(str(exc)) from None
    except requests.RequestException as exc:
        raise DeliveryError(f"request to {host} failed ({type(exc).__name__})") from None
    if not 200 <= answer.status_code < 300:
        raise DeliveryError(f"{host} answered HTTP {answer.status_code}")


def send(channel: NotificationChannel, message: Message) -> None:
    """Deliver one message now, within a few seconds; DeliveryError says why not, in words
    that hold no secret (the URL, passwords and secrets are removed even from the server's)."""
    config = config_of(channel)
    try:
        if channel.kind == "email":
            _send_email(channel, config, message)
        else:
            _send_webhook(channel, config, message)
    except DeliveryError as exc:
        raise DeliveryError(safe_error(str(exc), _stored_secrets(channel))) from None


def _stored_secrets(channel: NotificationChannel) -> list[str]:
    """Every secret of the channel, and the path and query of its URL (Slack's key)."""
    found: list[str] = []
    for column, label in (
        ("smtp_password_enc", SMTP_PASSWORD),
        ("webhook_url_enc", WEBHOOK_URL),
        ("webhook_secret_enc", WEBHOOK_SECRET),
    ):
        blob = getattr(channel, column)
        if blob is not None:
            try:
                found.append(cipher().decrypt(blob, label))
            except Exception:  # noqa: BLE001, S112 - an unreadable secret cannot leak either
                continue
            if label == WEBHOOK_URL:
                found += [urlsplit(found[-1]).path, urlsplit(found[-1]).query]
    return found


def safe_error(text: str, hidden: list[str]) -> str:
    """One line of error text with every secret in `hidden` blanked out, bounded."""
    for secret in sorted((h for h in hidden if h and len(h) >= 4), key=len, reverse=True):
        text = text.replace(secret, "[hidden]")
    return escape_controls(text)[:MAX_ERROR]
