"""Retention of the audit log: records older than the retention leave the database for signed
archive files, in short transactions; `audit verify` spans archives and database and names a
changed, missing or forged archive; an interrupted run leaves a log that verifies and the next
run completes it (SQLite and PostgreSQL); `audit search` finds archived records."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import timedelta

import psycopg2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select, update
from support import make_app

from portal import audit
from portal.audit import (
    archive_checks,
    archives,
    chain,
    checkpoints,
    forwarding,
    retention,
    verification,
)
from portal.models import AuditDestination, AuditEvent
from portal.ops import audit_integrity, maintenance
from portal.platform import clock, locks, writes
from portal.platform.config import ConfigError, load_settings
from portal.platform.extensions import db

OLD_DAYS, RECENT_DAYS = 500, 100


def _write(app, count: int, days_ago: int = 0, action: str = "test.event", actor="alice"):
    clock.offset = timedelta(days=-days_ago)
    try:
        with app.app_context():
            for n in range(count):
                audit.record(action, target=f"esx-{n}.sfo.example", details={"n": n}, actor=actor)
            db.session.commit()
    finally:
        clock.offset = timedelta(0)


def _history(app, old: int = 30, recent: int = 10) -> None:
    """`old` records of 500 days ago, then `recent` of 100 days ago, all sealed (the start's
    own record, written now, goes first: the log begins with the old ones)."""
    with app.app_context():
        db.session.execute(delete(AuditEvent))
        db.session.commit()
    _write(app, old, OLD_DAYS, actor="alice")
    _write(app, recent, RECENT_DAYS, actor="bob")
    with app.app_context():
        chain.seal()


def _archive(app, **kwargs) -> retention.ArchiveRun:
    with app.app_context():
        return retention.run(**kwargs)


def _verify(app, archives_depth="records") -> verification.Report:
    with app.app_context():
        report, _ = audit_integrity.verify(archives=archives_depth)
        return report


def _texts(report: verification.Report) -> list[str]:
    return [p.text for p in report.problems]


def _folder(app):
    return archives.folder(app)


def _in_database(app) -> list[int]:
    """The chain positions the database holds (sealing first)."""
    with app.app_context():
        chain.seal()
        return list(db.session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))


def _rewrite(path, change) -> None:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    path.write_bytes(gzip.compress("".join(change(lines)).encode()))


def test_records_older_than_the_retention_are_archived_and_verify_spans_both(app):
    _history(app)
    done = _archive(app)
    assert done.stopped is None and done.records == 30 and len(done.written) == 1
    manifest = done.written[0]
    assert (manifest.first_seq, manifest.last_seq, manifest.records) == (1, 30, 30)
    assert manifest.previous_chain == ""
    assert _in_database(app)[:11] == list(range(31, 42))  # and the archive run's own record
    with app.app_context():
        assert chain.anchor() == (30, manifest.last_chain)
        newest = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert newest.action == "audit.archive" and newest.target == "chain positions 1-30"
        assert chain.record_at(31) is not None

    folder = _folder(app)
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    data = folder / "audit-000000000001-000000000030.jsonl.gz"
    document_path = folder / "audit-000000000001-000000000030.manifest.json"
    for path in (data, document_path):
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    lines = [json.loads(line) for line in gzip.decompress(data.read_bytes()).splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 31))
    assert set(lines[0]) == set(archives.RECORD_KEYS) and lines[0]["actor"] == "alice"
    document = json.loads(document_path.read_text())
    assert document["format"] == archives.FORMAT and document["records"] == 30
    assert document["sha256"] == archives.sha256_of(data)
    assert {"first_at", "last_at", "previous_chain", "last_chain", "key", "signature"} <= set(
        document
    )

    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact: 11 records checked" in result.output
    assert "30 archived records in 1 archive file" in result.output
    assert "nothing to archive" in app.test_cli_runner().invoke(args=["audit", "archive"]).output

    # Later, a shorter retention: the next archive continues the first.
    done = _archive(app, retention_days=90)
    assert [(m.first_seq, m.last_seq) for m in done.written] == [(31, 40)]
    assert _verify(app).intact and _verify(app, "files").intact
    report = _verify(app)
    assert (report.archives, report.archived) == (2, 40)


def test_archiving_writes_in_slices_that_move_the_anchor(app, monkeypatch):
    _history(app, old=23, recent=2)
    monkeypatch.setattr(writes, "CHUNK_ROWS", 5)
    with writes.watch() as seen:
        done = _archive(app)
    assert done.records == 23
    deletes = [t for t in seen.transactions if t.rows > 1]
    # Five records a slice, and the anchor's row (locked, then moved).
    assert len(deletes) >= 5 and seen.largest <= 5 + 2
    assert _verify(app).intact


def test_the_cli_archives_with_the_retention_setting(app):
    _history(app)
    result = app.test_cli_runner().invoke(args=["audit", "archive"])
    assert result.exit_code == 0, result.output
    assert "archived 30 records (chain positions 1-30" in result.output
    assert "audit-000000000001-000000000030.jsonl.gz" in result.output
    assert "30 records older than" in result.output


def test_a_changed_archived_line_is_named(app):
    _history(app)
    _archive(app)
    data = _folder(app) / "audit-000000000001-000000000030.jsonl.gz"
    with app.app_context():
        victim = json.loads(gzip.decompress(data.read_bytes()).splitlines()[6])["id"]

    def change(lines):
        lines[6] = lines[6].replace('"actor":"alice"', '"actor":"mallory"')
        return lines

    _rewrite(data, change)
    for depth in ("records", "files"):  # the daily check reads a file whose hash differs
        texts = _texts(_verify(app, depth))
        assert any(
            f"archived record {victim} (chain position 7," in t and "was changed" in t
            for t in texts
        ), texts
        assert any("was changed: its SHA-256 does not match" in t for t in texts)
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "audit-000000000001-000000000030.jsonl.gz" in result.output


def test_a_removed_or_reordered_archived_line_is_named(app):
    _history(app)
    _archive(app)
    data = _folder(app) / "audit-000000000001-000000000030.jsonl.gz"
    _rewrite(data, lambda lines: lines[:4] + lines[5:])
    texts = _texts(_verify(app))
    assert any("archived records 5-5 are missing from archive file" in t for t in texts), texts


def test_a_missing_archive_file_is_named(app):
    _history(app)
    done = _archive(app, file_records=10)
    assert [(m.first_seq, m.last_seq) for m in done.written] == [(1, 10), (11, 20), (21, 30)]
    assert _verify(app).intact
    folder = _folder(app)
    middle = folder / "audit-000000000011-000000000020.jsonl.gz"
    middle.unlink()
    texts = _texts(_verify(app))
    assert any(
        "archive file audit-000000000011-000000000020.jsonl.gz (chain positions 11-20" in t
        and "is missing" in t
        for t in texts
    ), texts
    (folder / "audit-000000000011-000000000020.manifest.json").unlink()
    texts = _texts(_verify(app, "files"))
    assert any("records 11-20 of the chain are in no archive file" in t for t in texts), texts
    for path in folder.glob("audit-000000000021-000000000030.*"):
        path.unlink()
    texts = _texts(_verify(app, "files"))
    assert any(
        "records 11-30, archived out of the database, are in no archive file" in t for t in texts
    ), texts


def test_a_forged_manifest_is_named(app):
    _history(app)
    _archive(app)
    path = _folder(app) / "audit-000000000001-000000000030.manifest.json"
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "last_at": "2020-01-01T00:00:00.000000Z"}))
    texts = _texts(_verify(app))
    assert any(
        "archive manifest audit-000000000001-000000000030.manifest.json is not signed" in t
        for t in texts
    ), texts
    # Signed, but by another key: refused the same way.
    with app.app_context():
        other = Ed25519PrivateKey.generate()
        manifest = archives.Manifest(
            **{
                **archives._from_document(path.name, document).__dict__,
                "key_id": checkpoints.fingerprint(other.public_key()),
                "signature": "",
            }
        )
        signature = base64.b64encode(other.sign(manifest.payload())).decode()
        path.write_text(json.dumps({**manifest.document(), "signature": signature}))
    assert any("is not signed" in t for t in _texts(_verify(app)))


def test_checkpoints_of_archived_positions_are_held_against_the_archives(app):
    _history(app, old=20, recent=0)
    with app.app_context():
        stated = checkpoints.make()  # of position 20, archived below
    _write(app, 10, OLD_DAYS)
    _archive(app)
    assert _verify(app).intact
    with app.app_context():  # a checkpoint the archives disagree with, signed by the portal
        forged = checkpoints.Checkpoint(
            stated.at, stated.seq, stated.record_id, "0" * 64, stated.key_id
        )
        signature, _ = checkpoints.sign(forged.payload())
        document = {**forged.document(), "signature": signature}
        (checkpoints.folder() / "checkpoint-20200101T000000Z-20.json").write_text(
            json.dumps(document)
        )
    texts = _texts(_verify(app))
    assert texts == [
        "the archived chain up to position 20 differs from the file "
        f"checkpoint-20200101T000000Z-20.json of {stated.at:%Y-%m-%d %H:%M} UTC: archived "
        "records before it were replaced"
    ]
    assert _verify(app, "files").intact  # the files alone are not read


def test_an_interrupted_run_verifies_and_the_next_run_completes_it(app, monkeypatch):
    _history(app, old=30)
    monkeypatch.setattr(writes, "CHUNK_ROWS", 10)
    original = retention._delete_slice
    calls = []

    def crash_after_the_first_slice(*args):
        if calls:
            raise RuntimeError("power cut")
        calls.append(1)
        original(*args)

    monkeypatch.setattr(retention, "_delete_slice", crash_after_the_first_slice)
    with pytest.raises(RuntimeError, match="power cut"):
        _archive(app)
    assert _in_database(app)[0] == 11  # one slice went, with the anchor
    with app.app_context():
        assert chain.anchor()[0] == 10
    report = _verify(app)
    assert report.intact, _texts(report)
    assert _verify(app, "files").intact

    monkeypatch.setattr(retention, "_delete_slice", original)
    done = _archive(app)
    assert [m.file for m in done.resumed] == ["audit-000000000001-000000000030.jsonl.gz"]
    assert done.written == [] and done.records == 20 and done.stopped is None
    assert _in_database(app)[0] == 31
    assert len(list(_folder(app).glob("*.jsonl.gz"))) == 1
    assert _verify(app).intact


def test_a_run_interrupted_before_its_manifest_leaves_nothing_behind(app, monkeypatch):
    _history(app)

    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(archives, "_write_durably", crash)
    with pytest.raises(OSError, match="disk full"):
        _archive(app)
    folder = _folder(app)
    assert [p.name for p in folder.glob("audit-*")] == ["audit-000000000001-000000000030.jsonl.gz"]
    assert _in_database(app)[0] == 1
    assert _verify(app).intact  # a data file no record left for is no archive yet
    monkeypatch.undo()
    done = _archive(app)
    assert done.records == 30 and _verify(app).intact
    assert not list(folder.glob(".*.partial"))


def test_a_record_that_does_not_verify_stops_the_archive_before_it(app):
    _history(app)
    with app.app_context():
        victim = db.session.scalar(select(AuditEvent.id).where(AuditEvent.seq == 12))
        db.session.execute(
            AuditEvent.__table__.update().where(AuditEvent.id == victim).values(actor="eve")
        )
        db.session.commit()
    done = _archive(app)
    assert done.records == 11 and done.stopped is not None
    assert f"record {victim} (chain position 12) does not match its seal" in done.stopped
    assert _in_database(app)[0] == 12
    result = app.test_cli_runner().invoke(args=["audit", "archive"])
    assert result.exit_code == 1 and "STOPPED" in result.output
    texts = _texts(_verify(app))
    assert len(texts) == 1 and f"record {victim} " in texts[0] and "was changed" in texts[0]


def test_a_database_restored_from_before_an_archive_run_verifies(tmp_path, app):
    _history(app)
    backup_file = maintenance.backup(app, tmp_path / "b")
    _archive(app)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    maintenance.restore(app, backup_file)
    restored = make_app(tmp_path)
    # The archive holds records the restored database has too: they verify against it.
    assert _in_database(restored)[0] == 1
    assert _verify(restored).intact
    done = _archive(restored)
    assert [m.file for m in done.resumed] == ["audit-000000000001-000000000030.jsonl.gz"]
    assert _in_database(restored)[0] == 31 and _verify(restored).intact


def test_only_one_archive_run_at_a_time(app):
    _history(app)
    settings = app.config["PORTAL_SETTINGS"]
    with locks.audit_archive_lock(settings, exclusive=True, wait=False) as held:
        assert held
        with pytest.raises(retention.ArchiveBusy):
            _archive(app)
        result = app.test_cli_runner().invoke(args=["audit", "archive"])
        assert result.exit_code == 1 and "another archive run" in result.output
    assert _archive(app).records == 30


def test_the_daily_job_archives(app):
    _history(app)
    audit_integrity.archive(app)
    assert _in_database(app)[0] == 31


def test_the_cli_search_finds_archived_records(app):
    with app.app_context():
        db.session.execute(delete(AuditEvent))
        db.session.commit()
    _write(app, 30, OLD_DAYS, actor="alice")
    _write(app, 3, OLD_DAYS, action="credential.reveal", actor="carol")
    _write(app, 10, RECENT_DAYS, actor="bob")
    with app.app_context():
        chain.seal()
    _archive(app, retention_days=90)
    day = (clock.now() - timedelta(days=OLD_DAYS)).date().isoformat()
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["audit", "search", "--since", day, "--until", day, "--action", "credential."]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line]
    assert len(lines) == 3 and all("\tcarol\t" in line for line in lines)
    assert "3 archived records found" in result.stderr
    result = runner.invoke(args=["audit", "search", "--actor", "bob", "--format", "jsonl"])
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(found) == 10 and {line["actor"] for line in found} == {"bob"}
    result = runner.invoke(args=["audit", "search", "--actor", "alice", "--format", "csv"])
    assert result.stdout_bytes.count(b"\r\n") == 31  # a header and 30 records
    # A changed archive is still searched, and named.
    data = next(_folder(app).glob("*.jsonl.gz"))
    _rewrite(data, lambda lines: [line.replace('"bob"', '"bobby"') for line in lines])
    result = runner.invoke(args=["audit", "search", "--actor", "bobby"])
    assert result.exit_code == 1 and "FAILED CHECK" in result.stderr
    assert "was changed" in result.stderr


def test_the_audit_page_and_api_say_where_archived_records_are(app, admin):
    _history(app, old=30, recent=0)
    _archive(app)
    old_day = (clock.now() - timedelta(days=OLD_DAYS)).date().isoformat()
    today = clock.now().date().isoformat()
    page = admin.client.get(f"/audit/?since={old_day}&until={old_day}").get_data(as_text=True)
    assert 'id="audit-archived"' in page
    assert "audit-000000000001-000000000030.jsonl.gz" in page
    assert f"flask --app app audit search --since {old_day} --until {old_day}" in page
    answer = admin.client.get(f"/api/v1/audit?since={old_day}&until={old_day}").json
    assert answer["items"] == []
    note = answer["archived"]
    assert note["files"] == ["audit-000000000001-000000000030.jsonl.gz"]
    assert note["file_count"] == 1 and note["folder"] == "backups/audit-archive/"
    assert note["search"] == (f"flask --app app audit search --since {old_day} --until {old_day}")
    assert note["before"].startswith(today)
    # Without a first day the period reaches back too; a recent one does not.
    assert admin.client.get("/api/v1/audit").json["archived"]["file_count"] == 1
    assert admin.client.get(f"/api/v1/audit?since={today}").json["archived"] is None
    assert 'id="audit-archived"' not in admin.client.get(f"/audit/?since={today}").get_data(
        as_text=True
    )


def test_retention_setting():
    assert load_settings({"PORTAL_DATA_DIR": "/tmp/x"}).audit_retention_days == 400  # noqa: S108
    env = {"PORTAL_DATA_DIR": "/tmp/x", "PORTAL_AUDIT_RETENTION_DAYS": "365"}  # noqa: S108
    assert load_settings(env).audit_retention_days == 365
    with pytest.raises(ConfigError, match="PORTAL_AUDIT_RETENTION_DAYS"):
        load_settings({**env, "PORTAL_AUDIT_RETENTION_DAYS": "30"})


def test_checks_of_an_empty_archive_folder_change_nothing(app):
    _write(app, 5)
    with app.app_context():
        chain.seal()
        report = verification.Report()
        archive_checks.check(report)
        assert report.intact and report.archives == 0
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) >= 5


@pytest.fixture
def pg_app(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_archiving_on_postgresql(pg_app, pg_url, monkeypatch):
    _history(pg_app)
    monkeypatch.setattr(writes, "CHUNK_ROWS", 10)
    original = retention._delete_slice
    calls = []

    def crash_after_the_first_slice(*args):
        if calls:
            raise RuntimeError("power cut")
        calls.append(1)
        original(*args)

    monkeypatch.setattr(retention, "_delete_slice", crash_after_the_first_slice)
    with pytest.raises(RuntimeError):
        _archive(pg_app)
    assert _in_database(pg_app)[0] == 11
    assert _verify(pg_app).intact
    monkeypatch.setattr(retention, "_delete_slice", original)
    settings = pg_app.config["PORTAL_SETTINGS"]
    with locks.audit_archive_lock(settings, exclusive=True, wait=False) as held:
        assert held
        with pytest.raises(retention.ArchiveBusy):
            _archive(pg_app)
    done = _archive(pg_app)
    assert done.records == 20 and _in_database(pg_app)[0] == 31
    assert _verify(pg_app).intact
    # A record removed from the database just after the anchor is named, as is a changed line.
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM audit_events WHERE seq = 31")
    conn.close()
    data = _folder(pg_app) / "audit-000000000001-000000000030.jsonl.gz"
    _rewrite(data, lambda lines: [lines[0].replace('"alice"', '"eve"'), *lines[1:]])
    texts = _texts(_verify(pg_app))
    assert any("archived record" in t and "(chain position 1," in t for t in texts), texts
    assert any("records 31-31 of the chain are missing" in t for t in texts), texts


def test_a_forwarding_destination_that_is_behind_holds_records_in_the_database(app):
    _history(app)
    with app.app_context():
        made = forwarding.add(
            forwarding.DestinationIn(kind="https-json", address="https://127.0.0.1:9/in"), "t"
        )
        made.sent_seq = 12  # it took the first 12 records, then its receiver went down
        db.session.commit()
    done = _archive(app)
    assert done.records == 12 and _in_database(app)[0] == 13
    assert _verify(app).intact
    with app.app_context():
        db.session.execute(update(AuditDestination).values(sent_seq=40))
        db.session.commit()
    assert _archive(app).records == 18  # caught up: the rest of the old records go
