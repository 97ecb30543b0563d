"""The audit log's tamper evidence: records edited, removed or inserted straight in the
database (SQLite and PostgreSQL) are named by `audit verify`; checkpoints catch a cut-off
tail; sealing keeps commit order under concurrent writers; a restore verifies."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import timedelta

import psycopg2
import pytest
from sqlalchemy import func, select
from support import make_app

from portal import audit
from portal.alerts import metrics
from portal.audit import chain, checkpoints, verification
from portal.models import AuditCheckpoint, AuditEvent, NotificationOutbox, PortalMeta
from portal.ops import audit_integrity, bootstrap, maintenance
from portal.platform.extensions import db


def _write(app, count: int, action: str = "test.event") -> None:
    with app.app_context():
        for n in range(count):
            audit.record(action, target=f"esx-{n}.sfo.example", details={"n": n})
        db.session.commit()


def _verify(app, since=None) -> verification.Report:
    with app.app_context():
        report, _ = audit_integrity.verify(since)
        return report


def _sealed(app) -> list[tuple[int, int]]:
    with app.app_context():
        chain.seal()
        return list(db.session.execute(select(AuditEvent.id, AuditEvent.seq).order_by("seq")))


def _sqlite(app) -> sqlite3.Connection:
    return sqlite3.connect(app.config["PORTAL_SETTINGS"].sqlite_path)


def _kinds(report: verification.Report) -> list[tuple[str, int | None]]:
    return [(p.kind, p.record_id) for p in report.problems]


def test_every_record_is_sealed_and_chained_and_the_log_verifies(app, admin):
    _write(app, 30)
    admin.client.get("/audit")
    rows = _sealed(app)
    assert [seq for _, seq in rows] == list(range(1, len(rows) + 1))
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(AuditEvent.seq.is_(None))) == 0
        assert chain.head()[0] == len(rows)
    report = _verify(app)
    assert report.intact and report.checked == len(rows)
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and f"intact: {len(rows)} records" in result.output


def test_an_edited_record_is_named(app):
    _write(app, 20)
    rows = _sealed(app)
    victim = rows[7][0]
    with _sqlite(app) as conn:
        conn.execute("UPDATE audit_events SET actor = 'someone else' WHERE id = ?", (victim,))
    report = _verify(app)
    assert _kinds(report) == [("changed", victim)]
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"record {victim} " in result.output and "was changed" in result.output


def test_a_removed_record_is_named(app):
    _write(app, 20)
    rows = _sealed(app)
    (gone, gone_seq), (after, _) = rows[5], rows[6]
    with _sqlite(app) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (gone,))
    report = _verify(app)
    assert _kinds(report) == [("removed", after)]
    assert f"records {gone_seq}-{gone_seq}" in report.problems[0].text


def test_an_inserted_record_is_named_and_never_sealed(app):
    _write(app, 10)
    rows = _sealed(app)
    with _sqlite(app) as conn:
        # A forged record, and an exact copy of a sealed one (its unique nonce dropped first).
        conn.execute(
            "INSERT INTO audit_events (at, actor, ip, action, target, outcome, nonce, mac) "
            "VALUES ('2026-12-07 10:00:00.000000', 'alice', '10.0.0.1', 'credential.reveal', "
            "'esx-1', 'success', 'aa', 'bb')"
        )
        forged = conn.execute("SELECT max(id) FROM audit_events").fetchone()[0]
    with app.app_context():
        assert chain.seal().refused == [forged]
    report = _verify(app)
    assert _kinds(report) == [("inserted", forged)]
    with _sqlite(app) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (forged,))
        conn.execute("DROP INDEX ix_audit_events_nonce")
        columns = "at, actor, ip, action, target, outcome, details, nonce, mac"
        conn.execute(
            f"INSERT INTO audit_events ({columns}) SELECT {columns} FROM audit_events "  # noqa: S608
            "WHERE id = ?",
            (rows[3][0],),
        )
        copy = conn.execute("SELECT max(id) FROM audit_events").fetchone()[0]
    with app.app_context():
        assert chain.seal().refused == [copy]
    assert ("inserted", copy) in _kinds(_verify(app))


def test_a_record_moved_to_another_place_is_named(app):
    _write(app, 10)
    rows = _sealed(app)
    (first, first_seq), (second, second_seq) = rows[2], rows[3]
    with _sqlite(app) as conn:  # swap two records' places, keeping their own seals
        conn.execute("UPDATE audit_events SET seq = -1 WHERE id = ?", (first,))
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (first_seq, second))
        conn.execute("UPDATE audit_events SET seq = ? WHERE id = ?", (second_seq, first))
    kinds = _kinds(_verify(app))
    assert kinds[0] == ("moved", second)


def test_a_cut_off_tail_is_caught_by_the_head_and_by_the_checkpoint_files(app):
    _write(app, 10)
    with app.app_context():
        checkpoint = checkpoints.make()
        assert checkpoint.seq == len(_sealed(app))
        files = list(checkpoints.folder().glob("checkpoint-*.json"))
        assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
        document = json.loads(files[0].read_text())
        assert document["seq"] == checkpoint.seq and document["record_id"] == checkpoint.record_id
        assert checkpoint.signed_by(checkpoints.public_key())
    assert _verify(app).intact
    _write(app, 5)
    rows = _sealed(app)
    stated = checkpoint.seq
    with _sqlite(app) as conn:
        # The newest seven go; the head is set back to a real earlier one, and the
        # checkpoint rows are removed from the database: only the file remains.
        kept = stated - 2
        conn.execute("DELETE FROM audit_events WHERE seq > ?", (kept,))
        last = conn.execute("SELECT chain FROM audit_events WHERE seq = ?", (kept,)).fetchone()
        conn.execute(
            "UPDATE portal_meta SET value = ? WHERE key = 'audit.head'", (f"{kept}:{last[0]}",)
        )
        conn.execute("DELETE FROM audit_checkpoints")
    report = _verify(app)
    assert report.problems[0].kind == "removed"
    assert f"record {rows[stated - 1][0]} (chain position {stated})" in report.problems[0].text
    assert "file checkpoint-" in report.problems[0].text


def test_a_forged_checkpoint_is_refused(app):
    _write(app, 3)
    with app.app_context():
        checkpoints.make()
        path = next(checkpoints.folder().glob("checkpoint-*.json"))
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, "seq": 2}))
    report = _verify(app)
    assert report.problems[0].kind == "checkpoint"
    assert "not signed by this portal's checkpoint key" in report.problems[0].text


def test_records_committed_out_of_order_by_concurrent_writers_chain_in_commit_order(app):
    """Eight threads write and seal at once: every record gets one place, none is lost."""
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait()
            with app.app_context():
                for i in range(25):
                    audit.record("test.parallel", target=f"{n}-{i}")
                    db.session.commit()
                    if i % 5 == 0:
                        chain.seal(batch=7)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = _sealed(app)
    assert len(rows) == len({seq for _, seq in rows}) >= 200
    assert _verify(app).intact


def test_records_from_before_the_chain_are_adopted_once_at_its_first_start(tmp_path):
    app = make_app(tmp_path)
    data = tmp_path / "data"
    with _sqlite(app) as conn:  # as an older portal left them: no seal, no chain key
        conn.execute("DELETE FROM audit_events")
        for n in range(3):
            conn.execute(
                "INSERT INTO audit_events (at, actor, action, target, outcome) "
                "VALUES (?, 'admin', 'user.create', 'u', 'success')",
                (f"2026-01-0{n + 1} 08:00:00.000000",),
            )
        newest = conn.execute("SELECT max(id) FROM audit_events").fetchone()[0]
        conn.execute(
            "UPDATE portal_meta SET value = ? WHERE key = 'audit.legacy_until'", (str(newest),)
        )
        conn.execute("DELETE FROM portal_meta WHERE key = 'audit_key_id'")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    (data / "audit.key").unlink()
    upgraded = make_app(tmp_path)  # the first start with the chain adopts them
    assert _verify(upgraded).intact
    # Later, a row without a seal at an id the old records left free is never adopted.
    with _sqlite(upgraded) as conn:
        conn.execute("DELETE FROM audit_events WHERE id = ?", (newest,))
        conn.execute(
            "INSERT INTO audit_events (id, at, actor, action, target, outcome) "
            "VALUES (?, '2026-01-03 08:00:00.000000', 'admin', 'user.create', 'u', 'success')",
            (newest,),
        )
        conn.execute("UPDATE portal_meta SET value = '999999' WHERE key = 'audit.legacy_until'")
    restarted = make_app(tmp_path)
    kinds = _kinds(_verify(restarted))
    assert ("inserted", newest) in kinds


def test_a_copy_of_an_old_record_is_never_chained(app):
    _write(app, 3)
    rows = _sealed(app)
    with app.app_context():
        old = db.session.get(AuditEvent, rows[0][0])
        assert old is not None
        values = {
            "at": old.at - timedelta(days=30),
            "actor": old.actor,
            "ip": old.ip,
            "action": old.action,
            "target": old.target,
            "outcome": old.outcome,
            "details": old.details,
        }
        db.session.add(AuditEvent(**chain.seal_values(values)))  # sealed right, but long ago
        db.session.commit()
        refused = chain.seal().refused
    assert len(refused) == 1
    assert _kinds(_verify(app)) == [("inserted", refused[0])]


def test_the_newest_records_cut_off_show_against_the_head_file(app):
    _write(app, 12)
    rows = _sealed(app)
    with _sqlite(app) as conn:  # the last four go, and the head is set back to a real one
        conn.execute("DELETE FROM audit_events WHERE seq > ?", (len(rows) - 4,))
        kept = len(rows) - 4
        last = conn.execute("SELECT chain FROM audit_events WHERE seq = ?", (kept,)).fetchone()
        conn.execute(
            "UPDATE portal_meta SET value = ? WHERE key = 'audit.head'", (f"{kept}:{last[0]}",)
        )
    report = _verify(app)
    assert report.problems[0].kind == "removed" and "audit-head" in report.problems[0].text


def _metrics(app) -> str:
    with app.app_context():
        return metrics.exposition().decode()


def test_the_daily_job_checkpoints_verifies_alerts_once_and_shows_in_the_metrics(app):
    _write(app, 5)
    audit_integrity.daily(app)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 1
        text = db.session.get(PortalMeta, "audit.verified").value
        assert json.loads(text)["intact"] is True
    metrics = _metrics(app)
    assert "vcf_portal_audit_chain_intact 1.0" in metrics
    assert "vcf_portal_audit_unsealed_records 0.0" in metrics
    with _sqlite(app) as conn:
        conn.execute("UPDATE audit_events SET outcome = 'failure' WHERE seq = 2")
    audit_integrity.daily(app)
    audit_integrity.daily(app)  # the same finding again: no second alert
    with app.app_context():
        alerts = db.session.scalars(
            select(NotificationOutbox).where(NotificationOutbox.kind == "audit.tampered")
        ).all()
        assert len(alerts) == 1 and "was changed" in alerts[0].body
    assert "vcf_portal_audit_chain_intact 0.0" in _metrics(app)


def test_a_wrong_or_missing_chain_key_stops_the_start(tmp_path):
    app = make_app(tmp_path)
    _write(app, 2)
    key_file = tmp_path / "data" / "audit.key"
    key_file.write_text("33" * 32 + "\n")
    with pytest.raises(bootstrap.StartupError, match="does not match this database"):
        make_app(tmp_path)
    key_file.unlink()
    with pytest.raises(bootstrap.StartupError, match="audit.key is missing"):
        make_app(tmp_path)


def test_a_restore_from_backup_verifies(tmp_path, app):
    _write(app, 10)
    with app.app_context():
        in_backup = checkpoints.make().seq
    backup_file = maintenance.backup(app, tmp_path / "b")
    _write(app, 10)
    with app.app_context():
        checkpoints.make()
        db.session.remove()
        db.engine.dispose()
    maintenance.restore(app, backup_file)
    restored = make_app(tmp_path)
    report = _verify(restored)
    assert report.intact and report.checked == in_backup
    with restored.app_context():
        kept = list(checkpoints.folder().glob("superseded-*/checkpoint-*.json"))
        assert len(kept) == 1  # the newer checkpoint, kept aside


@pytest.fixture
def pg_app(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize(
    ("tampering", "kind"),
    [
        ("UPDATE audit_events SET target = 'elsewhere' WHERE id = %(victim)s", "changed"),
        ("DELETE FROM audit_events WHERE id = %(victim)s", "removed"),
        (
            "INSERT INTO audit_events (at, actor, action, target, outcome, nonce, mac) "
            "VALUES (now(), 'mallory', 'credential.reveal', 'x', 'success', 'n', 'm')",
            "inserted",
        ),
    ],
)
def test_tampering_on_postgresql_is_named(pg_app, pg_url, tampering, kind):
    _write(pg_app, 12)
    rows = _sealed(pg_app)
    victim, after = rows[4][0], rows[5][0]
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(tampering, {"victim": victim})
        cur.execute("SELECT max(id) FROM audit_events")
        newest = cur.fetchone()[0]
    conn.close()
    report = _verify(pg_app)
    named = {"changed": victim, "removed": after, "inserted": newest}[kind]
    assert _kinds(report) == [(kind, named)]
