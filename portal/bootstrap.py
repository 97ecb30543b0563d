"""Idempotent start-up: data directory, keys, schema migrations, first admin.

Runs at import of app.py in the Gunicorn master (preload) or the development server. Several
processes may start at once against a new data directory, so the whole of it runs under an
exclusive file lock in that directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import select

from . import audit
from .extensions import db
from .models import PortalMeta, User
from .security import hash_password

log = logging.getLogger("portal.bootstrap")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_ADMIN_PASSWORD = "admin"  # noqa: S105 - usable once: the first sign-in forces a change


@contextmanager
def file_lock(path: Path):
    """Hold an exclusive advisory lock on path for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def alembic_config() -> Config:
    """Alembic configuration pointing at the package's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection) -> str | None:
    """The revision the connected database is at (None when unversioned)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema() -> None:
    """Bring the schema to the newest revision, in one transaction."""
    cfg = alembic_config()
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


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


def _check_data_key(app: Flask) -> None:
    """Record the data key's id on first start; refuse to start under a different key."""
    key_id = app.extensions["portal_cipher"].key_id.hex()
    meta = db.session.get(PortalMeta, "data_key_id")
    if meta is None:
        db.session.add(PortalMeta(key="data_key_id", value=key_id))
        db.session.commit()
    elif meta.value != key_id:
        raise RuntimeError(
            "the data key file does not match this database (restore the right data.key)"
        )


def initialize(app: Flask) -> dict:
    """Run the idempotent start-up; returns what it did."""
    settings = app.config["PORTAL_SETTINGS"]
    with app.app_context(), file_lock(settings.data_dir / ".init.lock"):
        upgrade_schema()
        _check_data_key(app)
        seeded = seed_first_admin(app)
        db.session.remove()
    log.info("Database initialization complete")
    return {"admin_created": seeded}
