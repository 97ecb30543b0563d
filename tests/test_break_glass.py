"""Break-glass copies (portal.ops.break_glass): every current password and every service
account's, encrypted to offline age keys, readable without the portal; the drill with
Debian's `age`; settings checked field by field; pruning, failures and the hand-off."""

from __future__ import annotations

import csv
import io
import json
import shutil
import stat
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pyrage
import pytest
from sqlalchemy import event, insert, select
from support import create_env, make_app, run_sync

from portal.environments.service import save_environment
from portal.models import AuditEvent, Credential, NotificationOutbox
from portal.ops import break_glass
from portal.ops import break_glass_settings as settings_store
from portal.platform import clock
from portal.platform.config import ConfigError, load_settings
from portal.platform.crypto import CREDENTIAL_PASSWORD, cipher
from portal.platform.extensions import db
from portal.simulator import Simulator
from portal.vault import break_glass as plaintext

AGE = shutil.which("age") or "/usr/bin/age"
AGE_KEYGEN = shutil.which("age-keygen") or "/usr/bin/age-keygen"
MANAGER = {"host": "sddc.example.net", "username": "u", "password": "x"}


def _identity() -> tuple[pyrage.x25519.Identity, str]:
    identity = pyrage.x25519.Identity.generate()
    return identity, str(identity.to_public())


def _configure(app, folder: Path, *recipients: str, **extra) -> None:
    with app.app_context():
        settings_store.save({"recipients": list(recipients), "folder": str(folder), **extra})
        db.session.commit()


def _copy(app) -> break_glass.CopyResult:
    with app.app_context():
        result = break_glass.copy_now(app, "tester")
        db.session.commit()
    return result


def _open(path: Path, identity) -> list[dict[str, str]]:
    text = pyrage.decrypt(path.read_bytes(), [identity]).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _root_password(rows: list[dict[str, str]], host: str) -> str:
    [row] = [r for r in rows if r["Host"] == host and r["User"] == "root"]
    return row["Password"]


def _esxi_roots(sim) -> dict[str, str]:
    return {
        e["resource"]["resourceName"]: e["password"]
        for e in sim.credentials_snapshot()
        if e["resource"]["resourceType"] == "ESXI" and e["username"] == "root"
    }


# -- settings ------------------------------------------------------------------------------


def test_defaults_copy_nothing_until_a_recipient_is_set(app, tmp_path):
    with app.app_context():
        options = settings_store.load()
        assert (options.recipients, options.schedule, options.keep) == ((), "daily 02:00", 7)
        assert not settings_store.active(options)
        assert not settings_store.is_due(options, None, clock.now())
        assert break_glass.run_if_due(app) is None
        with pytest.raises(break_glass.NotConfigured):
            break_glass.copy_now(app, "tester")


def test_recipients_are_refused_one_by_one_with_a_reason(app):
    identity, good = _identity()
    damaged = good[:-1] + ("q" if good[-1] != "q" else "p")
    values = [
        good,
        str(identity),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        damaged,
        "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t",
        "hello",
    ]
    with app.app_context(), pytest.raises(settings_store.OptionsError) as refused:
        settings_store.save({"recipients": values})
    errors = refused.value.errors
    assert set(errors) == {f"recipients.{n}" for n in range(1, 6)}
    assert "private key" in errors["recipients.1"]
    assert "SSH keys" in errors["recipients.2"]
    assert "age X25519 public key" in errors["recipients.3"]
    assert "age X25519 public key" in errors["recipients.4"]
    assert "Not an age public key" in errors["recipients.5"]
    assert not any(str(identity) in message for message in errors.values())


def test_pasted_key_file_lines_and_duplicates_are_taken_as_the_key(app):
    _, key = _identity()
    with app.app_context():
        options = settings_store.save(
            {"recipients": [f"# public key: {key}", f"Public key: {key}", key]}
        )
        assert options.recipients == (key,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("folder", "relative/path"),
        ("folder", "/var/../etc"),
        ("folder", "/tmp/a\nb"),
        ("schedule", "weekly"),
        ("schedule", "every 0h"),
        ("schedule", "every 169h"),
        ("schedule", "daily 24:00"),
        ("keep", 0),
        ("keep", 366),
        ("keep", "7"),
    ],
)
def test_other_fields_are_refused_by_name(app, field, value):
    with app.app_context(), pytest.raises(settings_store.OptionsError) as refused:
        settings_store.save({field: value})
    assert list(refused.value.errors) == [field]


