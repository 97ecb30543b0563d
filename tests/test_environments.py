"""Per-source credential counts kept on the endpoints: every writer keeps them current, the
dashboard reads them without counting the credentials table, and the migration fills them."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import event, select, text
from support import fetched, make_app

from portal import sync
from portal.environments.service import save_environment
from portal.models import Credential, Endpoint
from portal.ops.bootstrap import alembic_config
from portal.platform.extensions import db


@pytest.fixture
def env_id(app):
    with app.app_context():
        env, _ = save_environment(
            {
                "name": "sfo",
                "manager": {"host": "sddc.example.net", "username": "svc", "password": "x"},
            }
        )
        db.session.commit()
        return env.id


def apply(app, env_id, items) -> tuple[int, int]:
    """Store a fetch as a sync does, then read the endpoint's counts."""
    with app.app_context():
        sync.apply_fetch(env_id, "manager", items)
        db.session.commit()
    return stored_counts(app, env_id)


def stored_counts(app, env_id, source="manager") -> tuple[int, int]:
    with app.app_context():
        endpoint = db.session.scalar(
            select(Endpoint).where(Endpoint.environment_id == env_id, Endpoint.source == source)
        )
        return endpoint.credential_count, endpoint.absent_count


def test_counts_follow_syncs_absences_returns_and_purges(app, admin, env_id):
    assert stored_counts(app, env_id) == (0, 0)
    assert apply(app, env_id, fetched(30)) == (30, 0)
    assert apply(app, env_id, fetched(30, rotated=5)) == (30, 0)
    assert apply(app, env_id, fetched(22)) == (22, 8)  # 8 gone upstream
    assert apply(app, env_id, fetched(25)) == (25, 5)  # 3 of them back
    with app.app_context():
        absent = db.session.scalars(
            select(Credential.id).where(Credential.present.is_(False)).order_by(Credential.id)
        ).all()
    for cred_id in absent[:2]:
        assert admin.api("DELETE", f"/api/v1/credentials/{cred_id}").status_code == 204
    assert stored_counts(app, env_id) == (25, 3)
    status = admin.client.get(f"/api/v1/environments/{env_id}").json["status"]["manager"]
    assert (status["credential_count"], status["absent_count"]) == (25, 3)


def test_a_source_added_again_counts_the_credentials_it_kept(app, admin, env_id):
    apply(app, env_id, fetched(12))
    endpoint = {"host": "sddc.example.net", "username": "svc", "password": "x"}
    url = f"/api/v1/environments/{env_id}"
    removed = admin.api("PATCH", url, json={"manager": None, "installer": endpoint})
    assert removed.status_code == 200, removed.json
    assert admin.api("PATCH", url, json={"manager": endpoint}).status_code == 200
    assert stored_counts(app, env_id) == (12, 0)


def test_environment_list_never_queries_the_credentials_table(app, admin):
    with app.app_context():
        for index in range(5):
            env, _ = save_environment(
                {
                    "name": f"site-{index}",
                    "manager": {"host": "sddc.example.net", "username": "svc", "password": "x"},
                }
            )
            db.session.commit()
            sync.apply_fetch(env.id, "manager", fetched(10 + index))
            db.session.commit()
        engine = db.engine
    statements: list[str] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        response = admin.client.get("/api/v1/environments")
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert response.status_code == 200
    counts = [item["status"]["manager"]["credential_count"] for item in response.json["items"]]
    assert counts == [10, 11, 12, 13, 14]
    assert statements and not [s for s in statements if "credentials" in s.lower()]
    # One query for the environments and their endpoints each, not one per environment.
    assert len([s for s in statements if "FROM endpoints" in s]) == 1


def test_migration_fills_the_counts_of_existing_sources(app, env_id):
    apply(app, env_id, fetched(20))
    apply(app, env_id, fetched(14))
    cfg = alembic_config()
    with app.app_context(), db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    with app.app_context():
        row = db.session.execute(
            text("SELECT credential_count, absent_count FROM endpoints WHERE environment_id = :id"),
            {"id": env_id},
        ).one()
    assert tuple(row) == (14, 6)


def test_migration_fills_the_counts_on_postgresql(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    try:
        with app.app_context():
            env, _ = save_environment(
                {"name": "sfo", "manager": {"host": "h.example", "username": "u", "password": "x"}}
            )
            db.session.commit()
            env_id = env.id
        apply(app, env_id, fetched(9))
        apply(app, env_id, fetched(7))
        assert stored_counts(app, env_id) == (7, 2)
        cfg = alembic_config()
        with app.app_context(), db.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0002")
            command.upgrade(cfg, "head")
        assert stored_counts(app, env_id) == (7, 2)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
