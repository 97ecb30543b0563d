"""Command line: `flask --app app users ...`, `audit verify|checkpoint|archive|search`,
`backup`, `restore`, `rotate-key`, `check`, `break-glass copy`, `version`."""

from __future__ import annotations

import csv
import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from . import audit
from .audit import archive_search, retention
from .audit import archives as audit_archives
from .audit import checkpoints as audit_checkpoints
from .identity import second_factor, users
from .identity.sessions import revoke_user_sessions
from .models import ROLES, User
from .ops import audit_integrity, break_glass, maintenance
from .platform import clock
from .platform.database import is_locked
from .platform.extensions import app_object, db
from .platform.security import password_problem
from .vault.exports import neutralise
from .version import __version__

users_cli = AppGroup("users", help="Manage portal users (for a locked-out operator).")
audit_cli = AppGroup("audit", help="Check, archive and search the audit log.")


def _get(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    return user


def _new_password(username: str) -> str:
    password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if problem := password_problem(password, username):
        raise click.ClickException(problem)
    return password


@users_cli.command("list")
def list_users() -> None:
    """List users with role, state and where they sign in (local, ldap, oidc)."""
    for user in db.session.scalars(select(User).order_by(User.username)):
        state = "disabled" if user.disabled else "active"
        if user.locked_until and user.locked_until > clock.now():
            state = "locked"
        flag = " (must change password)" if user.must_change_password else ""
        source = f"\t{user.source}" if user.source != "local" else ""
        click.echo(f"{user.username}\t{user.role}\t{state}{flag}{source}")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="readonly", show_default=True)
def create_user(username: str, role: str) -> None:
    """Create a user; the password is asked for and must be changed at first sign-in."""
    username = username.strip()
    if problem := users.username_problem(username):
        raise click.ClickException(f"user name {username!r}: {problem}")
    users.add_user(username, role, _new_password(username), actor="cli")
    db.session.commit()
    click.echo(f"created {username} ({role})")


@users_cli.command("reset-password")
@click.argument("username")
def reset_password(username: str) -> None:
    """Set a temporary password, unlock and re-enable the account, end its sessions."""
    user = _get(username)
    if user.source != "local":
        raise click.ClickException(
            f"{username} signs in through {user.source.upper()}: reset the password there"
        )
    password = _new_password(username)
    user.disabled = False
    users.set_temporary_password(user, password, actor="cli")
    db.session.commit()
    click.echo(f"password reset for {username}; it must be changed at next sign-in")


@users_cli.command("reset-second-factor")
@click.argument("username")
def reset_second_factor(username: str) -> None:
    """Remove every second factor and recovery code of a user, unlock the account and end its
    sessions; where the policy requires a factor, they set one up at next sign-in."""
    user = _get(username)
    second_factor.reset(user, actor="cli")
    user.failed_logins = 0
    user.locked_until = None
    revoke_user_sessions(user.id)
    db.session.commit()
    click.echo(f"second factors of {username} removed; sessions ended")


@users_cli.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role(username: str, role: str) -> None:
    """Change a user's role (the last active admin cannot be demoted)."""
    user = _get(username)
    try:
        old = users.change_role(user, role, actor="cli")
    except users.UserRuleError as exc:
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"{username}: {old} -> {role}")


# How long a command waits for a database that another process keeps busy.
BUSY_WAIT_SECONDS = 60


def _write_patiently(write, what: str) -> None:
    """Add what `write` adds and commit, waiting while the database is busy (a sync, the
    portal's own backup); after BUSY_WAIT_SECONDS one line and a non-zero exit."""
    waited = current_app.config.get("CLI_BUSY_WAIT_SECONDS", BUSY_WAIT_SECONDS)
    deadline = time.monotonic() + waited
    while True:
        write()
        try:
            db.session.commit()
            return
        except OperationalError as exc:
            db.session.rollback()
            if not is_locked(exc):
                raise click.ClickException(f"{what} could not be written: {exc.orig}") from None
            if time.monotonic() >= deadline:
                raise click.ClickException(
                    f"{what} could not be written: the database stayed busy for "
                    f"{waited} s; try again later"
                ) from None