def test_schedules_in_utc(app):
    _, key = _identity()
    now = datetime(2026, 12, 7, 14, 0)
    daily = settings_store.Options(recipients=(key,), schedule="daily 02:00")
    assert settings_store.next_copy(daily, None, now) == now  # the first copy at once
    assert settings_store.is_due(daily, datetime(2026, 12, 7, 1, 59), now)
    assert not settings_store.is_due(daily, datetime(2026, 12, 7, 2, 0), now)
    assert settings_store.next_copy(daily, datetime(2026, 12, 7, 2, 0), now) == datetime(
        2026, 12, 8, 2, 0
    )
    every = settings_store.Options(recipients=(key,), schedule="every 6h")
    assert settings_store.next_copy(every, datetime(2026, 12, 7, 9, 0), now) == datetime(
        2026, 12, 7, 15, 0
    )
    assert settings_store.is_due(every, datetime(2026, 12, 7, 8, 0), now)
    off = settings_store.Options(recipients=(key,), schedule="off")
    assert settings_store.next_copy(off, None, now) is None
    with app.app_context():
        saved = settings_store.save({"schedule": " Every 12 h ", "recipients": [key]})
        assert saved.schedule == "every 12h"
        assert settings_store.save({"schedule": "daily 7:05"}).schedule == "daily 07:05"


def test_a_change_is_audited_and_announced(app):
    _, key = _identity()
    with app.app_context():
        settings_store.save({"recipients": [key], "keep": 3}, actor="alice")
        settings_store.save({"keep": 3}, actor="alice")  # no change: audited, not announced
        db.session.commit()
        audits = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "settings.break_glass")
        ).all()
        assert len(audits) == 2 and key in audits[0].details
        [event_row] = db.session.scalars(select(NotificationOutbox)).all()
        assert event_row.kind == "break_glass.changed"
        assert json.loads(event_row.details)["added"] == [key]


# -- copies --------------------------------------------------------------------------------


def test_a_copy_holds_every_password_and_every_service_account(app, admin, sim, tmp_path):
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    identity, key = _identity()
    folder = tmp_path / "offline" / "copies"
    _configure(app, folder, key)
    result = _copy(app)
    assert result.state == "success", result.error
    path = folder / result.file
    assert result.path == path and path.name.startswith("vcf-break-glass-")
    assert path.name.endswith(".csv.age")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary file is left
    assert path.read_bytes().startswith(b"age-encryption.org/v1\n")

    rows = _open(path, identity)
    assert list(rows[0]) == list(plaintext.COLUMNS)
    truth = {
        (e["resource"]["resourceName"], e["username"], e["credentialType"]): e["password"]
        for e in sim.credentials_snapshot()
    }
    credentials = [r for r in rows if r["Kind"] == "credential"]
    assert len(credentials) == len(truth) == result.count - 1
    for row in credentials:
        assert row["Environment"] == "sfo"
        assert truth[(row["Host"], row["User"], row["Credential type"])] == row["Password"]
    [account] = [r for r in rows if r["Kind"] == "service account"]
    assert (account["Host"], account["User"]) == (f"{sim.host}:{sim.port}", sim.admin_username)
    assert account["Password"] == sim.admin_password

    with app.app_context():
        [audit_row] = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "break_glass.copy")
        ).all()
        assert (audit_row.actor, audit_row.target, audit_row.outcome) == (
            "tester",
            path.name,
            "success",
        )
        details = json.loads(audit_row.details)
        assert (details["count"], details["file"]) == (str(result.count), path.name)
        kinds = list(db.session.scalars(select(NotificationOutbox.kind)))
        assert kinds[-1] == "break_glass.copied"
        last = break_glass.last_result()
        assert (last["file"], last["count"], last["state"]) == (path.name, result.count, "success")
        recorded = " ".join(
            [audit_row.details or ""]
            + [o.body + (o.details or "") for o in db.session.scalars(select(NotificationOutbox))]
        )
    for password in list(truth.values()) + [sim.admin_password]:
        assert password not in recorded


