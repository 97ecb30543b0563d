"""Alembic environment: runs on the connection handed over by portal.ops.bootstrap."""

from alembic import context
from sqlalchemy import create_engine

from portal import models  # noqa: F401  (registers the tables on the metadata)
from portal.platform.extensions import db

config = context.config
target_metadata = db.metadata


def run_migrations() -> None:
    """Run migrations on the connection in config.attributes, or on the configured URL."""
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        if url is None:
            raise RuntimeError("No connection handed over and no sqlalchemy.url configured.")
        engine = create_engine(url)
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
