"""Credential exports with passwords (CSV, Excel): rows, formula safety, file formats."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO, NamedTuple

import xlsxwriter
from flask import Response, abort
from sqlalchemy import select

from .. import audit
from ..access import ratelimit
from ..access.guards import visible_ids
from ..audit import sightings
from ..control import gate, policies
from ..identity.users import actor
from ..models import AccessPolicy, Environment
from ..platform import clock
from ..platform.crypto import CREDENTIAL_PASSWORD, cipher
from ..platform.extensions import db
from ..platform.text import has_hidden, neutralise, visible
from .credentials import CredentialFilters, export_query, gate_rows, matching_ids

COLUMNS = (
    "Environment",
    "Host",
    "User",
    "Password",
    "Credential type",
    "Account type",
    "Resource type",
    "Resource IP",
    "Domain",
    "Source",
    "Status",
    "Last changed (UTC)",
    "Expiry date",
    "Expiry status",
)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


PASSWORD_COLUMN = 3
# Added when the view holds sensitive credentials (what their rules require), and when an
# export leaves out passwords that dual control does not let the person see now.
REQUIRES_COLUMN = "Requires"
WITHHELD_COLUMN = "Password withheld"


@dataclass(frozen=True)
class Marks:
    """Dual control's marks on an export: what each sensitive credential requires, and those
    whose password is left out with what each still needs."""

    requires: dict[int, tuple[str, ...]] = field(default_factory=dict)
    withheld: dict[int, list[str]] = field(default_factory=dict)
    # The allow-list the rows are judged by as they stream: the rules at the time of the
    # check per environment (None: no rule then) and the defaults for an environment made
    # since, and the sensitive credentials permitted then, with the change time they had.
    rules: dict[int, list[AccessPolicy]] | None = None
    defaults: list[AccessPolicy] = field(default_factory=list)
    permitted: dict[int, datetime] = field(default_factory=dict)
    # The windows those were permitted by (`credential:request:approver`), for the audit.
    windows: str = ""


def _detached(rule: AccessPolicy) -> AccessPolicy:
    """A copy of a rule outside any session: the rows are read after the request ends."""
    return AccessPolicy(
        resource_type=rule.resource_type,
        credential_type=rule.credential_type,
        account_type=rule.account_type,
        username=rule.username,
        requires=rule.requires,
        break_glass=rule.break_glass,
    )


def dual_control_marks(env_id: int | None, filters: CredentialFilters, within) -> Marks:
    """What dual control leaves out of an export for the person asking, now: the sensitive
    credentials of the view and what they require, those withheld, and the allow-list
    (rules and permitted credentials) that judges every row as it is streamed."""
    if not gate.in_force():
        return Marks()
    person = actor()
    required: dict[int, tuple[str, ...]] = {}
    withheld: dict[int, list[str]] = {}
    permitted: dict[int, datetime] = {}
    for rows in gate_rows(env_id, filters, within):
        needs = {i: r for i, r in gate.requirements_for(rows).items() if r}
        held = gate.withheld(person, rows, needs)
        required.update(needs)
        withheld.update(held)
        permitted.update(
            (row.id, row.last_changed_at) for row in rows if row.id in needs and row.id not in held
        )
    environments = set(db.session.scalars(select(Environment.id)))
    rules = {
        env: [_detached(r) for r in found]
        for env, found in policies.rules_by_environment(environments).items()
    }
    defaults = [_detached(r) for r in policies.stored_rules(None)]
    windows = gate.windows_of(person, permitted)
    used = " ".join(f"{cred_id}:{windows[cred_id]}" for cred_id in sorted(windows))
    return Marks(required, withheld, rules, defaults, permitted, used)


# Rows read from the database at a time, and the size of the pieces an export is sent in.
BATCH = 1000
CHUNK = 64 * 1024


class _Fields(NamedTuple):
    """The fields of a streamed row that dual control's rules match on."""

    resource_type: str
    credential_type: str
    account_type: str
    username: str