@pytest.mark.slow  # starts age-keygen and age
def test_the_drill_without_the_portal(app, admin, sim, tmp_path):
    """Make a copy; stop and delete the portal and its data; decrypt with Debian's age and
    find a host's root password with a CSV reader."""
    offline = tmp_path / "offline"
    offline.mkdir()
    subprocess.run([AGE_KEYGEN, "-o", str(offline / "key.txt")], check=True, capture_output=True)
    key_file = (offline / "key.txt").read_text()
    public = next(line.split(": ")[1] for line in key_file.splitlines() if "public key" in line)
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    folder = tmp_path / "copies"
    _configure(app, folder, public)
    result = _copy(app)
    assert result.state == "success", result.error
    host, expected = sorted(_esxi_roots(sim).items())[0]

    data_dir = app.config["PORTAL_SETTINGS"].data_dir
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    shutil.rmtree(data_dir)
    assert not data_dir.exists()

    plain = offline / "copy.csv"
    with plain.open("wb") as out:
        subprocess.run(
            [AGE, "-d", "-i", str(offline / "key.txt"), str(folder / result.file)],
            stdout=out,
            check=True,
        )
    with plain.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert _root_password(rows, host) == expected
    plain.unlink()


def test_a_copy_made_before_a_rotation_still_opens(app, admin, sim, tmp_path):
    env = create_env(admin, sim)
    run_sync(app, admin, env["id"])
    identity, key = _identity()
    _configure(app, tmp_path / "copies", key)
    before = _copy(app)
    old = _esxi_roots(sim)
    sim.rotate(1.0)
    run_sync(app, admin, env["id"])
    new = _esxi_roots(sim)
    host = sorted(old)[0]
    assert old[host] != new[host]
    clock.offset = timedelta(seconds=2)
    after = _copy(app)
    assert before.file != after.file
    assert _root_password(_open(before.path, identity), host) == old[host]
    assert _root_password(_open(after.path, identity), host) == new[host]


def test_every_recipient_can_open_it(app, tmp_path):
    first, first_key = _identity()
    second, second_key = _identity()
    _configure(app, tmp_path / "copies", first_key, second_key)
    result = _copy(app)
    assert result.recipients == 2
    assert _open(result.path, first) == _open(result.path, second)


def test_the_newest_copies_are_kept(app, tmp_path):
    _, key = _identity()
    folder = tmp_path / "copies"
    _configure(app, folder, key, keep=2)
    folder.mkdir()
    (folder / "notes.txt").write_text("not a copy")
    same_second = [_copy(app).file for _ in range(2)]
    assert same_second[1].endswith("-2.csv.age")
    clock.offset = timedelta(hours=1)
    newest = _copy(app)
    assert newest.pruned == 1
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["notes.txt", same_second[1], newest.file])


def test_a_failed_copy_is_audited_alerted_and_shown(app, tmp_path):
    _, key = _identity()
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    _configure(app, blocked / "copies", key)
    result = _copy(app)
    assert (result.state, result.file, result.count) == ("failed", None, 0)
    assert "cannot be created" in result.error
    with app.app_context():
        outcome = db.session.scalar(
            select(AuditEvent.outcome).where(AuditEvent.action == "break_glass.copy")
        )
        assert outcome == "failure"
        failed = db.session.scalar(
            select(NotificationOutbox).where(NotificationOutbox.kind == "break_glass.failed")
        )
        assert "cannot be created" in failed.body
        assert break_glass.last_result()["error"] == result.error


def test_a_password_that_does_not_decrypt_fails_the_copy(app, tmp_path):
    _, key = _identity()
    with app.app_context():
        env, _ = save_environment({"name": "lab", "manager": MANAGER})
        db.session.flush()
        db.session.add(
            Credential(
                environment_id=env.id,
                source="manager",
                hostname="esx-1",
                username="root",
                password_enc=b"\x01" + b"\x00" * 40,
            )
        )
        db.session.commit()
    folder = tmp_path / "copies"
    _configure(app, folder, key)
    result = _copy(app)
    assert result.state == "failed" and "cannot be decrypted" in result.error
    assert list(folder.iterdir()) == []


def test_the_scheduler_job_copies_when_due(app, tmp_path):
    _, key = _identity()
    _configure(app, tmp_path / "copies", key, schedule="every 6h")
    with app.app_context():
        first = break_glass.run_if_due(app)
        assert first is not None and first.state == "success" and first.actor == "scheduler"
        assert break_glass.run_if_due(app) is None
        clock.offset = timedelta(hours=6, seconds=1)
        assert break_glass.run_if_due(app) is not None
        assert break_glass.status()["next_at"] is not None
        actors = db.session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "break_glass.copy")
        ).all()
        assert actors == ["scheduler", "scheduler"]


