"""Every file lock in the data directory, in one place.

- `.init.lock`: start-up, restore and key rotation run one at a time (exclusive, blocking).
- `scheduler.lock`: the one process that runs the scheduler holds it and writes its pid.
- `portal.lock`: every serving process holds it shared, so maintenance commands can tell
  that the portal is running even when its scheduler is off.
- `audit-archive.lock`: an archive run of the audit log holds it exclusive, a verification
  shared, so a verification never reads records half moved out of the database.

All are `flock` locks: the kernel releases them when their holder dies.

On PostgreSQL, nodes that share the database elect the one scheduler with an advisory lock
held by a dedicated connection (`PostgresLeadership`); the server releases it when that
connection ends, whether its process stopped or the node was cut off. The audit archive's
lock is an advisory lock there too, held the same way, since the nodes share the records.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import make_url

log = logging.getLogger("portal.platform.locks")

INIT_LOCK = ".init.lock"
SCHEDULER_LOCK = "scheduler.lock"
PORTAL_LOCK = "portal.lock"
ARCHIVE_LOCK = "audit-archive.lock"

# The advisory lock of the scheduler: two 32-bit keys ("VCFP", 1), so that pg_locks shows
# them as classid and objid.
ADVISORY_KEYS = (0x56434650, 1)
ARCHIVE_KEYS = (0x56434650, 2)  # the audit archive's ("VCFP", 2)
LEADER_PREFIX = "vcf-portal-scheduler"

_service_fd: list[int] = []


@contextmanager
def init_lock(data_dir: Path) -> Iterator[None]:
    """Hold the exclusive start-up lock of data_dir for the duration of the block."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / INIT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def audit_archive_lock(settings, exclusive: bool, wait: bool) -> Iterator[bool]:
    """Hold the audit archive's lock for the block, `exclusive` (an archive run) or shared (a
    verification); yields False when it is held elsewhere and `wait` is off."""
    if settings.sqlite_path is not None:
        fd = os.open(settings.data_dir / ARCHIVE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            try:
                fcntl.flock(fd, mode if wait else mode | fcntl.LOCK_NB)
            except BlockingIOError:
                held = False
            else:
                held = True
            yield held
        finally:
            os.close(fd)  # releases the lock
        return
    function = "pg_advisory_lock" if exclusive else "pg_advisory_lock_shared"
    if not wait:
        function = function.replace("pg_", "pg_try_", 1)
    conn = dedicated_connection(settings.database_url, "vcf-portal audit archive")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {function}(%s, %s)", ARCHIVE_KEYS)
            row = cur.fetchone()  # one row; NULL (void) from the waiting forms
        yield row is not None and row[0] is not False
    finally:
        close_quietly(conn)  # the server releases the lock with the connection


def acquire_scheduler_lock(data_dir: Path) -> int | None:
    """Take the scheduler lock without waiting; returns its fd, or None when it is held."""
    fd = os.open(data_dir / SCHEDULER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def scheduler_lock_holder(data_dir: Path) -> str | None:
    """The pid written by the scheduler holding the lock, or None when nobody holds it."""
    path = data_dir / SCHEDULER_LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return path.read_text().strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def hold_portal_lock(data_dir: Path) -> None:
    """Hold portal.lock shared for as long as this process (and its forked workers) live."""
    if not _service_fd:
        fd = os.open(data_dir / PORTAL_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        _service_fd.append(fd)


def portal_running(data_dir: Path) -> bool:
    """True while any portal process (scheduler or not) runs against this data directory."""
    if scheduler_lock_holder(data_dir) is not None:
        return True
    path = data_dir / PORTAL_LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class FileLeadership:
    """The scheduler of one node on SQLite: whoever holds scheduler.lock leads."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lead if nobody has it."""
        self.fd = acquire_scheduler_lock(self.data_dir)
        return self.fd is not None

    def still_leading(self) -> bool:
        """The kernel keeps the lock for the life of the fd."""
        return self.fd is not None

    def release(self) -> None:
        """Let another process lead."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def forget_in_child(self) -> None:
        """In a forked worker: drop the copy of the lock's fd, which would keep it alive."""
        self.release()


def leader_name() -> str:
    """How this process names itself as the leader: product, host and pid."""
    return f"{LEADER_PREFIX} {socket.gethostname()[:32]} {os.getpid()}"


class PostgresLeadership:
    """The one scheduler among the nodes sharing a PostgreSQL database.

    The lock lives with a dedicated connection (TCP keepalives on, so a node cut off loses
    it within about 30 s). `still_leading` asks the server before every claim.
    """

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.conn = None
        self.guard = threading.Lock()

    def acquire(self) -> bool:
        """Take the lead if no other node has it."""
        with self.guard:
            conn = None
            try:
                conn = dedicated_connection(self.database_url, leader_name())
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_try_advisory_lock(%s, %s)", ADVISORY_KEYS)
                    row = cur.fetchone()  # one row: SELECT of a function
                    won = row is not None and bool(row[0])
            except Exception as exc:  # noqa: BLE001 - no database, no lead; retried later
                log.warning("scheduler election failed: %s", type(exc).__name__)
                won = False
            if not won:
                close_quietly(conn)
                return False
            self.conn = conn
            return True

    def still_leading(self) -> bool:
        """True only when the server confirms that this connection holds the lock."""
        with self.guard:
            if self.conn is None:
                return False
            try:
                with self.conn.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND classid = %s AND objid = %s AND objsubid = 2"
                        " AND pid = pg_backend_pid() AND granted",
                        ADVISORY_KEYS,
                    )
                    row = cur.fetchone()  # one row: SELECT count(*)
                    if row is not None and row[0] == 1:
                        return True
            except Exception as exc:  # noqa: BLE001 - a lost connection is a lost lead
                log.warning("scheduler lead lost: %s", type(exc).__name__)
            self._drop()
            return False

    def release(self) -> None:
        """Let another node lead."""
        with self.guard:
            self._drop()

    def _drop(self) -> None:
        close_quietly(self.conn)
        self.conn = None

    def forget_in_child(self) -> None:
        """In a forked worker: never end the master's connection (and with it its lead)."""
        if self.conn is not None:
            disown_connection(self.conn)
            self.conn = None


_inherited: list = []


def dedicated_connection(database_url: str, application_name: str):
    """A PostgreSQL connection of its own (autocommit), outside the pool, with TCP keepalives
    so that a node cut off from the server loses it, and its locks, within about 30 s."""
    url = make_url(database_url).set(drivername="postgresql")
    conn = psycopg2.connect(
        url.render_as_string(hide_password=False),
        application_name=application_name[:63],
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )
    conn.autocommit = True
    return conn


def close_quietly(conn) -> None:
    """Close a dedicated connection that may already be gone."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001, S110 - it is gone either way
            pass


def disown_connection(conn) -> None:
    """In a forked child: make a copied database connection harmless without ending it.

    Closing it would send the server a goodbye on the socket the parent still uses; its
    descriptor is pointed at /dev/null instead, and the object kept so it is never freed.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, conn.fileno())
    os.close(devnull)
    _inherited.append(conn)


def leadership_for(settings) -> FileLeadership | PostgresLeadership:
    """The election that fits the database: a file lock on SQLite, an advisory lock on
    PostgreSQL."""
    if settings.sqlite_path is not None:
        return FileLeadership(settings.data_dir)
    return PostgresLeadership(settings.database_url)


def current_leader(session, settings) -> str | None:
    """Who runs the scheduler now: "host pid" of the leader, or None when nobody does."""
    if settings.sqlite_path is not None:
        holder = scheduler_lock_holder(settings.data_dir)
        return f"{socket.gethostname()[:32]} {holder}" if holder else None
    name = session.execute(
        text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid = :c AND l.objid = :o"
            " AND l.objsubid = 2 AND l.granted"
            # Advisory locks belong to a database: other portals on the server have their own.
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"c": ADVISORY_KEYS[0], "o": ADVISORY_KEYS[1]},
    ).scalar()
    if not name or not name.startswith(LEADER_PREFIX + " "):
        return None
    return name[len(LEADER_PREFIX) + 1 :]


def leads_here(leader: str | None) -> bool:
    """Whether `leader` ("host pid") is this process or the master that forked it."""
    if leader is None:
        return False
    host, _, pid = leader.rpartition(" ")
    return host == socket.gethostname()[:32] and pid in (str(os.getpid()), str(os.getppid()))


def scheduler_role(session, settings) -> tuple[str, str | None]:
    """("leader" | "standby" | "none", the leader's "host pid"), as seen from this node."""
    leader = current_leader(session, settings)
    if leader is None:
        return "none", None
    return ("leader" if leads_here(leader) else "standby"), leader
