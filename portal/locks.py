"""Every file lock in the data directory, in one place.

- `.init.lock`: start-up, restore and key rotation run one at a time (exclusive, blocking).
- `scheduler.lock`: the one process that runs the scheduler holds it and writes its pid.
- `portal.lock`: every serving process holds it shared, so maintenance commands can tell
  that the portal is running even when its scheduler is off.

All are `flock` locks: the kernel releases them when their holder dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INIT_LOCK = ".init.lock"
SCHEDULER_LOCK = "scheduler.lock"
PORTAL_LOCK = "portal.lock"

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
