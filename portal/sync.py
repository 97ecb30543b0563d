"""The sync engine: fetch everything from one environment source, then upsert in one transaction.

A failed fetch changes nothing stored but the endpoint's status and error. Runs are rows in
`sync_runs`; a partial unique index allows one queued-or-running run per source, so "sync now"
pressed in several workers at once, or racing the schedule, gives one run. Runs are executed
only by the scheduler's process, which claims each with a conditional UPDATE.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import DateTime, bindparam, case, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from . import audit, notifications, writes
from .crypto import CREDENTIAL_PASSWORD, CREDENTIAL_PASSWORD_MAC, HISTORY_PASSWORD, cipher
from .environments import endpoint_settings, refresh_counts
from .models import Credential, Endpoint, Environment, PasswordHistory, SyncRun
from .platform import clock, wakeup
from .platform.clock import iso
from .platform.extensions import db
from .vcf import FetchedCredential, VcfError, client_for

log = logging.getLogger("portal.sync")

# A running run renews its heartbeat this often; one silent for STALE_SECONDS is failed by
# whichever process notices (app.config SYNC_HEARTBEAT_SECONDS and SYNC_STALE_SECONDS change
# them, for tests).
HEARTBEAT_SECONDS = 10
STALE_SECONDS = 60
# How long a run that went wrong keeps trying to record its failure (a locked or full
# database) before leaving it to the heartbeat's expiry.
RECORD_FAILURE_SECONDS = 30
_owner: dict = {"pid": None, "id": None}

_METADATA = (
    "account_type",
    "resource_type",
    "resource_id",
    "resource_ip",
    "domain",
    "remote_id",
    "remote_modified_at",
    "expiry_date",
    "expiry_status",
    "auto_rotate_days",
    "auto_rotate_next",
)


@dataclass
class Counts:
    """What one sync did."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    absent: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)


def run_dict(run: SyncRun) -> dict:
    """The API shape of a sync run."""
    return {
        "id": run.id,
        "environment_id": run.environment_id,
        "source": run.source,
        "trigger": run.trigger,
        "state": run.state,
        "phase": run.phase,
        "counts": {
            "new": run.count_new,
            "changed": run.count_changed,
            "unchanged": run.count_unchanged,
            "absent": run.count_absent,
        },
        "error": run.error,
        "requested_by": run.requested_by,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def request_sync(environment_id: int, source: str, trigger: str, requested_by: str) -> SyncRun:
    """Queue a sync, or return the one already queued or running for that source."""
    run = SyncRun(
        environment_id=environment_id,
        source=source,
        trigger=trigger,
        requested_by=requested_by,
        state="queued",
        phase="queued",
    )
    db.session.add(run)
    settings = current_app.config["PORTAL_SETTINGS"]
    try:
        wakeup.announce(db.session, settings)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = db.session.scalar(
            select(SyncRun).where(
                SyncRun.environment_id == environment_id,
                SyncRun.source == source,
                SyncRun.state.in_(("queued", "running")),
            )
        )
        if existing is None:  # finished between our insert and this read: try once more
            return request_sync(environment_id, source, trigger, requested_by)
        return existing
    wakeup.poke(settings)
    return run


def record_request(environment_name: str, run: SyncRun) -> None:
    """Audit a sync a person asked for: who, from where, which run (the caller commits)."""
    audit.record(
        "sync.request",
        f"{environment_name} / {run.source}",
        details={"run": run.id, "source": run.source, "trigger": run.trigger},
    )


def owner_id() -> str:
    """This process as the owner of the runs it carries out: "host pid token"."""
    pid = os.getpid()
    if _owner["pid"] != pid:  # a forked child is another owner
        _owner["pid"] = pid
        _owner["id"] = f"{socket.gethostname()[:96]} {pid} {secrets.token_hex(4)}"
    return _owner["id"]


def _claim(run_id: int) -> bool:
    now = clock.now()
    result = db.session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.state == "queued")
        .values(
            state="running", phase="fetching", started_at=now, owner=owner_id(), heartbeat_at=now
        )
    )
    db.session.commit()
    return result.rowcount == 1


