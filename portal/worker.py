"""The Gunicorn worker: gthread, with the TLS handshake done by the worker's poller.

Gunicorn's gthread worker hands each new connection to a thread, which waits up to 5 s for
the first bytes and then does a blocking TLS handshake. A client that sends part of a
ClientHello and stalls (a broken load balancer check, a scanner, a slow-loris) holds that
thread until it gives up, and a handful of them leave no thread for the operators. Here the
handshake is driven by the poller, without blocking, before a thread is involved: a stalled
or silent client costs one socket until HANDSHAKE_SECONDS pass, and a client that closes in
the middle of its handshake is simply forgotten. Only connections with a finished handshake
reach the thread pool, exactly as Gunicorn's own keep-alive connections do.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl
import time
from collections import deque
from functools import partial
from typing import cast

from gunicorn import http, util
from gunicorn import sock as gsock
from gunicorn.workers.gthread import TConn, ThreadWorker

from .errors import protocol_error_answer

# How long a client may take from its connection to the end of its TLS handshake.
HANDSHAKE_SECONDS = 10.0


class _Captured:
    """Stands in for the client's socket while Gunicorn writes its own error answer: what it
    wrote (its status line) is kept, nothing is sent."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, _flag) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)


class TLSThreadWorker(ThreadWorker):
    """gthread with non-blocking TLS handshakes in the poller, and the portal's own answer to
    requests Gunicorn cannot read."""

    def handle_error(self, req, client, addr, exc):
        """Gunicorn decides the status and logs (a malformed request, an address too long,
        headers too large); the portal writes the answer: its JSON error under /api/, else a
        page with a language, landmarks and its style sheet, never echoing what was sent."""
        captured = _Captured()
        # The stand-in has the socket methods Gunicorn's own answer uses.
        super().handle_error(req, cast(socket.socket, captured), addr, exc)
        status_line = captured.data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return
        code = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        known = req if req is not None else getattr(exc, "req", None)
        path = getattr(known, "path", None) or ""
        try:
            util.write_nonblock(client, protocol_error_answer(code, reason, path))
        except Exception:  # noqa: BLE001 - the client may be gone already
            self.log.debug("Failed to send error message.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handshaking: deque[TConn] = deque()  # in order of their deadlines
        self._context: ssl.SSLContext | None = None
        self._context_stamp: tuple | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        # Gunicorn builds a context per connection, re-reading the certificate each time; one
        # per certificate file version gives the same effect (a replaced certificate is served
        # from the next connection on) at a fraction of the cost.
        stamp = tuple(os.stat(path).st_mtime_ns for path in (self.cfg.certfile, self.cfg.keyfile))
        if self._context is None or stamp != self._context_stamp:
            self._context = gsock.ssl_context(self.cfg)
            self._context_stamp = stamp
        return self._context

    def accept(self, listener):
        """Accept a connection and start its handshake in the poller (plain HTTP as before)."""
        if not self.cfg.is_ssl:
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        try:
            conn.sock = self._ssl_context().wrap_socket(
                client_sock,
                server_side=True,
                do_handshake_on_connect=False,
                suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
            )
        except (OSError, ValueError):  # gone already (ENOTCONN), or a bad context
            self._drop(conn)
            return
        conn.timeout = time.monotonic() + HANDSHAKE_SECONDS
        self.handshaking.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_handshake, conn))

    def _on_handshake(self, conn: TConn, _sock) -> None:
        tls = cast(ssl.SSLSocket, conn.sock)  # wrapped in accept()
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._on_handshake, conn))
            return
        except ssl.SSLWantWriteError:
            self.poller.modify(conn.sock, selectors.EVENT_WRITE, partial(self._on_handshake, conn))
            return
        except (OSError, ValueError):  # ssl.SSLError is an OSError: a bad or closed client
            self._forget(conn)
            self._drop(conn)
            return
        self._forget(conn)
        # What TConn.init would do after its own handshake: an HTTP/1.1 parser on the socket.
        conn.initialized = True
        conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        if tls.pending():
            conn.data_ready = True  # the request came with the handshake's last flight
            self.enqueue_req(conn)
            return
        # Wait for the request in the poller, as Gunicorn waits for a deferred connection.
        conn.timeout = time.monotonic() + max(self.cfg.keepalive, 1)
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def _forget(self, conn: TConn) -> None:
        try:
            self.handshaking.remove(conn)
        except ValueError:
            pass
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _drop(self, conn: TConn) -> None:
        self.nr_conns -= 1
        try:
            conn.sock.close()
        except OSError:
            pass

    def murder_pending(self):
        """Also close handshakes past their deadline (all of them once the worker stops)."""
        super().murder_pending()
        now = time.monotonic()
        # Every connection in handshaking got its deadline in accept().
        while self.handshaking and (not self.alive or (self.handshaking[0].timeout or 0) <= now):
            conn = self.handshaking[0]
            self._forget(conn)
            self._drop(conn)
