"""Writing a fetch: the credentials of one environment source as fetched, compared with what
is stored, written in short transactions of at most 500 credentials (new ones, changed
passwords with their history, metadata), and last, once everything fetched is stored, those
gone upstream marked absent. Unchanged passwords are told by their keyed hash, so only new
and changed ones are encrypted."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import DateTime, bindparam, case, func, select, update

from ..environments.service import refresh_counts
from ..models import Credential, PasswordHistory
from ..platform import clock, writes
from ..platform.crypto import CREDENTIAL_PASSWORD, CREDENTIAL_PASSWORD_MAC, HISTORY_PASSWORD, cipher
from ..platform.extensions import db
from ..vcf import FetchedCredential

log = logging.getLogger("portal.sync")

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


# The joined domain names are clipped to their column (PostgreSQL refuses a longer value).
_DOMAIN_LENGTH = getattr(Credential.__table__.c.domain.type, "length", None) or 512


@dataclass
class Counts:
    """What one sync did."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    absent: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)


def _key(hostname: str, credential_type: str, username: str) -> tuple[str, str, str]:
    return (hostname, credential_type, username)


def _metadata(item: FetchedCredential) -> tuple:
    """The _METADATA values of a fetched credential, in that order."""
    return (
        item.account_type or "",
        item.resource_type or "",
        item.resource_id,
        item.resource_ip,
        ", ".join(item.domain_names)[:_DOMAIN_LENGTH],
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
        if not unchanged and item.password is not None:  # no password: counted unchanged
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


def _password(item: FetchedCredential) -> str:
    """The password of a new item: those without one were skipped before."""
    if item.password is None:
        raise ValueError(f"{item.hostname} {item.username}: no password to store")
    return item.password


def _insert_new(environment_id: int, source: str, now, items: list[FetchedCredential]) -> None:
    # Core executemany in batches, then the new ids: much faster than ORM inserts with
    # RETURNING for thousands of rows.
    data_cipher = cipher()
    # Everything encrypted before the first INSERT: the write lock is then held only for the
    # statements themselves.
    history = [data_cipher.encrypt(_password(item), HISTORY_PASSWORD) for item in items]
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
                    data_cipher.encrypt(_password(item), CREDENTIAL_PASSWORD),
                    data_cipher.mac(_password(item), CREDENTIAL_PASSWORD_MAC),
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
