"""Gunicorn settings: HTTPS with TLS 1.2+, Mozilla intermediate ciphers, preloaded app."""

import logging
import os
import resource
import ssl
import sys

import gunicorn.http.wsgi
from gunicorn.glogging import Logger

from portal.platform.certs import MOZILLA_INTERMEDIATE_CIPHERS
from portal.platform.config import ConfigError, load_settings
from portal.platform.text import escape_controls

try:
    _settings = load_settings()
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")


def _connection_limit(wanted: int = 1000) -> int:
    """Raise the soft limit of open files toward 4096 where the hard limit allows, and keep
    each worker's connections within it (a worker out of descriptors cannot accept)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):  # not allowed here (systemd sets LimitNOFILE instead)
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(50, min(wanted, soft - 200))  # room for the database, logs and listeners


wsgi_app = "app:app"
preload_app = True
bind = [_settings.bind]
workers = _settings.workers
# gthread with the TLS handshake in the poller: stalled or silent clients hold no thread.
worker_class = "portal.worker.TLSThreadWorker"
threads = 4
# Connections a worker holds at once (mostly clients in their TLS handshake or kept alive,
# which cost a socket, not a thread), within the file descriptors this process may open.
worker_connections = _connection_limit()
timeout = 120
graceful_timeout = 30
keepalive = 5
certfile = str(_settings.ssl_dir / "cert.pem")
keyfile = str(_settings.ssl_dir / "key.pem")
ciphers = MOZILLA_INTERMEDIATE_CIPHERS
accesslog = str(_settings.log_dir / "access.log")
errorlog = str(_settings.log_dir / "error.log")
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'
loglevel = "info"
pidfile = str(_settings.data_dir / "gunicorn.pid")
proc_name = "vcf-credential-portal"
# Only the proxies named in PORTAL_TRUSTED_PROXIES may set X-Forwarded-Proto; by default none.
forwarded_allow_ips = _settings.forwarded_allow_ips
limit_request_line = 8190
# No runtime control socket (it would let a local process change the worker count, and two
# portals on one host would share its default path).
control_socket_disable = True


class TerminalErrorLogger(Logger):
    """Gunicorn's own log goes to error.log; its errors (a port in use, an address that cannot
    be bound, a crashed worker) go to stderr as well, so whoever starts the portal sees why it
    stopped (the terminal, or the journal under systemd)."""

    def setup(self, cfg):
        super().setup(cfg)
        if cfg.errorlog == "-":
            return  # already on stderr
        for handler in list(self.error_log.handlers):
            if getattr(handler, "_portal_terminal", False):
                self.error_log.removeHandler(handler)  # setup runs again on reload
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setLevel(logging.ERROR)
        terminal.setFormatter(logging.Formatter("gunicorn: %(message)s"))
        terminal._portal_terminal = True
        self.error_log.addHandler(terminal)

    def atoms(self, resp, req, environ, request_time):
        """The values of an access.log line, each one line: the decoded path can carry CR/LF
        (`/%0d%0a...`) that would otherwise forge a line."""
        return {
            key: escape_controls(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }


logger_class = TerminalErrorLogger


def ssl_context(conf, default_ssl_context_factory):
    """TLS 1.2 and 1.3 only, with the Mozilla intermediate suites for TLS 1.2."""
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


_default_headers = gunicorn.http.wsgi.Response.default_headers


def _headers_without_server(self):
    # The Server header would name the product; the security bar wants none.
    return [h for h in _default_headers(self) if not h.startswith("Server:")]


gunicorn.http.wsgi.Response.default_headers = _headers_without_server


def post_fork(server, worker):
    """Each worker opens its own database connections; never the master's."""
    from portal.ops import scheduler

    scheduler.forget_in_child()
    module = sys.modules.get("app")
    if module is not None:
        from portal.platform.extensions import db

        with module.app.app_context():
            db.engine.dispose(close=False)


def on_exit(server):
    """The master stops (SIGTERM, systemctl stop): end the scheduler's jobs now, release the
    lead, and exit even if a job thread is still inside a call to SDDC Manager."""
    from portal.ops import scheduler

    module = sys.modules.get("app")
    if module is None or scheduler.running() is None and not scheduler.standing_by():
        return
    if not scheduler.halt(module.app):
        server.log.warning(
            "stopping without waiting for the running jobs (recorded as interrupted)"
        )
        logging.shutdown()
        os._exit(0)


def when_ready(server):
    """Log where the portal is served."""
    server.log.info("VCF Credential Portal ready on https://%s", _settings.bind)
