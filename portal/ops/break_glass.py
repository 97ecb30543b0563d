"""Break-glass copies: every current password, encrypted to public keys held offline, for the
day the portal itself is down.

A copy is an age file (https://age-encryption.org/v1) of one CSV (portal.vault.break_glass):
`age -d -i key.txt FILE > copy.csv` opens it with nothing of the portal. The private keys never
come here; the portal only encrypts to their public keys (X25519 recipients, `age1...`). The
plaintext never touches the disk: the CSV is streamed into the encryptor, and the file is
written aside (mode 0600, folder 0700) and renamed into place. The newest `keep` copies are
kept; an optional hand-off command (PORTAL_BREAK_GLASS_COMMAND) gets each new file's path.

Every copy, made by the schedule, a person or the command line, is audited
(`break_glass.copy`, with the file name and the count, never a password), alerted
(`break_glass.copied` or `break_glass.failed`) and kept as the last result for the dashboard.
The settings (`settings_store`) live in the database like the other settings.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pyrage
from flask import Flask

from .. import audit
from ..alerts import notifications
from ..models import PortalMeta
from ..platform import clock
from ..platform.crypto import DecryptionError
from ..platform.extensions import db
from ..vault.break_glass import CsvStream, rows
from . import break_glass_settings as settings_store
from .break_glass_settings import Options

log = logging.getLogger("portal.ops.break_glass")

LAST_KEY = "break_glass.last"
FILE_PREFIX = "vcf-break-glass-"
FILE_SUFFIX = ".csv.age"
_FILE_NAME = re.compile(r"^vcf-break-glass-(\d{8}T\d{6}Z)(?:-(\d{1,4}))?\.csv\.age$")
# Variables the hand-off command gets; nothing else of the portal's environment (which may
# hold DATABASE_URL, PORTAL_SECRET_KEY or other secrets) reaches it.
HANDOFF_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class NotConfigured(Exception):
    """A copy was asked for, but no recipient is set."""


class CopyError(Exception):
    """A copy could not be written; the message says why, never with a secret."""


@dataclass
class CopyResult:
    """What one copy did: `state` is success, handoff_failed (the file is written, the hand-off
    command failed) or failed (no file)."""

    at: str
    state: str
    folder: str
    file: str | None
    count: int
    recipients: int
    pruned: int
    error: str | None
    actor: str

    @property
    def path(self) -> Path | None:
        """The copy's full path, when one was written."""
        return Path(self.folder) / self.file if self.file else None


# -- files ---------------------------------------------------------------------------------


def folder_of(app: Flask, options: Options) -> Path:
    """Where copies go: the configured folder, or PORTAL_DATA_DIR/break-glass."""
    if options.folder:
        return Path(options.folder)
    return app.config["PORTAL_SETTINGS"].data_dir / "break-glass"


def copies_in(folder: Path) -> list[Path]:
    """The copies in a folder (only names this module writes), oldest first."""
    try:
        names = [(m, p) for p in folder.iterdir() if (m := _FILE_NAME.match(p.name))]
    except OSError:
        return []
    names.sort(key=lambda item: (item[0].group(1), int(item[0].group(2) or 1)))
    return [path for _, path in names]


def prune(folder: Path, keep: int) -> int:
    """Delete all but the newest `keep` copies; returns how many went."""
    removed = 0
    for path in copies_in(folder)[:-keep]:
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _place(partial: Path, folder: Path, stamp: str) -> Path:
    """Give the finished file its name without ever replacing another copy (two copies in
    one second get -2, -3, ...)."""
    for counter in range(1, 1000):
        suffix = "" if counter == 1 else f"-{counter}"
        target = folder / f"{FILE_PREFIX}{stamp}{suffix}{FILE_SUFFIX}"
        try:
            os.link(partial, target)
        except FileExistsError:
            continue
        except OSError:
            # A file system without hard links (some network shares): a rename, after a look.
            if target.exists():
                continue
            os.replace(partial, target)
        return target
    raise CopyError(f"{folder} holds too many copies named for {stamp}")


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_problem(what: str, exc: OSError) -> CopyError:
    reason = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    return CopyError(f"{what}: {reason}{where}")