class _Reader:
    """What reading the rows of an export needs, taken while the request is served: the rows
    themselves are read later, as the answer is sent, outside any Flask context."""

    def __init__(
        self,
        environment_id: int | None,
        filters: CredentialFilters,
        within: set[int] | None,
        marks: Marks | None = None,
    ):
        self.engine = db.engine
        self.query = export_query(environment_id, filters, within)
        self.names = dict(db.session.execute(select(Environment.id, Environment.name)).all())
        self.cipher = cipher()
        # Dual control: the credentials whose password is left out, with what each needs.
        marks = marks or Marks()
        self.requires = marks.requires
        self.withheld = marks.withheld
        self.marks = marks
        self._matchers: dict[int, Callable[[Any], Any]] = {}
        self.columns = (
            COLUMNS
            + ((REQUIRES_COLUMN,) if self.requires else ())
            + ((WITHHELD_COLUMN,) if self.withheld else ())
        )

    def rows(self) -> Iterator[tuple[list[str], str]]:
        """Formula-neutralised cells of each row of the view and the exact password beside
        them; read in batches on a connection of its own, decrypted one row at a time."""
        with self.engine.connect() as connection:
            result = connection.execution_options(yield_per=BATCH).execute(self.query)
            for row in result:
                yield self._cells(row)

    def _needs(self, cred_id, env_id, rtype, ctype, atype, user, changed) -> list[str] | None:
        """What a streamed row's password still needs (None: it may be shown): withheld at
        the time of the check, or sensitive by the rules and not permitted then as it is now
        (a credential created or changed since is left out)."""
        known = self.withheld.get(cred_id)
        if known is not None or self.marks.rules is None:
            return known
        match = self._matchers.get(env_id)
        if match is None:
            rules = self.marks.rules.get(env_id, self.marks.defaults)
            match = self._matchers[env_id] = policies.matcher(rules)
        required = match(_Fields(rtype, ctype, atype, user)).requires
        if not required or self.marks.permitted.get(cred_id) == changed:
            return None
        return list(required)

    def _cells(self, row) -> tuple[list[str], str]:
        (
            env_id,
            host,
            user,
            blob,
            ctype,
            atype,
            rtype,
            ip,
            domain,
            source,
            present,
            changed,
            expiry,
            expiry_status,
            cred_id,
        ) = row
        needs = self._needs(cred_id, env_id, rtype, ctype, atype, user, changed)
        if needs is not None or blob is None:
            password = ""
        else:
            password = self.cipher.decrypt(blob, CREDENTIAL_PASSWORD)
        values = (
            self.names.get(env_id, ""),
            host,
            user,
            password,
            ctype,
            atype,
            rtype,
            ip or "",
            domain,
            source,
            "present" if present else "absent",
            changed.strftime("%Y-%m-%d %H:%M:%S"),
            expiry or "",
            expiry_status or "",
        )
        if self.requires:
            values = (*values, " and ".join(self.requires.get(cred_id, ())))
        if self.withheld:
            values = (*values, f"needs {' and '.join(needs)}" if needs else "")
        # Names from SDDC Manager are shown with hidden characters escaped; a password never.
        # One search per row finds the rare row that has any (tab is never escaped).
        shown = "\t".join(str(v) for i, v in enumerate(values) if i != PASSWORD_COLUMN)
        if has_hidden(shown):
            values = tuple(v if i == PASSWORD_COLUMN else visible(v) for i, v in enumerate(values))
        return [neutralise(v) for v in values], password


def csv_chunks(
    environment_id: int | None,
    filters: CredentialFilters,
    within: set[int] | None = None,
    marks: Marks | None = None,
) -> Generator[bytes, None, None]:
    """The CSV export (UTF-8 with BOM so spreadsheet programs detect the encoding), in pieces
    of about CHUNK bytes, written while the rows are read; iterable after the request."""
    return _csv(_Reader(environment_id, filters, within, marks))


def _csv(reader: _Reader) -> Generator[bytes, None, None]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(reader.columns)
    for cells, _ in reader.rows():
        writer.writerow(cells)
        if buffer.tell() >= CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def xlsx_chunks(
    environment_id: int | None,
    filters: CredentialFilters,
    within: set[int] | None = None,
    marks: Marks | None = None,
) -> tuple[Generator[bytes, None, None], int, int]:
    """The Excel export, written to a temporary file: its pieces, its size and its row count.

    Every cell is a text cell, never a formula. Passwords go in exactly as they are: a text
    cell cannot run, and an operator copying a password must get it unchanged. Names from SDDC
    Manager keep their neutralising quote. XlsxWriter's constant-memory mode holds one row at a
    time. The file (mode 0600, in a private directory) has no name on disk once written, and
    is closed, which frees it, when the pieces are all sent, when the client goes away (the
    server closes the answer) or when the answer is dropped unsent.
    """
    with tempfile.TemporaryDirectory(prefix="portal-export-") as private:
        file = tempfile.TemporaryFile(dir=private)  # noqa: SIM115 - closed by _send
        try:
            reader = _Reader(environment_id, filters, within, marks)
            count = _write_workbook(file, private, reader)
            size = file.tell()
            file.seek(0)
        except BaseException:
            file.close()
            raise
    pieces = _send(file)
    next(pieces)  # started: closing it, or dropping it unread, now closes the file
    return pieces, size, count


