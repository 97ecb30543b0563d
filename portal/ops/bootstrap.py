"""Idempotent start-up: data directory, keys, schema migrations, first admin.

Runs at import of app.py in the Gunicorn master (preload) or the development server. Several
processes may start at once against a new data directory, so the whole of it runs under an
exclusive file lock in that directory. Start-up is the only step that creates the data key and
the session key: `create_app()` alone leaves the data directory as it finds it, which is what
`flask restore` and `flask check` need.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import inspect, select

from .. import audit
from ..audit import chain, checkpoints
from ..models import PortalMeta, User
from ..platform import locks
from ..platform.crypto import (
    DataCipher,
    KeyFileError,
    create_key,
    load_key,
    set_cipher,
    write_secret_file,
)
from ..platform.crypto import key_id as data_key_id
from ..platform.extensions import db
from ..platform.security import hash_password

log = logging.getLogger("portal.ops.bootstrap")

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
DEFAULT_ADMIN_PASSWORD = "admin"  # noqa: S105 - usable once: the first sign-in forces a change
# `flask` commands that look at or replace the data directory as it is: start-up, which
# creates keys and a database, must not run before them.
WITHOUT_STARTUP = frozenset({"restore", "check"})
_FLASK_OPTIONS_WITH_VALUE = frozenset({"--app", "-A", "--env-file", "-e"})


class StartupError(Exception):
    """Start-up cannot go on; the message says why in one line."""


def flask_command(argv: list[str] | None = None) -> str | None:
    """The `flask` sub-command this process runs, or None when it is not the flask CLI."""
    argv = sys.argv if argv is None else argv
    program = Path(argv[0]) if argv else Path()
    if program.name != "flask" and program.parts[-2:] != ("flask", "__main__.py"):
        return None
    args = iter(argv[1:])
    for arg in args:
        if arg in _FLASK_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def startup_wanted() -> bool:
    """False for the `flask` commands that must see the data directory untouched."""
    return flask_command() not in WITHOUT_STARTUP


def alembic_config() -> Config:
    """Alembic configuration pointing at the package's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    # The migrations shipped with this code: read once per process (they never change under
    # a running portal).
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError("no migrations are shipped with this code")
    return head


def known_revisions() -> set[str]:
    """Every migration revision shipped with this code (a database at any of them migrates)."""
    return {revision.revision for revision in _scripts().walk_revisions()}


def current_revision(connection) -> str | None:
    """The revision the connected database is at (None when unversioned)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema() -> None:
    """Bring the schema to the newest revision, in one transaction (nothing to do when it is
    there already)."""
    cfg = alembic_config()
    with db.engine.begin() as connection:
        if current_revision(connection) == head_revision():
            return
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def first_sign_in_hint(app: Flask) -> str:
    """What to tell the operator after start-up created the first admin."""
    settings = app.config["PORTAL_SETTINGS"]
    if settings.admin_password:
        return "New installation: sign in as 'admin' with the password in PORTAL_ADMIN_PASSWORD."
    return (
        "New installation: sign in as 'admin' with the password 'admin';\n"
        "you will be asked to choose a new password at the first sign-in."
    )


def seed_first_admin(app: Flask) -> bool:
    """Create user `admin` when no user exists; returns True when it did."""
    if db.session.scalar(select(User.id).limit(1)) is not None:
        return False
    settings = app.config["PORTAL_SETTINGS"]
    password = settings.admin_password or DEFAULT_ADMIN_PASSWORD
    db.session.add(
        User(
            username="admin",
            password_hash=hash_password(password),
            role="admin",
            must_change_password=settings.admin_password is None,
        )
    )
    audit.record(
        "user.create",
        "admin",
        details={"role": "admin", "by": "first start"},
        actor="system",
    )
    db.session.commit()
    return True


def stored_key_id(app: Flask) -> str | None:
    """The data key id recorded in the database, or None for a new (or absent) database.

    Never creates a SQLite file: a missing one is simply a new database.
    """
    sqlite_path = app.config["PORTAL_SETTINGS"].sqlite_path
    if sqlite_path is not None and not sqlite_path.exists():
        return None
    with db.engine.connect() as conn:
        if not inspect(conn).has_table(PortalMeta.__tablename__):
            return None
        return conn.scalar(select(PortalMeta.value).where(PortalMeta.key == "data_key_id"))


def load_data_key(app: Flask) -> DataCipher:
    """Load the data key (created only for a new database) and make it the app's cipher."""
    path = app.config["PORTAL_SETTINGS"].data_dir / "data.key"
    stored = stored_key_id(app)
    if stored is None:
        create_key(path)
    try:
        key = load_key(path)
    except KeyFileError as exc:
        hint = "; restore it from your key backup" if stored and not path.exists() else ""
        raise StartupError(f"{exc}{hint}") from None
    if stored is not None and stored != data_key_id(key).hex():
        raise StartupError(
            f"data key file {path} does not match this database (restore the right data.key)"
        )
    cipher = DataCipher(key)
    set_cipher(app, cipher)
    return cipher


def load_session_key(app: Flask) -> None:
    """Sign sessions with PORTAL_SECRET_KEY or session.key, created on first start."""
    if app.config.get("SECRET_KEY"):
        return
    path = app.config["PORTAL_SETTINGS"].data_dir / "session.key"
    write_secret_file(path, os.urandom(32).hex().encode() + b"\n")
    app.config["SECRET_KEY"] = path.read_text(encoding="ascii").strip()


def _record_data_key(app: Flask, cipher: DataCipher) -> None:
    """Record the data key's id on first start, so a different key is refused later."""
    if db.session.get(PortalMeta, "data_key_id") is None:
        db.session.add(PortalMeta(key="data_key_id", value=cipher.key_id.hex()))
        db.session.commit()


def load_audit_keys(app: Flask) -> None:
    """Load the audit chain key (made only for a database that has none recorded) and the
    checkpoint signing key; a key that does not match the database stops the start."""
    stored = chain.stored_key_id()
    try:
        key, created = chain.load_key(app, create=stored is None)
        checkpoints.load_signing_key(app, create=stored is None)
    except (chain.ChainKeyError, checkpoints.SigningKeyError) as exc:
        raise StartupError(str(exc)) from None
    if stored is not None and stored != key.key_id:
        path = app.config["PORTAL_SETTINGS"].data_dir / chain.KEY_FILE
        raise StartupError(
            f"audit chain key {path} does not match this database (restore the right audit.key)"
        )
    chain.ensure_started()
    db.session.commit()
    if created:  # the first start with the chain: the records from before it are adopted
        adopted = chain.adopt_legacy()
        if adopted:
            log.info(
                "%d audit records from before the audit chain were sealed as they are", adopted
            )


def initialize(app: Flask) -> dict:
    """Run the idempotent start-up; returns what it did."""
    settings = app.config["PORTAL_SETTINGS"]
    with app.app_context(), locks.init_lock(settings.data_dir):
        cipher = load_data_key(app)
        load_session_key(app)
        upgrade_schema()
        _record_data_key(app, cipher)
        load_audit_keys(app)
        seeded = seed_first_admin(app)
        db.session.remove()
    log.info("Database initialization complete")
    return {"admin_created": seeded}