def _ours(run_id: int):
    return (SyncRun.id == run_id, SyncRun.owner == owner_id(), SyncRun.state == "running")


class _Heartbeat:
    """Renews a running run's heartbeat from a thread of its own, on a connection of its own,
    while the run fetches and writes."""

    def __init__(self, app: Flask, run_id: int):
        self.app, self.run_id, self.owner = app, run_id, owner_id()
        self.every = app.config.get("SYNC_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"sync-heartbeat-{run_id}")
        self.thread.daemon = True

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                with self.app.app_context(), db.engine.begin() as connection:
                    connection.execute(
                        update(SyncRun)
                        .where(
                            SyncRun.id == self.run_id,
                            SyncRun.owner == self.owner,
                            SyncRun.state == "running",
                        )
                        .values(heartbeat_at=clock.now())
                    )
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next
                log.warning("sync run %s: heartbeat not renewed (%s)", self.run_id, exc.__class__)


def _set_phase(run_id: int, phase: str) -> None:
    db.session.execute(update(SyncRun).where(SyncRun.id == run_id).values(phase=phase))
    db.session.commit()


def _key(hostname: str, credential_type: str, username: str) -> tuple[str, str, str]:
    return (hostname, credential_type, username)


def _metadata(item: FetchedCredential) -> tuple:
    """The _METADATA values of a fetched credential, in that order."""
    return (
        item.account_type or "",
        item.resource_type or "",
        item.resource_id,
        item.resource_ip,
        ", ".join(item.domain_names),
        item.remote_id,
        item.modified_at,
        item.expiry_date,
        item.expiry_status,
        item.auto_rotate_days,
        item.auto_rotate_next,
    )


# What a sync reads of each stored credential: plain rows, no ORM objects.
_STORED = (
    Credential.id,
    Credential.hostname,
    Credential.credential_type,
    Credential.username,
    # the ciphertext only where there is no keyed hash to compare with
    case((Credential.password_mac.is_(None), Credential.password_enc), else_=None),
    Credential.password_mac,
    Credential.present,
    Credential.remote_id,
    *[getattr(Credential, name) for name in _METADATA],
)
# The fields of a stored row as _stored_rows() keeps it.
_ID, _HOST, _TYPE, _USER, _ENC, _MAC, _PRESENT, _REMOTE, _METADATA_HASH = range(9)
# Rows written per statement: bounded memory for the parameters of 100,000 credentials.
_BATCH = 2000
# Ids per IN (...): well under every database's limit on bound parameters.
_IDS_PER_STATEMENT = 500


def apply_fetch(
    environment_id: int,
    source: str,
    fetched: list[FetchedCredential],
    checkpoint: Callable[[], None] | None = None,
) -> Counts:
    """Upsert a complete fetch: history, absences. Without `checkpoint` everything is left in
    the session (the caller commits); with one, it is called after each slice of writes, and
    the caller commits what is left (the counts).

    An unchanged password is told by its keyed hash, so only new and changed passwords are
    encrypted, and only rows that changed are written (besides last_seen_at of the rows seen).
    """
    now = clock.now()
    data_cipher = cipher()
    counts = Counts()
    unique: dict[tuple[str, str, str], FetchedCredential] = {}
    for item in fetched:
        key = _key(item.hostname, item.credential_type or "", item.username)
        if key in unique:
            counts.duplicates += 1
        unique[key] = item
    connection = db.session.connection()
    existing = _stored_rows(connection, environment_id, source)
    by_key = {(r[_HOST], r[_TYPE], r[_USER]): r for r in existing}
    by_remote = {r[_REMOTE]: r for r in existing if r[_REMOTE]}
    seen: set[int] = set()
    new_items: list[FetchedCredential] = []
    updates: list[dict] = []
    changed_history: list[tuple[int, str]] = []
    for key, item in unique.items():
        row = by_key.get(key) or (by_remote.get(item.remote_id) if item.remote_id else None)
        if row is None or row[_ID] in seen:
            if item.password is None:
                counts.notes.append("entries without a password were skipped")
                continue
            new_items.append(item)
            continue
        seen.add(row[_ID])
        change: dict = {}
        metadata = _metadata(item)
        if hash(metadata) != row[_METADATA_HASH]:
            change.update(zip(_METADATA, metadata, strict=True))
        if key != (row[_HOST], row[_TYPE], row[_USER]):
            change.update(
                hostname=item.hostname,
                credential_type=item.credential_type or "",
                username=item.username,
            )
        if not row[_PRESENT]:
            change.update(present=True, absent_since=None)
        mac = (
            None
            if item.password is None
            else data_cipher.mac(item.password, CREDENTIAL_PASSWORD_MAC)
        )
        if mac is None:
            unchanged = True
        elif row[_MAC] is not None:
            unchanged = hmac.compare_digest(mac, row[_MAC])
        else:
            # Synced before the keyed hash existed: decrypt once, and keep the hash.
            stored = data_cipher.decrypt(row[_ENC], CREDENTIAL_PASSWORD) if row[_ENC] else None
            unchanged = item.password == stored
            if unchanged:
                change["password_mac"] = mac
        if not unchanged:
            change.update(
                password_enc=data_cipher.encrypt(item.password, CREDENTIAL_PASSWORD),
                password_mac=mac,
                last_changed_at=now,
            )
            changed_history.append((row[_ID], item.password))
            counts.changed += 1
        else:
            counts.unchanged += 1
        if change:
            change["id"] = row[_ID]
            updates.append(change)
    # Written in slices of writes.CHUNK_ROWS, each followed by `checkpoint` (which commits,
    # when the caller gives one): a large sync never holds the write lock for long. Absence is
    # marked only after every fetched row is stored.
    # After a checkpoint the session hands out a new connection: none is kept across one.
    step = checkpoint or (lambda: None)
    for part in writes.chunks(new_items):
        _insert_new(environment_id, source, now, list(part))
        step()
    counts.new = len(new_items)
    changed_ids = {cred_id: password for cred_id, password in changed_history}
    for part in writes.chunks(updates):
        history = [
            (c["id"], data_cipher.encrypt(changed_ids[c["id"]], HISTORY_PASSWORD))
            for c in part
            if c["id"] in changed_ids
        ]
        _bulk_update(list(part))
        for ids in writes.chunks([cred_id for cred_id, _ in history], _IDS_PER_STATEMENT):
            db.session.connection().execute(
                update(PasswordHistory.__table__)
                .where(
                    PasswordHistory.credential_id.in_(ids),
                    PasswordHistory.changed_at.is_(None),
                )
                .values(changed_at=now)
            )
        if history:
            _insert_history(now, history)
        step()
    gone = [r[_ID] for r in existing if r[_PRESENT] and r[_ID] not in seen]
    for part in writes.chunks(gone, _IDS_PER_STATEMENT):
        db.session.connection().execute(
            update(Credential.__table__)
            .where(Credential.id.in_(part))
            .values(present=False, absent_since=now)
        )
        step()
    counts.absent = len(gone)
    # last_seen_at of the rows seen, by their ids (new rows already carry it): primary key
    # lookups, where a condition on the environment would scan the whole source each time.
    for part in writes.chunks(sorted(seen), _IDS_PER_STATEMENT):
        db.session.connection().execute(
            update(Credential.__table__).where(Credential.id.in_(part)).values(last_seen_at=now)
        )
        step()
    refresh_counts(environment_id, source)
    return counts


def _stored_rows(connection, environment_id: int, source: str) -> list[tuple]:
    """A source's stored credentials, each as (id, hostname, credential type, user name,
    ciphertext where there is no keyed hash, keyed hash, present, remote id, hash of the
    _METADATA values).

    The metadata is kept as its hash, and repeated names once, so that 100,000 rows fit in
    little memory; equal hashes are taken for equal metadata (Python's hash of a tuple of
    strings, keyed per process: a collision would only delay writing a metadata change to
    the next change).
    """
    result = connection.execute(
        select(*_STORED).where(
            Credential.environment_id == environment_id, Credential.source == source
        )
    )
    # On SQLite the driver's own tuples: every column already has its Python type (present
    # is 0 or 1), and building result rows costs more than the query.
    rows = result.cursor if connection.dialect.name == "sqlite" else result
    names: dict[str, str] = {}
    one = names.setdefault
    first_metadata = len(_STORED) - len(_METADATA)
    stored = []
    while batch := rows.fetchmany(_BATCH):
        for row in batch:
            stored.append(
                (
                    row[0],
                    one(row[1], row[1]),
                    one(row[2], row[2]),
                    one(row[3], row[3]),
                    row[4],
                    row[5],
                    bool(row[6]),
                    row[7],
                    hash(tuple(row[first_metadata:])),
                )
            )
    result.close()
    return stored


_NEW_COLUMNS = (
    "environment_id",
    "source",
    "hostname",
    "username",
    "credential_type",
    *_METADATA,
    "password_enc",
    "password_mac",
    "present",
    "first_seen_at",
    "last_seen_at",
    "last_changed_at",
)


def _insert_new(environment_id: int, source: str, now, items: list[FetchedCredential]) -> None:
    # Core executemany in batches, then the new ids: much faster than ORM inserts with
    # RETURNING for thousands of rows.
    data_cipher = cipher()
    # Everything encrypted before the first INSERT: the write lock is then held only for the
    # statements themselves.
    history = [data_cipher.encrypt(item.password, HISTORY_PASSWORD) for item in items]
    connection = db.session.connection()
    before = _max_credential_id(connection)
    for start in range(0, len(items), _BATCH):
        _insert_rows(
            Credential.__table__,
            _NEW_COLUMNS,
            [
                (
                    environment_id,
                    source,
                    item.hostname,
                    item.username,
                    item.credential_type or "",
                    *_metadata(item),
                    data_cipher.encrypt(item.password, CREDENTIAL_PASSWORD),
                    data_cipher.mac(item.password, CREDENTIAL_PASSWORD_MAC),
                    True,
                    now,
                    now,
                    now,
                )
                for item in items[start : start + _BATCH]
            ],
        )
    ids = _new_ids(connection, environment_id, source, now, items, before)
    _insert_history(now, list(zip(ids, history, strict=True)))


def _max_credential_id(connection) -> int:
    return connection.execute(select(func.max(Credential.id))).scalar() or 0


def _new_ids(connection, environment_id: int, source: str, now, items, before: int) -> list[int]:
    """The ids of the rows just inserted for `items`, in the same order."""
    # Only rows after `before`: the earlier slices of the same sync carry the same stamp.
    stamped = (
        Credential.id > before,
        Credential.environment_id == environment_id,
        Credential.source == source,
        Credential.first_seen_at == now,
    )
    if connection.dialect.name == "sqlite":
        # Within our write transaction SQLite gives each inserted row the next rowid, so the
        # new rows are exactly before+1 ... before+n, in insertion order, when those bounds
        # and the count agree; otherwise read the ids by key.
        low, high, count = connection.execute(
            select(func.min(Credential.id), func.max(Credential.id), func.count()).where(*stamped)
        ).one()
        if (low, high, count) == (before + 1, before + len(items), len(items)):
            return list(range(before + 1, before + len(items) + 1))
    ids = {
        (r.hostname, r.credential_type, r.username): r.id
        for r in connection.execute(
            select(
                Credential.id, Credential.hostname, Credential.credential_type, Credential.username
            ).where(*stamped)
        )
    }
    return [ids[_key(i.hostname, i.credential_type or "", i.username)] for i in items]


def _insert_rows(table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Executemany INSERT; on SQLite straight through the driver (bulk syncs are hot)."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        connection.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 - our own names
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    _execute_on_sqlite(connection, sql, [table.c[c] for c in columns], rows)


def _update_rows(table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Executemany UPDATE of `columns` by id (the last value of each row); on SQLite straight
    through the driver."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        statement = (
            table.update()
            .where(table.c.id == bindparam("_id"))
            .values({name: bindparam(f"_{name}") for name in columns})
        )
        names = [f"_{name}" for name in columns] + ["_id"]
        connection.execute(statement, [dict(zip(names, row, strict=True)) for row in rows])
        return
    assignments = ", ".join(f"{name} = ?" for name in columns)
    sql = f"UPDATE {table.name} SET {assignments} WHERE id = ?"  # noqa: S608 - our own names
    _execute_on_sqlite(connection, sql, [*(table.c[c] for c in columns), table.c.id], rows)


def _execute_on_sqlite(connection, sql: str, columns: list, rows: list[tuple]) -> None:
    # Datetimes written as SQLAlchemy writes them on SQLite (not through sqlite3's deprecated
    # default adapter); a sync stamps every row with the same few values, so convert each once.
    texts: dict[datetime, str] = {}

    def as_text(value: datetime | None) -> str | None:
        if value is None:
            return None
        if value not in texts:
            texts[value] = value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return texts[value]

    stamped = [i for i, column in enumerate(columns) if isinstance(column.type, DateTime)]
    if stamped:
        converted = []
        for row in rows:
            record = list(row)
            for index in stamped:
                record[index] = as_text(record[index])
            converted.append(tuple(record))
        rows = converted
    connection.exec_driver_sql(sql, rows)


_HISTORY_COLUMNS = ("credential_id", "first_seen_at", "changed_at", "changed_by", "password_enc")


def _insert_history(now, entries: list[tuple[int, bytes]]) -> None:
    """New history entries: (credential id, the password already encrypted for history)."""
    for start in range(0, len(entries), _BATCH):
        _insert_rows(
            PasswordHistory.__table__,
            _HISTORY_COLUMNS,
            [
                (cred_id, now, None, "SYNC", blob)
                for cred_id, blob in entries[start : start + _BATCH]
            ],
        )


def _bulk_update(updates: list[dict]) -> None:
    # Executemany needs the same columns in every row: group rows by what changed.
    groups: dict[tuple[str, ...], list[dict]] = {}
    for change in updates:
        groups.setdefault(tuple(sorted(name for name in change if name != "id")), []).append(change)
    for names, rows in groups.items():
        for start in range(0, len(rows), _BATCH):
            _update_rows(
                Credential.__table__,
                names,
                [
                    (*(row[name] for name in names), row["id"])
                    for row in rows[start : start + _BATCH]
                ],
            )


def _finish(
    run: SyncRun, endpoint: Endpoint | None, state: str, error: str | None, counts: Counts | None
) -> bool:
    """End the run in the session (the caller commits); False when it is no longer ours: it
    was failed as interrupted meanwhile, and the caller must discard what it wrote."""
    now = clock.now()
    values: dict = {"state": state, "phase": "done", "finished_at": now, "error": error}
    if counts is not None:
        values.update(
            count_new=counts.new,
            count_changed=counts.changed,
            count_unchanged=counts.unchanged,
            count_absent=counts.absent,
        )
    ended = db.session.execute(update(SyncRun).where(*_ours(run.id)).values(**values))
    if ended.rowcount != 1:
        return False
    if endpoint is not None:
        endpoint.last_status = state
        endpoint.last_error = error
        endpoint.last_sync_at = now
        if state in ("success", "partial"):
            endpoint.last_success_at = now
            if endpoint.source == "manager":
                endpoint.expiry_requested_at = now  # expiry as SDDC Manager sees it, next
        # Alerts for a source that keeps failing or recovers: in the run's own transaction.
        notifications.sync_ended(run.environment_id, run.source, state, error)
    return True


def execute_run(run_id: int, fetch=None) -> SyncRun | None:
    """Claim a queued run and carry it out; returns the finished run (None if not claimed).

    Whatever goes wrong, the run ends: `success`, `partial` or `failed` with its reason, or,
    when not even the failure can be written (a full disk), failed as interrupted by the first
    process that sees its heartbeat stop.
    """
    if not _claim(run_id):
        return None
    app = current_app._get_current_object()
    with _Heartbeat(app, run_id):
        try:
            return _carry_out(run_id, fetch)
        except Exception as exc:  # noqa: BLE001 - every failure must end the run
            db.session.rollback()
            log.error("sync run %s failed: %s", run_id, _failure_reason(exc), exc_info=True)
            _record_failure(app, run_id, _failure_reason(exc))
            db.session.expire_all()
            return db.session.get(SyncRun, run_id)


def _failure_reason(exc: BaseException) -> str:
    # The driver's own error (SQLite's or PostgreSQL's), wrapped by SQLAlchemy or not.
    orig = getattr(exc, "orig", None) or exc
    message = str(orig).lower()
    if isinstance(exc, OperationalError) or type(orig).__name__ in ("OperationalError", "DiskFull"):
        if "locked" in message:
            return (
                "The database was busy (another process held its write lock); the sync "
                "stopped before storing everything it fetched."
            )
        if "full" in message or "no space left" in message:
            return (
                "The disk holding the database is full; the sync stopped before storing "
                "everything it fetched. Free space and sync again."
            )
    return (
        f"Internal error ({type(exc).__name__}); the sync stopped before storing everything "
        "it fetched; see the log."
    )


def _record_failure(app: Flask, run_id: int, reason: str) -> None:
    """Write the failure, retrying while the database refuses; else the heartbeat expires."""
    deadline = time.monotonic() + app.config.get("SYNC_RECORD_FAILURE_SECONDS", 30)
    while True:
        try:
            run = db.session.get(SyncRun, run_id)
            endpoint = db.session.scalar(
                select(Endpoint).where(
                    Endpoint.environment_id == run.environment_id, Endpoint.source == run.source
                )
            )
            if _finish(run, endpoint, "failed", reason, None):
                audit.record(
                    "sync.finish",
                    _target(run.environment_id, run.source),
                    outcome="failed",
                    actor="scheduler",
                    details={"run": run_id, "error": reason},
                )
            db.session.commit()
            return
        except Exception as exc:  # noqa: BLE001 - keep trying until the deadline
            db.session.rollback()
            if time.monotonic() > deadline:
                log.error(
                    "sync run %s: the failure could not be recorded (%s); it is marked "
                    "interrupted once its heartbeat is older than the limit",
                    run_id,
                    type(exc).__name__,
                )
                return
            time.sleep(0.5)


# New credentials in one sync after which PostgreSQL's planner statistics are refreshed.
ANALYZE_AFTER_NEW = 1000


def _refresh_statistics() -> None:
    """After a large first sync on PostgreSQL, its planner still believes the tables nearly
    empty until autovacuum comes by, and may look a credential up by SDDC Manager's id
    through the wrong index (a scan of the whole source per row). ANALYZE blocks no reader
    or writer."""
    if db.engine.dialect.name != "postgresql":
        return
    try:
        db.session.execute(text("ANALYZE credentials, password_history"))
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - statistics are an optimisation only
        db.session.rollback()
        log.warning("could not refresh the planner's statistics: %s", type(exc).__name__)


class _NoLongerOurs(Exception):
    """The run was failed as interrupted (by another process) while it was writing."""


def _checkpoint(run_id: int) -> None:
    """Commit one slice of a sync's writes, while the run is still ours."""
    if db.session.execute(select(SyncRun.id).where(*_ours(run_id))).first() is None:
        raise _NoLongerOurs(run_id)
    db.session.commit()
    writes.let_others_write()


def _carry_out(run_id: int, fetch) -> SyncRun:
    run = db.session.get(SyncRun, run_id)
    endpoint = db.session.scalar(
        select(Endpoint).where(
            Endpoint.environment_id == run.environment_id, Endpoint.source == run.source
        )
    )
    env = db.session.get(Environment, run.environment_id)
    target = f"{env.name if env else run.environment_id} / {run.source}"
    audit.record(
        "sync.start",
        target,
        details={"trigger": run.trigger, "run": run.id},
        actor=run.requested_by or "scheduler",
    )
    started = time.monotonic()
    if endpoint is None:
        _finish(run, None, "failed", "This source is no longer configured.", None)
        db.session.commit()
        return run
    try:
        settings = endpoint_settings(endpoint)
        if fetch is None:
            with client_for(run.source, settings) as client:
                fetched = client.fetch_credentials()
        else:
            fetched = fetch(settings)
    except VcfError as exc:
        log.warning("sync %s failed: %s", target, audit.clean(exc))
        db.session.rollback()
        run, endpoint = db.session.get(SyncRun, run_id), db.session.get(Endpoint, endpoint.id)
        _finish(run, endpoint, "failed", str(exc), None)
        audit.record(
            "sync.finish",
            target,
            outcome="failed",
            details={"run": run.id, "error": str(exc)},
            actor="scheduler",
        )
        db.session.commit()
        return run
    except Exception as exc:  # noqa: BLE001 - any bug must still end the run, not wedge it
        log.exception("sync %s crashed: %s", target, type(exc).__name__)
        db.session.rollback()
        run, endpoint = db.session.get(SyncRun, run_id), db.session.get(Endpoint, endpoint.id)
        _finish(
            run, endpoint, "failed", f"Internal error ({type(exc).__name__}); see the log.", None
        )
        db.session.commit()
        return run
    _set_phase(run_id, "writing")
    try:
        counts = apply_fetch(
            run.environment_id, run.source, fetched, checkpoint=lambda: _checkpoint(run_id)
        )
    except _NoLongerOurs:
        db.session.rollback()
        log.warning(
            "sync %s: run %s was failed as interrupted meanwhile; the rest is not stored",
            target,
            run_id,
        )
        return db.session.get(SyncRun, run_id)
    except Exception as exc:
        db.session.rollback()
        log.exception("sync %s could not store: %s", target, type(exc).__name__)
        run, endpoint = db.session.get(SyncRun, run_id), db.session.get(Endpoint, endpoint.id)
        if endpoint is not None:
            _finish(run, endpoint, "failed", _failure_reason(exc), None)
        else:
            _finish(run, None, "failed", "The environment was deleted during the sync.", None)
        db.session.commit()
        return run
    notes = list(dict.fromkeys(counts.notes))
    if counts.duplicates:
        notes.append(f"{counts.duplicates} duplicate entries ignored")
    state = "partial" if notes else "success"
    if not _finish(run, endpoint, state, "; ".join(notes) or None, counts):
        db.session.rollback()
        log.warning(
            "sync %s: run %s was failed as interrupted meanwhile; nothing stored", target, run_id
        )
        return db.session.get(SyncRun, run_id)
    audit.record(
        "sync.finish",
        target,
        outcome=state,
        actor="scheduler",
        details={
            "run": run.id,
            "new": counts.new,
            "changed": counts.changed,
            "unchanged": counts.unchanged,
            "absent": counts.absent,
        },
    )
    db.session.commit()
    if counts.new >= ANALYZE_AFTER_NEW:
        _refresh_statistics()
    log.info(
        "sync %s %s in %.2fs: new=%d changed=%d unchanged=%d absent=%d",
        target,
        state,
        time.monotonic() - started,
        counts.new,
        counts.changed,
        counts.unchanged,
        counts.absent,
    )
    return run


def process_queue(limit: int = 20, may_claim=None) -> list[int]:
    """Run queued syncs (oldest first); returns the ids this call carried out.

    `may_claim` is asked before each claim (the scheduler: "do I still lead?").
    """
    done = []
    queued = db.session.scalars(
        select(SyncRun.id).where(SyncRun.state == "queued").order_by(SyncRun.id).limit(limit)
    ).all()
    for run_id in queued:
        if may_claim is not None and not may_claim():
            break
        if execute_run(run_id) is not None:
            done.append(run_id)
    return done


def _target(environment_id: int, source: str) -> str:
    env = db.session.get(Environment, environment_id)
    return f"{env.name if env else environment_id} / {source}"


def _fail_interrupted(condition, reason: str) -> int:
    """Fail the running runs that meet `condition`, re-checked in each UPDATE so that a run
    that ended or beat again meanwhile is left alone."""
    failed = 0
    now = clock.now()
    candidates = db.session.execute(
        select(SyncRun.id, SyncRun.environment_id, SyncRun.source, SyncRun.owner).where(
            SyncRun.state == "running", condition
        )
    ).all()
    for run_id, environment_id, source, owner in candidates:
        ended = db.session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.state == "running", condition)
            .values(state="failed", phase="done", finished_at=now, error=reason)
        )
        if ended.rowcount != 1:
            continue
        failed += 1
        db.session.execute(
            update(Endpoint)
            .where(Endpoint.environment_id == environment_id, Endpoint.source == source)
            .values(last_status="failed", last_error=reason, last_sync_at=now)
        )
        notifications.sync_ended(environment_id, source, "failed", reason)
        audit.record(
            "sync.finish",
            _target(environment_id, source),
            outcome="failed",
            actor="scheduler",
            details={"run": run_id, "error": reason},
        )
        log.warning("sync run %s (%s) failed: %s", run_id, owner or "no owner", reason)
    db.session.commit()
    return failed