def test_the_command_prints_the_path(app, tmp_path):
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["break-glass", "copy"])
    assert refused.exit_code == 1 and "recipient" in refused.output
    identity, key = _identity()
    _configure(app, tmp_path / "copies", key)
    result = runner.invoke(args=["break-glass", "copy"])
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path.parent == tmp_path / "copies" and path.is_file()
    assert len(_open(path, identity)) == 0  # an empty portal: the header only
    with app.app_context():
        assert break_glass.last_result()["actor"] == "cli"


# -- reading -------------------------------------------------------------------------------


ESTATE = 2_500


def _estate(app, count: int, hosts: int = 700) -> None:
    with app.app_context():
        env, _ = save_environment({"name": "big", "manager": MANAGER})
        db.session.commit()
        data_cipher, now = cipher(), clock.now()
        rows = [
            {
                "environment_id": env.id,
                "source": "manager",
                "hostname": f"esx{n % hosts:04d}.example.net",
                "username": f"user{n}",
                "password_enc": data_cipher.encrypt(f"Pw-{n}", CREDENTIAL_PASSWORD),
                "first_seen_at": now,
                "last_seen_at": now,
                "last_changed_at": now,
            }
            for n in range(count)
        ]
        db.session.execute(insert(Credential), rows)
        db.session.commit()


def test_credentials_are_read_in_short_batches_each_once(app, tmp_path):
    _estate(app, ESTATE)
    reads: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if "FROM credentials" in statement:
            reads.append(statement)

    identity, key = _identity()
    _configure(app, tmp_path / "copies", key)
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        result = _copy(app)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert result.count == ESTATE + 1
    assert len(reads) == ESTATE // plaintext.BATCH + 2  # the last batch is empty
    users = [row["User"] for row in _open(result.path, identity) if row["Kind"] == "credential"]
    assert sorted(users) == sorted(f"user{n}" for n in range(ESTATE))


def test_on_postgresql_every_row_comes_once_across_batches(tmp_path, pg_url, monkeypatch):
    monkeypatch.setattr(plaintext, "BATCH", 7)
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    try:
        _estate(app, 60, hosts=9)  # batches end in the middle of a host's accounts
        identity, key = _identity()
        _configure(app, tmp_path / "copies", key)
        result = _copy(app)
        users = [r["User"] for r in _open(result.path, identity) if r["Kind"] == "credential"]
        assert sorted(users) == sorted(f"user{n}" for n in range(60))
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_stream_reads_in_pieces_and_keeps_a_readers_failure():
    def failing():
        yield ["a"] * len(plaintext.COLUMNS)
        raise RuntimeError("database gone")

    row = plaintext._cells(("x", "=1+1", "h\u202e", "u", "=pw", *[""] * 8))
    stream = plaintext.CsvStream(iter([row]))
    text = stream.read(5) + stream.read()
    assert text.decode().splitlines()[1].startswith("x,'=1+1,h\\u202e,u,=pw,")
    assert stream.read(10) == b"" and stream.count == 1
    broken = plaintext.CsvStream(failing())
    with pytest.raises(RuntimeError):
        broken.read()
    assert isinstance(broken.failure, RuntimeError)


# -- the hand-off --------------------------------------------------------------------------


def test_the_hand_off_command_is_read_strictly_from_the_environment(tmp_path):
    settings = load_settings({"PORTAL_BREAK_GLASS_COMMAND": "/usr/bin/rsync -a 'a b'"})
    assert settings.break_glass_command == ("/usr/bin/rsync", "-a", "a b")
    assert settings.break_glass_timeout == 120
    assert "rsync" not in repr(settings)  # arguments may name a secret: never in a repr
    assert load_settings({}).break_glass_command == ()
    for value, words in (
        ("scp x", "name the program by its absolute path"),
        ("/bin/x 'open", "cannot be split"),
    ):
        with pytest.raises(ConfigError, match=f"PORTAL_BREAK_GLASS_COMMAND: {words}"):
            load_settings({"PORTAL_BREAK_GLASS_COMMAND": value})
    with pytest.raises(ConfigError, match="PORTAL_BREAK_GLASS_TIMEOUT"):
        load_settings({"PORTAL_BREAK_GLASS_TIMEOUT": "0"})
    command = tmp_path / "command"
    command.write_text("/opt/copy-off --key 'secret value'\n")
    from_file = load_settings({"PORTAL_BREAK_GLASS_COMMAND_FILE": str(command)})
    assert from_file.break_glass_command == ("/opt/copy-off", "--key", "secret value")


