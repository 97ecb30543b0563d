"""Credential exports with passwords (CSV, Excel): rows, formula safety, file formats."""

from __future__ import annotations

import csv
import io
import re

import xlsxwriter

from . import clock
from .credentials import CredentialFilters, all_matching
from .crypto import CREDENTIAL_PASSWORD, cipher
from .extensions import db
from .models import Environment
from .text import has_hidden, visible

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
_FORMULA_START = frozenset("=+-@\t\r")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def neutralise(value: object) -> str:
    """Text for a spreadsheet cell: a leading quote stops =, +, -, @, tab or CR formulas."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in _FORMULA_START else text


PASSWORD_COLUMN = 3


def _rows(
    environment_id: int | None, filters: CredentialFilters
) -> tuple[list[list[str]], list[str]]:
    """Formula-neutralised cells of the view, and the exact passwords beside them."""
    names = {e.id: e.name for e in db.session.scalars(db.select(Environment))}
    data_cipher = cipher()
    rows: list[list[str]] = []
    passwords: list[str] = []
    for (
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
    ) in all_matching(environment_id, filters):
        password = data_cipher.decrypt(blob, CREDENTIAL_PASSWORD) if blob is not None else ""
        values = (
            names.get(env_id, ""),
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
        # Names from SDDC Manager are shown with hidden characters escaped; a password never.
        # One search per row finds the rare row that has any (tab is never escaped).
        shown = "\t".join(str(v) for i, v in enumerate(values) if i != PASSWORD_COLUMN)
        if has_hidden(shown):
            values = tuple(v if i == PASSWORD_COLUMN else visible(v) for i, v in enumerate(values))
        rows.append([neutralise(v) for v in values])
        passwords.append(password)
    return rows, passwords


def to_csv(rows: list[list[str]]) -> bytes:
    """CSV bytes (UTF-8 with BOM so spreadsheet programs detect the encoding)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(rows: list[list[str]], passwords: list[str] | None = None) -> bytes:
    """An .xlsx workbook; every cell written as a text cell, never as a formula.

    Passwords go in exactly as they are: a text cell cannot run, and an operator copying a
    password must get it unchanged. Names from SDDC Manager keep their neutralising quote.
    """
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(
        buffer,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
            "in_memory": True,
        },
    )
    sheet = workbook.add_worksheet("Credentials")
    bold = workbook.add_format({"bold": True})
    sheet.write_row(0, 0, COLUMNS, bold)
    for index, row in enumerate(rows, start=1):
        for column, value in enumerate(row):
            sheet.write_string(index, column, value)
        if passwords is not None:
            sheet.write_string(index, PASSWORD_COLUMN, passwords[index - 1])
    sheet.freeze_panes(1, 0)
    sheet.set_column(0, 2, 28)
    sheet.set_column(3, 3, 24)
    workbook.close()
    return buffer.getvalue()


MIMETYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def export_file(
    environment: Environment | None, fmt: str, filters: CredentialFilters
) -> tuple[bytes, str, int]:
    """The export of one environment (or all) matching `filters`: bytes, file name, row count."""
    rows, passwords = _rows(environment.id if environment else None, filters)
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    label = _NAME_UNSAFE.sub("_", environment.name).strip("_") if environment else "all"
    filename = f"vcf-credentials_{label or 'environment'}_{stamp}.{fmt}"
    body = to_csv(rows) if fmt == "csv" else to_xlsx(rows, passwords)
    return body, filename, len(rows)