def fail_stale_runs(stale_seconds: float | None = None) -> int:
    """Fail every running run whose owner stopped renewing its heartbeat; its source can
    sync again. A run whose owner is alive is never touched."""
    if stale_seconds is None:
        stale_seconds = current_app.config.get("SYNC_STALE_SECONDS", STALE_SECONDS)
    limit = clock.now() - timedelta(seconds=stale_seconds)
    silent = or_(
        SyncRun.heartbeat_at < limit,
        SyncRun.heartbeat_at.is_(None)
        & or_(SyncRun.started_at < limit, SyncRun.started_at.is_(None)),
    )
    reason = f"Interrupted: no sign of life from its process for {int(stale_seconds)} s."
    return _fail_interrupted(silent, reason)


def _process_gone(owner: str | None) -> bool:
    """True when `owner` names a process of this host that no longer runs."""
    if not owner:
        return True  # a run from before owners were recorded
    host, _, rest = owner.partition(" ")
    pid_text = rest.partition(" ")[0]
    if host != socket.gethostname()[:96] or not pid_text.isdigit():
        return False  # another node's: only its heartbeat can tell
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != owner_id()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_own_runs(reason: str) -> int:
    """Fail the runs this process is carrying out (it is stopping): their sources can sync
    again at once, on this node's next start or on the node that leads next."""
    return _fail_interrupted(SyncRun.owner == owner_id(), reason)


def fail_interrupted_runs() -> int:
    """At scheduler start: fail the runs of this host's processes that are gone, and every
    run whose heartbeat expired; runs of live processes, here or on other nodes, go on."""
    running = db.session.execute(
        select(SyncRun.id, SyncRun.owner).where(SyncRun.state == "running")
    ).all()
    gone = [run_id for run_id, owner in running if _process_gone(owner)]
    failed = 0
    if gone:
        failed = _fail_interrupted(SyncRun.id.in_(gone), "Interrupted by a restart of the portal.")
    return failed + fail_stale_runs()
