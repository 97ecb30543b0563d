"""Scheduler election: a file lock on SQLite, an advisory lock on a real PostgreSQL."""

from __future__ import annotations

import os
import time

import psycopg2
import pytest
from support import make_app

from portal import sync
from portal.models import Environment
from portal.platform import locks
from portal.platform.extensions import db


@pytest.fixture
def pg_app(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _terminate(pg_url: str, leadership: locks.PostgresLeadership) -> None:
    """End the leader's connection from the server side, as a cut-off node's would end."""
    pid = leadership.conn.get_backend_pid()
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()


def test_one_leader_among_nodes_and_a_takeover_when_it_goes(pg_url, pg_app):
    first, second = locks.PostgresLeadership(pg_url), locks.PostgresLeadership(pg_url)
    try:
        assert first.acquire() and first.still_leading()
        assert not second.acquire() and not second.still_leading()
        with pg_app.app_context():
            leader = locks.current_leader(db.session, pg_app.config["PORTAL_SETTINGS"])
            assert locks.leads_here(leader)
            role = locks.scheduler_role(db.session, pg_app.config["PORTAL_SETTINGS"])
            assert role[0] == "leader"
        _terminate(pg_url, first)
        assert not first.still_leading()  # checked before every claim: no more claims
        assert second.acquire() and second.still_leading()
    finally:
        first.release()
        second.release()
    deadline = time.monotonic() + 5  # the server ends a closed connection's backend soon after
    with pg_app.app_context():
        while locks.current_leader(db.session, pg_app.config["PORTAL_SETTINGS"]) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_forked_worker_never_ends_the_masters_lead(pg_url):
    leadership = locks.PostgresLeadership(pg_url)
    assert leadership.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # the worker: forget the copy, then exit as a worker would
            leadership.forget_in_child()
            os._exit(0)
        os.waitpid(pid, 0)
        assert leadership.still_leading()
        assert not locks.PostgresLeadership(pg_url).acquire()
    finally:
        leadership.release()


def test_the_file_lock_leads_on_sqlite(tmp_path):
    first, second = locks.FileLeadership(tmp_path), locks.FileLeadership(tmp_path)
    assert first.acquire() and first.still_leading()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_no_claim_without_the_lead(app):
    with app.app_context():
        env = Environment(name="x")
        db.session.add(env)
        db.session.commit()
        run = sync.request_sync(env.id, "manager", "manual", "alice")
        assert sync.process_queue(may_claim=lambda: False) == []
        db.session.refresh(run)
        assert run.state == "queued"


def test_a_leader_on_another_database_is_not_this_portals(pg_url, pg_app):
    other_url = pg_url.rsplit("/", 1)[0] + "/" + pg_url.rsplit("/", 1)[1] + "_other"
    other_name = other_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(pg_url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {other_name}")
    elsewhere = locks.PostgresLeadership(other_url)
    try:
        assert elsewhere.acquire()
        with pg_app.app_context():
            assert locks.current_leader(db.session, pg_app.config["PORTAL_SETTINGS"]) is None
    finally:
        elsewhere.release()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {other_name} WITH (FORCE)")
        admin.close()