def write_copy(app: Flask, folder: Path, recipients: list) -> tuple[Path, int]:
    """Encrypt the CSV of every password to `recipients` into a new file in `folder`; returns
    its path and the number of passwords. The file appears whole or not at all."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_problem(f"the folder {folder} cannot be created", exc) from None
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{FILE_PREFIX}", suffix=".partial", dir=folder)
    except OSError as exc:
        raise _os_problem(f"the folder {folder} cannot be written", exc) from None
    partial = Path(name)  # mkstemp makes it 0600
    stream = CsvStream(rows(app))
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                pyrage.encrypt_io(stream, out, recipients)
            except pyrage.EncryptError:
                if stream.failure is not None:
                    raise stream.failure from None
                raise CopyError("the age encryption failed") from None
            out.flush()
            os.fsync(out.fileno())
        target = _place(partial, folder, stamp)
    except OSError as exc:
        raise _os_problem(f"the copy cannot be written to {folder}", exc) from None
    finally:
        partial.unlink(missing_ok=True)
    _sync_folder(folder)
    return target, stream.count


# -- the hand-off --------------------------------------------------------------------------


def hand_off(app: Flask, path: Path) -> str | None:
    """Run PORTAL_BREAK_GLASS_COMMAND with the copy's path as its last argument: no shell, a
    minimal environment, no input, output discarded, ended after its timeout. Returns None
    when it succeeded (or none is set), else why not: never its output or environment."""
    settings = app.config["PORTAL_SETTINGS"]
    command = settings.break_glass_command
    if not command:
        return None
    timeout = settings.break_glass_timeout
    env = {name: os.environ[name] for name in HANDOFF_ENVIRONMENT if name in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    program = Path(command[0]).name
    try:
        process = subprocess.Popen(
            [*command, str(path)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,  # its own process group: a timeout ends its children too
        )
    except OSError as exc:
        return f"the hand-off command {program} could not be started: {exc.strerror}"
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
        process.wait()
        return f"the hand-off command {program} did not finish within {timeout} s"
    if code != 0:
        return f"the hand-off command {program} exited with status {code}"
    return None


# -- a copy --------------------------------------------------------------------------------


def copy_now(app: Flask, actor: str, options: Options | None = None) -> CopyResult:
    """`make_copy`, and its outcome recorded in the session (the caller commits)."""
    result = make_copy(app, actor, options)
    record(result)
    return result


def make_copy(app: Flask, actor: str, options: Options | None = None) -> CopyResult:
    """Write a copy now with `options` (the stored settings by default), prune the old ones,
    hand the new one off (`record` the result). NotConfigured when no recipient is set; any
    other failure is a result of state `failed`, never an exception. The session is not used
    while the copy is made: its reads go through connections of their own, a slice at a
    time."""
    options = options or settings_store.load()
    if not options.recipients:
        raise NotConfigured("Set at least one recipient (an age public key) first.")
    folder = folder_of(app, options)
    started = clock.now()
    result = CopyResult(
        at=clock.iso(started),
        state="failed",
        folder=str(folder),
        file=None,
        count=0,
        recipients=len(options.recipients),
        pruned=0,
        error=None,
        actor=actor,
    )
    try:
        recipients = [settings_store.recipient(key) for key in options.recipients]
        path, result.count = write_copy(app, folder, recipients)
    except CopyError as exc:
        result.error = str(exc)
    except DecryptionError as exc:
        result.error = f"a stored password cannot be decrypted ({exc}); no copy was written"
    except Exception as exc:  # noqa: BLE001 - recorded and alerted; a copy never crashes a job
        result.error = f"the copy failed: {type(exc).__name__}"
        log.error("break-glass copy failed: %s", type(exc).__name__)
    else:
        result.file = path.name
        result.state = "success"
        try:
            result.pruned = prune(folder, options.keep)
        except OSError as exc:
            log.warning("old break-glass copies not pruned: %s", exc.strerror)
        handed = hand_off(app, path)
        if handed is not None:
            result.state, result.error = "handoff_failed", handed
    return result


def record(result: CopyResult) -> None:
    """Audit the copy, alert its success or failure, keep it as the last result."""
    details = {
        "file": result.file or "",
        "count": result.count,
        "folder": result.folder,
        "recipients": result.recipients,
        "state": result.state,
    }
    if result.error:
        details["error"] = result.error
    audit.record(
        "break_glass.copy",
        result.file or result.folder,
        outcome="success" if result.state == "success" else "failure",
        details=details,
        actor=result.actor,
    )
    _set_meta(LAST_KEY, json.dumps(asdict(result)))
    if result.state == "success":
        notifications.emit(
            "break_glass.copied",
            f"Break-glass copy written: {result.file}",
            f"{result.count} passwords were encrypted to {result.recipients} offline key(s) "
            f"into {result.path}.",
            details,
        )
    else:
        written = f"The file {result.path} was written, but " if result.file else ""
        notifications.emit(
            "break_glass.failed",
            "Break-glass copy failed"
            if not result.file
            else f"Break-glass copy not handed off: {result.file}",
            f"{written}{result.error}.\nUntil a copy succeeds, the newest break-glass copy "
            "may miss recent passwords.",
            details,
        )


def _set_meta(key: str, value: str) -> None:
    row = db.session.get(PortalMeta, key)
    if row is None:
        db.session.add(PortalMeta(key=key, value=value))
    else:
        row.value = value


def last_result() -> dict | None:
    """The last copy's outcome (time, state, file, count, error), or None before the first."""
    value = db.session.scalar(db.select(PortalMeta.value).where(PortalMeta.key == LAST_KEY))
    if value is None:
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _last_at() -> datetime | None:
    last = last_result()
    if not last or not isinstance(last.get("at"), str):
        return None
    try:
        return datetime.fromisoformat(last["at"].removesuffix("Z"))
    except ValueError:
        return None


def status() -> dict:
    """For the page and the dashboard: the settings in effect, the last result, the next
    scheduled copy."""
    options = settings_store.load()
    last_at = _last_at()
    upcoming = settings_store.next_copy(options, last_at, clock.now())
    return {
        "options": options,
        "active": settings_store.active(options),
        "last": last_result(),
        "next_at": clock.iso(upcoming) if upcoming else None,
    }


def run_if_due(app: Flask) -> CopyResult | None:
    """The scheduler's job: make a copy when the schedule says one is due, and commit."""
    options = settings_store.load()
    due = settings_store.is_due(options, _last_at(), clock.now())
    db.session.rollback()  # no read transaction stays open while the copy is made
    if not due:
        return None
    result = copy_now(app, "scheduler", options)
    db.session.commit()
    if result.state == "success":
        log.info("break-glass copy written: %s (%d passwords)", result.file, result.count)
    else:
        log.error("break-glass copy: %s", result.error)
    return result
