"""How background work writes: in short transactions, whatever the size of the estate.

SQLite has one write lock for the whole database and PostgreSQL's row locks stop other
writers of the same rows until the commit. Sign-in, Reveal, Copy and exports write too (audit
and session rows), so a job that writes 15,000 rows in one transaction makes every operator
wait for it, and the next sync as well. The rule, with this module as its one owner: a job
that writes per credential (or per audit line, per item) writes at most `CHUNK_ROWS` rows per
transaction, through `commit_in_chunks` or `chunks` with a commit after each.

`watch()` measures what the rule promises: per committed or rolled-back transaction, the rows
it wrote and how long it held the write lock (from its first write statement to its end; a
wait for the lock is included, and the log gives the thread's CPU time beside it).
Every transaction that held it longer than `SLOW_HOLD_SECONDS` is logged, so the longest
hold of a running portal can be read from its log (`bench/soak.py` does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import delete, event, select
from sqlalchemy.engine import Engine

from .extensions import db

log = logging.getLogger("portal.platform.writes")

# Rows per transaction of a background job: small enough that a transaction holds SQLite's
# write lock for a few milliseconds on a quiet machine (500 new credentials and their history,
# encrypted beforehand, about 10 ms) and under 250 ms on a busy one, large enough that
# commits cost little.
CHUNK_ROWS = 500
# A write transaction held longer than this is logged (the availability goal is 250 ms).
SLOW_HOLD_SECONDS = 0.25
# On SQLite, after each slice the lock is left free for half as long as the slice held it,
# within these bounds: a writer waiting for it polls (SQLite's busy wait sleeps 1 to 100 ms
# between tries), and a job that took the lock back at once could keep it from ever getting
# a turn; a third of the time free gives every poll a fair chance.
PAUSE_SHARE = 0.5
PAUSE_SECONDS = (0.005, 0.05)

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    """The items in slices of at most `size`, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def commit_in_chunks(
    items: Sequence[T], write: Callable[[Sequence[T]], int | None], size: int = CHUNK_ROWS
) -> int:
    """Call `write` for each slice of at most `size` items and commit after each one; returns
    the sum of what `write` returned. A failure rolls back only the slice that failed: the
    slices before it stay written, so `write` must be safe to run again (jobs run again)."""
    total = 0
    for part in chunks(items, size):
        try:
            total += write(part) or 0
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        let_others_write()
    return total


def let_others_write() -> None:
    """Between two slices of a job (after a commit): on SQLite, leave the write lock free for
    a moment so that operators' writes waiting for it go first."""
    if db.engine.dialect.name != "sqlite":
        return
    low, high = PAUSE_SECONDS
    time.sleep(min(high, max(low, PAUSE_SHARE * getattr(_last_hold, "seconds", 0.0))))


def delete_in_chunks(model, *where) -> int:
    """Delete the rows of `model` that match `where`, at most CHUNK_ROWS per transaction;
    returns how many went."""
    key = model.__mapper__.primary_key[0]
    removed = 0
    while ids := db.session.scalars(select(key).where(*where).limit(CHUNK_ROWS)).all():
        try:
            db.session.execute(
                delete(model).where(key.in_(ids)).execution_options(synchronize_session=False)
            )
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        removed += len(ids)
        let_others_write()
    return removed


@dataclass
class Transaction:
    """One write transaction as `watch()` saw it."""

    rows: int
    seconds: float
    statements: int


@dataclass
class Watch:
    """The write transactions that ended while a `watch()` block was open."""

    transactions: list[Transaction] = field(default_factory=list)

    @property
    def largest(self) -> int:
        """The most rows any one transaction wrote."""
        return max((t.rows for t in self.transactions), default=0)

    @property
    def longest(self) -> float:
        """The longest any one transaction held the write lock, in seconds."""
        return max((t.seconds for t in self.transactions), default=0.0)


_watches: list[Watch] = []
_last_hold = threading.local()  # how long this thread's last write transaction held the lock
_watches_lock = threading.Lock()
_KEY = "portal_write"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@contextmanager
def watch() -> Iterator[Watch]:
    """Collect the write transactions of every engine in this process while the block runs."""
    seen = Watch()
    with _watches_lock:
        _watches.append(seen)
    try:
        yield seen
    finally:
        with _watches_lock:
            _watches.remove(seen)


def _is_write(statement: str) -> bool:
    return statement.lstrip()[:7].upper().startswith(_WRITES)


@event.listens_for(Engine, "before_cursor_execute")
def _before_execute(connection, _cursor, statement, _parameters, _context, _many) -> None:
    # The hold starts with the first write statement (on SQLite it takes the lock; a wait
    # for the lock counts too, and shows as wall time without CPU time).
    if _KEY not in connection.info and _is_write(statement):
        first = " ".join(statement.split()[:3])[:60]  # "UPDATE credentials SET": no values
        connection.info[_KEY] = [time.monotonic(), 0, 0, time.thread_time(), first]


@event.listens_for(Engine, "after_cursor_execute")
def _after_execute(connection, cursor, statement, _parameters, _context, _many) -> None:
    state = connection.info.get(_KEY)
    if state is None or not _is_write(statement):
        return
    rowcount = cursor.rowcount
    state[1] += rowcount if rowcount and rowcount > 0 else 0
    state[2] += 1


def _ended(connection) -> None:
    state = connection.info.pop(_KEY, None)
    if state is None:
        return
    held = time.monotonic() - state[0]
    _last_hold.seconds = held
    if held > SLOW_HOLD_SECONDS:
        # The thread's own CPU time beside the wall time: a busy machine shows as a gap.
        log.warning(
            "a write transaction held the database for %d ms (%d rows, %d statements, "
            "%d ms of its thread's CPU; first: %s)",
            held * 1000,
            state[1],
            state[2],
            (time.thread_time() - state[3]) * 1000,
            state[4],
        )
    if _watches:
        ended = Transaction(rows=state[1], seconds=held, statements=state[2])
        with _watches_lock:
            for seen in _watches:
                seen.transactions.append(ended)


@event.listens_for(Engine, "commit")
def _on_commit(connection) -> None:
    _ended(connection)


@event.listens_for(Engine, "rollback")
def _on_rollback(connection) -> None:
    _ended(connection)
