"""Backups, restore, data-key rotation and the health check behind `flask --app app ...`."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from flask import Flask
from sqlalchemy import select, text, update

from .. import audit
from ..audit import chain, checkpoints
from ..models import (
    AuditDestination,
    Credential,
    CredentialAction,
    Endpoint,
    NotificationChannel,
    PasswordHistory,
    PortalMeta,
    SignInProvider,
    User,
)
from ..platform import locks
from ..platform.clock import UTC
from ..platform.crypto import (
    ACTION_PASSWORD,
    AUDIT_FORWARD_TOKEN,
    CREDENTIAL_PASSWORD,
    CREDENTIAL_PASSWORD_MAC,
    ENDPOINT_PASSWORD,
    HISTORY_PASSWORD,
    LOCKER_PASSWORD,
    SIGN_IN_SECRET,
    SMTP_PASSWORD,
    TOTP_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    DataCipher,
    DecryptionError,
    KeyFileError,
    cipher,
    key_id,
    load_key,
    set_cipher,
    write_secret_file,
)
from ..platform.extensions import db
from .bootstrap import current_revision, head_revision, known_revisions, stored_key_id

# (model, column, purpose): every secret the portal stores, for key rotation and checks.
ENCRYPTED_COLUMNS = (
    (Endpoint, "password_enc", ENDPOINT_PASSWORD),
    (Endpoint, "locker_password_enc", LOCKER_PASSWORD),
    (Credential, "password_enc", CREDENTIAL_PASSWORD),
    (PasswordHistory, "password_enc", HISTORY_PASSWORD),
    (User, "totp_secret_enc", TOTP_SECRET),
    (User, "totp_pending_enc", TOTP_SECRET),
    (CredentialAction, "password_enc", ACTION_PASSWORD),
    (NotificationChannel, "smtp_password_enc", SMTP_PASSWORD),
    (NotificationChannel, "webhook_url_enc", WEBHOOK_URL),
    (NotificationChannel, "webhook_secret_enc", WEBHOOK_SECRET),
    (SignInProvider, "secret_enc", SIGN_IN_SECRET),
    (AuditDestination, "token_enc", AUDIT_FORWARD_TOKEN),
)
# (model, encrypted column, keyed-hash column, label): hashes recomputed on key rotation.
# A keyed hash is not a secret on its own, but it is never logged, exported or shown.
HASHED_COLUMNS = ((Credential, "password_enc", "password_mac", CREDENTIAL_PASSWORD_MAC),)

BACKUP_PREFIX = "vcf_credentials-"


class MaintenanceError(Exception):
    """A maintenance task refused or failed; the message says why."""


def _sqlite_path(app: Flask) -> Path:
    path = app.config["PORTAL_SETTINGS"].sqlite_path
    if path is None:
        raise MaintenanceError("backup and restore cover SQLite; use pg_dump for PostgreSQL")
    return path


def backup(
    app: Flask, to_dir: Path | None = None, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Copy the live database with SQLite's online backup API; keep the newest N backups."""
    settings = app.config["PORTAL_SETTINGS"]
    source_path = _sqlite_path(app)
    target_dir = to_dir or settings.data_dir / "backups"
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = target_dir / f"{BACKUP_PREFIX}{stamp}.db"
    partial = target.with_suffix(".partial")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    dest = sqlite3.connect(partial)
    try:

        def _report(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        # Pages are copied in steps so writers are never blocked for long.
        source.backup(dest, pages=256, progress=_report, sleep=0.005)
        dest.execute("PRAGMA journal_mode=DELETE")
        result = dest.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise MaintenanceError(f"the backup failed its integrity check: {result}")
    finally:
        dest.close()
        source.close()
    os.replace(partial, target)
    prune_backups(target_dir, settings.backup_keep)
    return target


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in directory; returns what was removed."""
    backups = sorted(directory.glob(f"{BACKUP_PREFIX}*.db"))
    removed = backups[:-keep] if keep and len(backups) > keep else []
    for path in removed:
        path.unlink()
    return removed


def verify_backup(path: Path) -> str:
    """Check a backup file's integrity and schema; returns its schema revision."""
    if not path.is_file():
        raise MaintenanceError(f"{path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise MaintenanceError(f"{path} is not a portal database: {exc}") from None
    if integrity != "ok":
        raise MaintenanceError(f"{path} failed the integrity check: {integrity}")
    if revision is None:
        raise MaintenanceError(f"{path} has no schema version")
    if revision[0] not in known_revisions():
        raise MaintenanceError(
            f"{path} is at schema {revision[0]}, which this portal does not know "
            f"(it is at {head_revision()})"
        )
    return revision[0]


def restore(app: Flask, backup_file: Path) -> Path | None:
    """Replace the database with a verified backup (portal stopped); returns where the replaced
    database is kept, or None when there was none (a new data directory).

    Every check runs before anything is written, so a refused restore leaves the data directory
    as it was and can simply be run again.
    """
    settings = app.config["PORTAL_SETTINGS"]
    target = _sqlite_path(app)
    if locks.portal_running(settings.data_dir):
        raise MaintenanceError("the portal is running; stop it before restoring")
    verify_backup(backup_file)
    _check_backup_key(app, backup_file)
    kept = None
    with locks.init_lock(settings.data_dir):
        with app.app_context():
            db.engine.dispose()
        if target.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = target.with_name(f"{target.name}.replaced-{stamp}")
            # Fold the WAL into the main file first so the kept copy is complete.
            conn = sqlite3.connect(target)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            shutil.copy2(target, kept)
            os.chmod(kept, 0o600)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        tmp = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(backup_file, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
        # Checkpoints newer than the restored database state records it never held: they
        # are kept aside, not held against it.
        checkpoints.supersede_after(app, _audit_head(target))
        chain.forget_head_file(settings.data_dir)
    return kept


def _audit_head(path: Path) -> int:
    """The chain position of the newest sealed audit record in a database file (0: none)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT value FROM portal_meta WHERE key = ?", (chain.HEAD_META,)
        ).fetchone()
    except sqlite3.DatabaseError:
        row = None
    finally:
        conn.close()
    return int(str(row[0]).partition(":")[0] or 0) if row else 0


def _data_key_id(app: Flask) -> str:
    """The id of the key in data.key, read from the file: restore runs without start-up."""
    path = app.config["PORTAL_SETTINGS"].data_dir / "data.key"
    try:
        return key_id(load_key(path)).hex()
    except KeyFileError as exc:
        raise MaintenanceError(
            f"{exc}: put the data.key that belongs to this backup there first"
        ) from None


def _check_backup_key(app: Flask, backup_file: Path) -> None:
    """Refuse a backup made under another data key, before anything is replaced."""
    current = _data_key_id(app)
    conn = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM portal_meta WHERE key = 'data_key_id'").fetchone()
        sealed = conn.execute(
            "SELECT value FROM portal_meta WHERE key = ?", (chain.KEY_ID_META,)
        ).fetchone()
    finally:
        conn.close()
    if row is not None and row[0] != current:
        raise MaintenanceError(
            "this backup was made under a different data key; put that data.key in place first"
        )
    if sealed is not None:
        _check_audit_keys(app.config["PORTAL_SETTINGS"].data_dir, sealed[0])


def _check_audit_keys(data_dir: Path, sealed_with: str) -> None:
    """The audit chain key and checkpoint signing key must be in place for a sealed log."""
    try:
        key = chain.read_key(data_dir)
        checkpoints.read_signing_key(data_dir)
    except (chain.ChainKeyError, checkpoints.SigningKeyError) as exc:
        raise MaintenanceError(f"{exc}; put it in place first") from None
    if key.key_id != sealed_with:
        raise MaintenanceError(
            "this backup's audit log was sealed under a different audit chain key; put that "
            "audit.key in place first"
        )


@dataclass
class KeyRotation:
    """What `rotate_key` did: secrets re-encrypted, and where the old key is kept."""

    count: int
    old_key: Path


def _kept_key_name(data_dir: Path) -> Path:
    """data.key.old-<time>, with a counter when a key was already kept in the same second."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = data_dir / f"data.key.old-{stamp}"
    counter = 1
    while name.exists():
        counter += 1
        name = data_dir / f"data.key.old-{stamp}-{counter}"
    return name


def rotate_key(app: Flask) -> KeyRotation:
    """Re-encrypt every secret under a new data key in one transaction.

    The new key is written aside first; the old key file is replaced only after the
    transaction commits, and kept as data.key.old-<time> until the operator removes it.
    """
    settings = app.config["PORTAL_SETTINGS"]
    if locks.portal_running(settings.data_dir):
        # Running processes hold the old key in memory and would keep writing with it.
        raise MaintenanceError("the portal is running; stop it before rotating the key")
    key_path = settings.data_dir / "data.key"
    old_cipher = cipher(app)
    new_key = os.urandom(32)
    new_cipher = DataCipher(new_key)
    pending = settings.data_dir / "data.key.new"
    pending.unlink(missing_ok=True)
    write_secret_file(pending, new_key.hex().encode() + b"\n")
    count = 0
    with app.app_context(), locks.init_lock(settings.data_dir):
        # The old key is kept under a name of its own before anything changes, so that a
        # failure after the commit can never leave the database without its key on disk.
        old_key = _kept_key_name(settings.data_dir)
        os.link(key_path, old_key)
        try:
            hashed: dict[tuple[type, str], tuple[str, str]] = {
                (model, column): (mac, label) for model, column, mac, label in HASHED_COLUMNS
            }
            for model, column, purpose in ENCRYPTED_COLUMNS:
                attr = getattr(model, column)
                key = model.__mapper__.primary_key[0]  # an id, or a name (sign_in_providers)
                rows = db.session.execute(select(key, attr).where(attr.is_not(None))).all()
                for row_id, blob in rows:
                    plain = old_cipher.decrypt(blob, purpose)
                    values = {column: new_cipher.encrypt(plain, purpose)}
                    if (model, column) in hashed:
                        mac_column, label = hashed[(model, column)]
                        values[mac_column] = new_cipher.mac(plain, label)
                    db.session.execute(update(model).where(key == row_id).values(values))
                    count += 1
            meta = db.session.get(PortalMeta, "data_key_id")
            if meta is None:
                raise MaintenanceError("the database does not name its data key")
            meta.value = key_id(new_key).hex()
            audit.record(
                "settings.rotate_key",
                "data key",
                actor="cli",
                details={"secrets": count},
            )
            db.session.commit()
        except Exception:
            db.session.rollback()
            pending.unlink(missing_ok=True)
            old_key.unlink(missing_ok=True)
            raise
        os.replace(pending, key_path)
    set_cipher(app, new_cipher)
    return KeyRotation(count, old_key)


@dataclass
class CheckResult:
    """One line of `flask check`."""

    name: str
    ok: bool
    detail: str


def run_checks(app: Flask) -> list[CheckResult]:
    """Database integrity, schema version, data key, certificate, scheduler lock."""
    settings = app.config["PORTAL_SETTINGS"]
    results: list[CheckResult] = []
    with app.app_context():
        try:
            if settings.sqlite_path is not None and not settings.sqlite_path.exists():
                raise MaintenanceError(f"{settings.sqlite_path} does not exist")
            if settings.sqlite_path is not None:
                verdict = db.session.execute(text("PRAGMA integrity_check")).scalar()
                results.append(CheckResult("database integrity", verdict == "ok", str(verdict)))
            with db.engine.connect() as conn:
                revision = current_revision(conn)
            head = head_revision()
            results.append(
                CheckResult("schema version", revision == head, f"{revision} (expected {head})")
            )
        except Exception as exc:  # noqa: BLE001 - a broken database is what we report
            results.append(CheckResult("database", False, f"{type(exc).__name__}: {exc}"[:300]))
        results.append(_check_key(app, settings.data_dir / "data.key"))
    results.append(_check_certificate(settings.ssl_dir / "cert.pem"))
    with app.app_context():
        results.append(_check_scheduler(settings))
    return results


def _check_scheduler(settings) -> CheckResult:
    """Who runs the scheduler: on SQLite this data directory's lock, on PostgreSQL whichever
    node holds the database's advisory lock (it may be another machine)."""
    if settings.sqlite_path is not None:
        holder = locks.scheduler_lock_holder(settings.data_dir)
        return CheckResult(
            "scheduler lock", True, f"held by pid {holder}" if holder else "free (portal stopped)"
        )
    try:
        leader = locks.current_leader(db.session, settings)
    except Exception as exc:  # noqa: BLE001 - reported as the check's answer
        db.session.rollback()
        reason = f"cannot ask the database: {type(exc).__name__}"
        return CheckResult("scheduler lock", False, reason)
    if leader is None:
        return CheckResult("scheduler lock", True, "free: no node runs the scheduler")
    return CheckResult("scheduler lock", True, f"held by {leader} (host and process)")


def _check_key(app: Flask, path: Path) -> CheckResult:
    if not path.exists():
        return CheckResult("data key", False, f"{path} is missing")
    mode = path.stat().st_mode & 0o777
    try:
        key = load_key(path, repair_mode=False)
    except KeyFileError as exc:
        return CheckResult("data key", False, str(exc))
    try:
        stored = stored_key_id(app)
    except Exception:  # noqa: BLE001 - reported by the database check
        return CheckResult("data key", False, "cannot read the database to compare")
    if stored is not None and stored != key_id(key).hex():
        return CheckResult("data key", False, "does not match this database")
    sample = None
    if stored is not None:
        sample = db.session.execute(
            select(Credential.password_enc).where(Credential.password_enc.is_not(None)).limit(1)
        ).scalar()
    if sample is not None:
        try:
            DataCipher(key).decrypt(sample, CREDENTIAL_PASSWORD)
        except DecryptionError as exc:
            return CheckResult("data key", False, str(exc))
    if mode & 0o077:
        return CheckResult("data key", False, f"mode {mode:o}; must be 600")
    return CheckResult("data key", True, f"present, mode 600, matches ({key_id(key).hex()})")


def _check_certificate(path: Path) -> CheckResult:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return CheckResult("certificate", False, f"{path}: {exc}"[:200])
    days = (cert.not_valid_after_utc - datetime.now(UTC)).days
    if days < 0:
        return CheckResult("certificate", False, f"expired {-days} days ago")
    detail = f"valid for {days} more days"
    return CheckResult("certificate", True, detail + (" (renew soon)" if days < 30 else ""))