def _with_command(app, command: str, timeout: int = 120):
    settings = app.config["PORTAL_SETTINGS"]
    app.config["PORTAL_SETTINGS"] = settings.__class__(
        **{
            **settings.__dict__,
            "break_glass_command": tuple(command.split()),
            "break_glass_timeout": timeout,
        }
    )


def _script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "hand-off.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o700)
    return script


@pytest.mark.slow  # starts the hand-off command
def test_the_hand_off_gets_the_path_and_no_secret_of_the_portal(app, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", "a session key that must stay in the portal")
    off_vm = tmp_path / "off-vm"
    off_vm.mkdir()
    script = _script(
        tmp_path, f'cp "$2" {off_vm}/ && env > {off_vm}/env.txt && echo "$1" > {off_vm}/arg\n'
    )
    _with_command(app, f"{script} --to-vault")
    identity, key = _identity()
    _configure(app, tmp_path / "copies", key)
    result = _copy(app)
    assert result.state == "success", result.error
    assert (off_vm / result.file).read_bytes() == result.path.read_bytes()
    assert (off_vm / "arg").read_text().strip() == "--to-vault"
    seen = (off_vm / "env.txt").read_text()
    assert "PORTAL_SECRET_KEY" not in seen and "PATH=" in seen


@pytest.mark.slow  # starts the hand-off command
@pytest.mark.parametrize(
    ("body", "timeout", "words"),
    [
        ("echo secret-output >&2; exit 3\n", 60, "exited with status 3"),
        ("sleep 30\n", 1, "within 1 s"),
    ],
)
def test_a_failed_hand_off_is_alerted_and_the_copy_kept(app, tmp_path, body, timeout, words):
    _with_command(app, str(_script(tmp_path, body)), timeout)
    _, key = _identity()
    _configure(app, tmp_path / "copies", key)
    result = _copy(app)
    assert result.state == "handoff_failed" and words in result.error
    assert result.path.is_file()
    with app.app_context():
        failed = db.session.scalar(
            select(NotificationOutbox).where(NotificationOutbox.kind == "break_glass.failed")
        )
        assert "not handed off" in failed.subject and words in failed.body
        assert "secret-output" not in failed.body
        outcome = db.session.scalar(
            select(AuditEvent.outcome).where(AuditEvent.action == "break_glass.copy")
        )
        assert outcome == "failure"


@pytest.mark.slow  # tries to start the hand-off command
def test_a_hand_off_that_cannot_start_says_so(app, tmp_path):
    _with_command(app, str(tmp_path / "missing-program"))
    _, key = _identity()
    _configure(app, tmp_path / "copies", key)
    result = _copy(app)
    assert result.state == "handoff_failed"
    assert "missing-program could not be started: No such file" in result.error


def test_a_copy_holds_the_management_appliances_and_the_fleet_service_account(app, admin, tmp_path):
    """VCF 9: fleet management's accounts and its service account are in the copy; the locker
    decryption password is no row of its own (on 9.0 the fleet appliance's root is one of the
    accounts, with its current value)."""
    with Simulator(credentials=20, seed=8, installer_version="9.0") as estate:
        created = admin.api(
            "POST",
            "/api/v1/environments",
            json={
                "name": "vcf9",
                "fleet": {
                    "host": estate.host,
                    "port": estate.port,
                    "username": estate.installer_username,
                    "password": estate.installer_password,
                    "ca_pem": estate.ca_pem,
                    "locker_password": estate.fleet_root_password,
                },
            },
        )
        assert run_sync(app, admin, created.json["id"], "fleet")["state"] == "success"
        truth = {(a.fqdn, a.username): a.password for a in estate.fleet_accounts()}
    identity, key = _identity()
    _configure(app, tmp_path / "copies", key)
    result = _copy(app)
    assert result.state == "success", result.error
    rows = _open(result.path, identity)
    credentials = [r for r in rows if r["Kind"] == "credential"]
    assert {(r["Host"], r["User"]): r["Password"] for r in credentials} == truth
    assert {r["Source"] for r in credentials} == {"fleet"}
    [account] = [r for r in rows if r["Kind"] == "service account"]
    assert account["User"] == estate.installer_username
    assert account["Resource type"] == "FLEET_MANAGEMENT"
