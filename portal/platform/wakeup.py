"""Waking the scheduler when a sync is queued, so that "Sync now" starts at once.

On SQLite (one node) a worker sends a datagram to a socket the scheduler's process binds in
the data directory; on PostgreSQL (one or several nodes) the queuing transaction sends a
NOTIFY that the leader LISTENs for. Either way the dispatcher also looks every few seconds,
so a lost wake-up only delays a run.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from pathlib import Path

from sqlalchemy import text

from .locks import close_quietly, dedicated_connection, disown_connection

log = logging.getLogger("portal.platform.wakeup")

CHANNEL = "portal_sync"
SOCKET_NAME = "scheduler.sock"


def announce(session, settings) -> None:
    """In the transaction that queues a run: on PostgreSQL, NOTIFY on commit."""
    if settings.sqlite_path is None:
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def poke(settings) -> None:
    """After the commit: on SQLite, wake the scheduler of this data directory if it listens."""
    if settings.sqlite_path is None:
        return
    path = settings.data_dir / SOCKET_NAME
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"sync", str(path))
    except OSError:
        pass  # no scheduler listening here (stand-by, stopped): its next look finds the run


class Listener:
    """What the dispatcher waits on: the socket or the LISTEN connection."""

    def __init__(self, settings):
        self.settings = settings
        self.sock: socket.socket | None = None
        self.conn = None
        self.bound: Path | None = None  # the socket's path, while this process owns it

    def open(self) -> Listener:
        """Start listening (the process that runs the scheduler)."""
        if self.settings.sqlite_path is not None:
            path: Path = self.settings.data_dir / SOCKET_NAME
            path.unlink(missing_ok=True)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(path))
            self.bound = path
            os.chmod(path, 0o600)
        else:
            self.conn = dedicated_connection(self.settings.database_url, "vcf-portal-dispatcher")
            with self.conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
        return self

    def wait(self, timeout: float) -> bool:
        """Block until woken or `timeout` passes; True when woken."""
        try:
            if self.sock is not None:
                ready, _, _ = select.select([self.sock], [], [], timeout)
                if ready:
                    while True:  # drain: one dispatch serves every wake-up so far
                        try:
                            self.sock.recv(64, socket.MSG_DONTWAIT)
                        except BlockingIOError:
                            break
                return bool(ready)
            if self.conn is not None:
                ready, _, _ = select.select([self.conn], [], [], timeout)
                if ready:
                    self.conn.poll()
                    self.conn.notifies.clear()
                return bool(ready)
        except Exception as exc:  # noqa: BLE001 - fall back to looking on the timer
            log.warning("wake-up channel lost (%s); looking every few seconds", type(exc).__name__)
            self.close()
        time.sleep(timeout)
        return False

    def release_path(self) -> None:
        """Remove the socket's file (stopping): nothing is left behind in the data directory
        (a copy of it, a backup) even when the process ends before `close`."""
        if self.bound is not None:
            self.bound.unlink(missing_ok=True)
            self.bound = None

    def close(self) -> None:
        """Stop listening."""
        self.release_path()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        close_quietly(self.conn)
        self.conn = None

    def forget_in_child(self) -> None:
        """In a forked worker: drop the copies without touching the parent's channel."""
        if self.sock is not None:
            self.sock.close()  # the parent's socket stays open and bound
            self.sock = None
            self.bound = None  # and its file is the parent's to remove
        if self.conn is not None:
            disown_connection(self.conn)
            self.conn = None