@click.command("backup")
@click.option(
    "--to",
    "to_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="directory for the backup (default: PORTAL_DATA_DIR/backups)",
)
@with_appcontext
def backup_command(to_dir: Path | None) -> None:
    """Online, consistent backup of the SQLite database (safe while the portal runs)."""
    app = app_object()
    show = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show and total:
            click.echo(f"\r  {done * 100 // total:3d}% of {total} pages", nl=False, err=True)

    try:
        path = maintenance.backup(app, to_dir, progress)
    except maintenance.MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.Error as exc:  # the database file could not be read, the target written
        raise click.ClickException(f"the backup failed: {exc}") from None
    if show:
        click.echo("", err=True)
    click.echo(f"backup written: {path}")
    _write_patiently(
        lambda: audit.record("settings.backup", str(path.name), actor="cli"),
        "the backup is complete, but its audit record",
    )
    click.echo("the data key (data.key) is not in the backup: keep a copy of it separately")


@click.command("restore")
@click.argument("backup_file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def restore_command(backup_file: Path) -> None:
    """Replace the database with a backup (portal stopped); keeps the replaced database."""
    app = app_object()
    try:
        kept = maintenance.restore(app, backup_file)
    except maintenance.MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    if kept is None:
        click.echo(f"restored {backup_file}")
    else:
        click.echo(f"restored {backup_file}; the replaced database is kept as {kept}")


@click.command("rotate-key")
@with_appcontext
def rotate_key_command() -> None:
    """Re-encrypt every secret under a new data key (one transaction)."""
    try:
        done = maintenance.rotate_key(app_object())
    except maintenance.MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"re-encrypted {done.count} secrets under a new data key; the old key file is kept "
        f"as {done.old_key}: delete it once the new key is backed up"
    )


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Check database integrity, schema, data key, certificate and scheduler lock."""
    results = maintenance.run_checks(app_object())
    for result in results:
        click.echo(f"[{'ok' if result.ok else 'FAIL'}] {result.name}: {result.detail}")
    if not all(r.ok for r in results):
        sys.exit(1)


@audit_cli.command("verify")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Check the records from this UTC day or time on (default: all, archives too).",
)
@click.option(
    "--archives",
    type=click.Choice(["records", "files", "off"]),
    default="records",
    show_default=True,
    help="Archives: read every archived record, check each file against its signed "
    "manifest only, or leave them out.",
)
@with_appcontext
def audit_verify(since, archives) -> None:
    """Verify the chain of audit records, every checkpoint and the archives; exit 1 when
    anything was changed, removed or inserted, naming the first record."""
    report, outcome = audit_integrity.verify(
        since,
        archives,
        waiting=lambda: click.echo("an archive run is at work: waiting for it", err=True),
    )
    if report.intact:
        spans = ""
        if report.archives:
            records = f"{report.archived} archived records in " if report.archived else ""
            files = "archive file" if report.archives == 1 else "archive files"
            spans = f", and {records}{report.archives} {files}"
        click.echo(
            f"intact: {report.checked} records checked against {outcome.checkpoints} "
            f"checkpoints{spans}"
        )
        return
    click.echo(f"BROKEN: {len(report.problems)} problems; the first:", err=True)
    for problem in report.problems:
        click.echo(f"  {problem.text}", err=True)
    if report.truncated:
        click.echo("  (and more)", err=True)
    sys.exit(1)


@audit_cli.command("archive")
@with_appcontext
def audit_archive() -> None:
    """Move the audit records older than the retention (PORTAL_AUDIT_RETENTION_DAYS) into
    signed archive files now (the scheduler does it daily)."""
    try:
        done = retention.run(actor="cli")
    except retention.ArchiveBusy as exc:
        raise click.ClickException(str(exc)) from None
    directory = audit_archives.folder()
    for manifest in done.resumed:
        click.echo(f"finished an interrupted run: {directory / manifest.file}")
    for manifest in done.written:
        click.echo(
            f"archived {manifest.records} records (chain positions {manifest.first_seq}-"
            f"{manifest.last_seq}, {manifest.period()}) to {directory / manifest.file}"
        )
    older = f"older than {done.cutoff:%Y-%m-%d %H:%M} UTC"
    if done.records:
        click.echo(f"{done.records} records {older} left the database")
    elif not done.stopped:
        click.echo(f"nothing to archive: no sealed record is {older}")
    if done.stopped:
        click.echo(f"STOPPED: {done.stopped}", err=True)
        sys.exit(1)


_DAY = click.DateTime(formats=["%Y-%m-%d"])
_COLUMNS = ("at", "actor", "ip", "action", "target", "outcome", "details")


def _search_line(values: dict, output: str, writer) -> None:
    if output == "jsonl":
        click.echo(audit_archives.encode(values).decode("ascii"), nl=False)
        return
    cells = [values[name] or "" for name in _COLUMNS]
    cells[0] = values["at"].strftime("%Y-%m-%d %H:%M:%S")
    if output == "csv":
        writer.writerow([neutralise(cell) for cell in cells])
    else:
        click.echo("\t".join(cells))


@audit_cli.command("search")
@click.option("--since", type=_DAY, help="From this UTC day on (default: the oldest).")
@click.option("--until", type=_DAY, help="Up to and including this UTC day (default: all).")
@click.option("--actor", default="", help="Records of this user only.")
@click.option("--action", default="", help="Actions starting with this (e.g. credential.).")
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "csv", "jsonl"]),
    default="text",
    show_default=True,
    help="Tab-separated lines, CSV (formula-safe) or the archive's own JSON lines.",
)
@with_appcontext
def audit_search(since, until, actor: str, action: str, output: str) -> None:
    """Search the archived audit records (those older than the retention, out of the
    database), checking each archive file read; exit 1 when one fails its check."""
    query = archive_search.Query(
        since=since,
        until=until + timedelta(days=1) if until is not None else None,
        actor=actor.strip(),
        action=action.strip(),
    )
    problems: list[str] = []
    writer = csv.writer(sys.stdout, lineterminator="\r\n") if output == "csv" else None
    if writer is not None:
        writer.writerow(["time_utc", "actor", "address", "action", "target", "outcome", "details"])
    found = 0
    for values in archive_search.search(query, problems):
        _search_line(values, output, writer)
        found += 1
    click.echo(
        f"{found} archived records found in {audit_archives.folder()}; newer records are on the "
        "Audit page",
        err=True,
    )
    for problem in problems:
        click.echo(f"  FAILED CHECK: {problem}", err=True)
    if problems:
        sys.exit(1)


@audit_cli.command("checkpoint")
@with_appcontext
def audit_checkpoint() -> None:
    """Write a signed checkpoint of the chain now (the scheduler writes one daily)."""
    checkpoint = audit_checkpoints.make()
    click.echo(
        f"checkpoint of position {checkpoint.seq} (record {checkpoint.record_id}) written to "
        f"{audit_checkpoints.folder()}"
    )


break_glass_cli = AppGroup(
    "break-glass", help="Break-glass copies: every password, encrypted to offline age keys."
)


@break_glass_cli.command("copy")
def break_glass_copy() -> None:
    """Make a break-glass copy now (as the schedule would) and print the file's path."""
    try:
        result = break_glass.make_copy(app_object(), "cli")
    except break_glass.NotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    if result.path is not None:
        click.echo(str(result.path))
    _write_patiently(lambda: break_glass.record(result), "the copy is done, but its audit record")
    if result.state != "success":
        raise click.ClickException(str(result.error))
    click.echo(f"{result.count} passwords, encrypted to {result.recipients} key(s)", err=True)


@click.command("version")
def version_command() -> None:
    """Print the portal's version."""
    click.echo(__version__)


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(users_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(break_glass_cli)
    for command in (
        backup_command,
        restore_command,
        rotate_key_command,
        check_command,
        version_command,
    ):
        app.cli.add_command(command)