def _send(file: BinaryIO) -> Generator[bytes, None, None]:
    try:
        yield b""
        while chunk := file.read(CHUNK):
            yield chunk
    finally:
        file.close()


def _write_workbook(file: BinaryIO, private: str, reader: _Reader) -> int:
    workbook = xlsxwriter.Workbook(
        file,
        {
            "constant_memory": True,
            "tmpdir": private,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        },
    )
    sheet = workbook.add_worksheet("Credentials")
    bold = workbook.add_format({"bold": True})
    sheet.freeze_panes(1, 0)
    sheet.set_column(0, 2, 28)
    sheet.set_column(3, 3, 24)
    sheet.write_row(0, 0, reader.columns, bold)
    count = 0
    for count, (cells, password) in enumerate(reader.rows(), start=1):
        cells[PASSWORD_COLUMN] = password
        for column, value in enumerate(cells):
            sheet.write_string(count, column, value)
    workbook.close()
    return count


MIMETYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def file_name(environment: Environment | None, fmt: str) -> str:
    """The download name of an export: the environment (or "all") and the time, UTC."""
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    label = _NAME_UNSAFE.sub("_", environment.name).strip("_") if environment else "all"
    return f"vcf-credentials_{label or 'environment'}_{stamp}.{fmt}"


def prepare(
    environment: Environment | None,
    fmt: str,
    filters: CredentialFilters,
    within: set[int] | None = None,
    marks: Marks | None = None,
) -> tuple[Generator[bytes, None, None], dict[str, str], int, list[int]]:
    """The body of a download (read as it is sent), its headers, its row count and the ids of
    its credentials; across environments, only those `within` (None: all); with `marks`,
    columns say what sensitive credentials require and the passwords withheld are left out."""
    env_id = environment.id if environment else None
    headers = {
        "Content-Disposition": f'attachment; filename="{file_name(environment, fmt)}"',
        "Cache-Control": "no-store",
    }
    # The credentials of the view at the time of the request: the file's rows (a CSV is sent
    # while read, so a sync committed in between could add or change a row).
    ids = matching_ids(env_id, filters, within)
    if fmt == "csv":
        count = len(ids)
        body = csv_chunks(env_id, filters, within, marks)
    else:
        body, size, count = xlsx_chunks(env_id, filters, within, marks)
        headers["Content-Length"] = str(size)
    return body, headers, count, ids


def respond(
    environment: Environment | None, fmt: str, filters: CredentialFilters, details: dict
) -> Response:
    """The answer to an export, for pages and API alike: the reveal level across
    environments (the caller checked it on one), the rate limit, the audit record (committed
    with the request, before the first byte), then the file, read as it is sent."""
    within = None
    if environment is None:
        # Across environments: only those whose passwords the user may read.
        within = visible_ids("reveal")
        if within is not None and not within:
            abort(403, description="Exports need the reveal level on an environment.")
    ratelimit.enforce()
    env_id = environment.id if environment else None
    # Dual control: passwords the person may not see now are left out, and the file says so.
    marks = dual_control_marks(env_id, filters, within)
    withheld = marks.withheld
    body, headers, count, ids = prepare(environment, fmt, filters, within, marks)
    target = environment.name if environment else sightings.ALL_ENVIRONMENTS
    try:
        # Committed with the request, before the first byte is sent; the exported list goes
        # with it (who saw which password: portal.audit.seen).
        shown = [i for i in ids if i not in withheld] if withheld else ids
        extra: dict[str, int | str] = {"rows": count}
        if withheld:
            extra["withheld"] = len(withheld)
        if marks.windows:
            extra["windows"] = marks.windows
        sightings.exported(target, {**details, **extra}, shown)
        if withheld:
            audit.record(
                "credential.export.withheld",
                target,
                outcome="denied",
                details={
                    "withheld": len(withheld),
                    "credentials": sightings.encode(withheld),
                    "needs": ",".join(sorted({n for v in withheld.values() for n in v})),
                },
            )
            headers["X-Passwords-Withheld"] = str(len(withheld))
    except BaseException:
        body.close()
        raise
    return Response(body, mimetype=MIMETYPES[fmt], headers=headers, direct_passthrough=True)
