"""The models and the migrations describe the same schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from support import make_app

from portal.platform.extensions import db

# Indexes on an expression (lower(name)): SQLite's reflection cannot read them back, so they
# are compared by their definition in the database instead.
EXPRESSION_INDEXES = {"ix_environments_name_any_case": ("environments", "lower(name")}


def _no_expression_index(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def _differences(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _no_expression_index}
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expr")
            differences = compare_metadata(context, db.metadata)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            indexes = {
                table: {i["name"]: i for i in inspect(connection).get_indexes(table)}
                for table, _ in EXPRESSION_INDEXES.values()
            }
        for name, (table, expression) in EXPRESSION_INDEXES.items():
            if connection.dialect.name == "sqlite":
                sql = connection.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
                ).scalar()
                found = sql is not None and "UNIQUE" in sql and expression in sql
            else:
                index = indexes[table].get(name)
                expressions = " ".join(index.get("expressions") or []) if index else ""
                found = bool(index and index["unique"] and expression in expressions)
            if not found:
                differences.append(("missing expression index", name))
        return differences


def test_models_match_migrations_on_sqlite(app):
    assert _differences(app) == []


def test_models_match_migrations_on_postgresql(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    try:
        assert _differences(app) == []
    finally:
        with app.app_context():
            db.engine.dispose()
