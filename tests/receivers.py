"""Real receivers on loopback: an SMTP server (aiosmtpd: plain, STARTTLS with sign-in, or TLS
from the start), an HTTPS webhook receiver that checks the signature (notifications, audit
forwarding over HTTPS), and Debian's rsyslogd (audit forwarding over syslog)."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from support import free_port

from portal.simulator.certs import CertificateSet, generate_certificates

SMTP_USER = "alerts"
SMTP_PASSWORD = "smtp-Pa55word-for-tests"  # noqa: S105 - test fixture
WEBHOOK_SECRET = "webhook-signing-secret-0123456789"  # noqa: S105 - test fixture

_CERTS: dict[str, CertificateSet] = {}


def certificates() -> CertificateSet:
    """A test CA and a server certificate for 127.0.0.1 and localhost (made once)."""
    if "set" not in _CERTS:
        _CERTS["set"] = generate_certificates(["127.0.0.1", "localhost"])
    return _CERTS["set"]


def server_context(tmp_path) -> ssl.SSLContext:
    """A server-side TLS context with the test certificate."""
    chain, key = certificates().write(tmp_path / "receiver-certs")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    return context


class _Collect:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope.content)
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok)


class SmtpServer:
    """aiosmtpd on 127.0.0.1; `mode` is "none", "starttls" (sign-in required) or "tls"."""

    def __init__(self, tmp_path, mode: str = "none") -> None:
        self.mode = mode
        self.port = free_port()
        self.handler = _Collect()
        options: dict = {}
        if mode == "starttls":
            options = {
                "tls_context": server_context(tmp_path),
                "require_starttls": True,
                "authenticator": _authenticate,
                "auth_required": True,
            }
        elif mode == "tls":
            options = {"ssl_context": server_context(tmp_path)}
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, ready_timeout=10, **options
        )

    @property
    def messages(self) -> list[Message]:
        """What arrived, parsed."""
        return [message_from_bytes(raw) for raw in self.handler.messages]

    @property
    def raw(self) -> list[bytes]:
        return list(self.handler.messages)

    def form(self, **extra) -> dict:
        """The settings form of a channel that sends here."""
        form = {
            "name": f"mail-{self.mode}",
            "enabled": "1",
            "smtp_host": "127.0.0.1",
            "smtp_port": str(self.port),
            "smtp_security": self.mode,
            "mail_from": "portal@example.net",
            "mail_to": "ops@example.net, oncall@example.net",
            "verify_tls": "1",
            "ca_pem": certificates().ca_pem,
        }
        if self.mode == "starttls":
            form.update(smtp_username=SMTP_USER, smtp_password=SMTP_PASSWORD)
        return {**form, **extra}


@contextmanager
def smtp_server(tmp_path, mode: str = "none"):
    """A running SmtpServer, stopped afterwards."""
    server = SmtpServer(tmp_path, mode)
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


class WebhookReceiver:
    """HTTPS on 127.0.0.1: records each request; `fail_next` answers 500 that many times; a
    JSON request whose X-Portal-Signature does not match the body is refused with 401."""

    def __init__(self, tmp_path, secret: str | None = WEBHOOK_SECRET) -> None:
        self.secret = secret
        self.requests: list[dict] = []
        self.bad_signatures = 0
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 200
                signature = self.headers.get("X-Portal-Signature")
                if receiver.secret is not None:
                    expected = (
                        "sha256="
                        + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                    )
                    if not signature or not hmac.compare_digest(signature, expected):
                        receiver.bad_signatures += 1
                        status = 401
                if status == 200 and receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    status = 500
                if status == 200:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = server_context(tmp_path).wrap_socket(
            self.server.socket, server_side=True
        )
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hooks/T0000/B0000/s3cr3t-path-token"

    def documents(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def form(self, **extra) -> dict:
        """The settings form of a channel that posts here."""
        form = {
            "name": "hook",
            "enabled": "1",
            "webhook_url": self.url,
            "webhook_format": "json",
            "webhook_secret": self.secret or "",
            "verify_tls": "1",
            "ca_pem": certificates().ca_pem,
        }
        return {**form, **extra}


@contextmanager
def webhook_receiver(tmp_path, secret: str | None = WEBHOOK_SECRET):
    """A running WebhookReceiver, stopped afterwards."""
    receiver = WebhookReceiver(tmp_path, secret)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


class RsyslogReceiver:
    """Debian's rsyslogd on 127.0.0.1, receiving RFC 5425 (syslog over TLS, its own test CA)
    or plain TCP, writing each raw message on a line of `out.log`; `kill` and `start` again
    on the same port model a receiver that dies and comes back."""

    def __init__(self, tmp_path, tls: bool = True) -> None:
        self.dir = tmp_path / f"rsyslog-{free_port()}"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.tls = tls
        self.out = self.dir / "out.log"
        chain, key = certificates().write(self.dir / "certs")
        self.ca = self.dir / "certs" / "ca.pem"
        self.ca.write_text(certificates().ca_pem)
        driver = (
            f'global(workDirectory="{self.dir}" DefaultNetstreamDriver="gtls" '
            f'DefaultNetstreamDriverCAFile="{self.ca}" DefaultNetstreamDriverCertFile="{chain}" '
            f'DefaultNetstreamDriverKeyFile="{key}")\n'
            'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" '
            'StreamDriver.AuthMode="anon")\n'
            if tls
            else f'global(workDirectory="{self.dir}")\nmodule(load="imtcp")\n'
        )
        (self.dir / "rsyslog.conf").write_text(
            driver
            + f'input(type="imtcp" port="{self.port}" address="127.0.0.1")\n'
            + 'template(name="raw" type="string" string="%rawmsg%\\n")\n'
            + f'action(type="omfile" file="{self.out}" template="raw")\n'
        )
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - the system's rsyslogd, our config
            [
                "/usr/sbin/rsyslogd",
                "-n",
                "-f",
                str(self.dir / "rsyslog.conf"),
                "-i",
                str(self.dir / "rsyslogd.pid"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("rsyslogd did not listen")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        (self.dir / "rsyslogd.pid").unlink(missing_ok=True)

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []


@contextmanager
def rsyslog_receiver(tmp_path, tls: bool = True):
    """A running RsyslogReceiver, killed afterwards."""
    receiver = RsyslogReceiver(tmp_path, tls)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.kill()
