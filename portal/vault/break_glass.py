"""The plaintext of a break-glass copy: every current password and every service account's,
as CSV, read in short transactions and produced a piece at a time.

Nothing here writes a file: `CsvStream` is read by the age encryptor (portal.ops.break_glass),
so the plaintext exists only in memory, a few hundred rows at a time, whatever the estate.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Flask
from sqlalchemy import select, tuple_
from sqlalchemy.engine import Engine

from ..models import Credential, Endpoint, Environment
from ..platform.crypto import CREDENTIAL_PASSWORD, ENDPOINT_PASSWORD, DataCipher, cipher
from ..platform.extensions import db
from ..platform.text import visible
from .exports import neutralise

COLUMNS = (
    "Environment",
    "Kind",
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
)
PASSWORD_COLUMN = COLUMNS.index("Password")
SERVICE_ACCOUNT = "service account"
CREDENTIAL = "credential"
# Rows read per transaction: each read ends before the rows are decrypted and written, so the
# database is held for a few milliseconds at a time, even with 50,000 credentials.
BATCH = 1000
_SERVICE_TYPES = {
    "manager": "SDDC_MANAGER",
    "installer": "VCF_INSTALLER",
    "fleet": "FLEET_MANAGEMENT",
}


def _cells(values: tuple) -> list[str]:
    """A row as written: names from SDDC Manager with hidden characters escaped and a leading
    formula character neutralised; the password exactly as it is."""
    return [
        str(value) if index == PASSWORD_COLUMN else neutralise(visible(value))
        for index, value in enumerate(values)
    ]


class _Rows:
    """The rows of a copy, read batch by batch on connections of their own."""

    def __init__(self, engine: Engine, data_cipher: DataCipher):
        self.engine = engine
        self.cipher = data_cipher
        with engine.connect() as connection:
            self.names = dict(connection.execute(select(Environment.id, Environment.name)).all())

    def service_accounts(self) -> Iterator[list[str]]:
        """Each environment's SDDC Manager and VCF Installer account, as the portal signs in."""
        query = select(
            Endpoint.environment_id,
            Endpoint.source,
            Endpoint.host,
            Endpoint.port,
            Endpoint.username,
            Endpoint.password_enc,
            Endpoint.verify_tls,
        ).order_by(Endpoint.environment_id, Endpoint.source)
        with self.engine.connect() as connection:
            endpoints = connection.execute(query).all()
        for env_id, source, host, port, user, blob, _ in endpoints:
            shown_host = host if port == 443 else f"{host}:{port}"
            yield _cells(
                (
                    self.names.get(env_id, ""),
                    SERVICE_ACCOUNT,
                    shown_host,
                    user,
                    self.cipher.decrypt(blob, ENDPOINT_PASSWORD),
                    "API",
                    "SERVICE",
                    _SERVICE_TYPES.get(source, source),
                    "",
                    "",
                    source,
                    "present",
                    "",
                )
            )

    def credentials(self) -> Iterator[list[str]]:
        """Every stored credential with a password, by environment and host, BATCH at a time
        (keyset pagination: each batch is one short read, whatever came before it)."""
        order = (Credential.environment_id, Credential.hostname, Credential.id)
        columns = select(
            *order,
            Credential.username,
            Credential.password_enc,
            Credential.credential_type,
            Credential.account_type,
            Credential.resource_type,
            Credential.resource_ip,
            Credential.domain,
            Credential.source,
            Credential.present,
            Credential.last_changed_at,
        ).where(Credential.password_enc.is_not(None))
        after: tuple | None = None
        while True:
            query = columns.order_by(*order).limit(BATCH)
            if after is not None:
                query = query.where(tuple_(*order) > after)
            with self.engine.connect() as connection:
                batch = connection.execute(query).all()
            if not batch:
                return
            for row in batch:
                yield self._credential(row)
            last = batch[-1]
            after = (last[0], last[1], last[2])

    def _credential(self, row) -> list[str]:
        (env_id, host, _, user, blob, ctype, atype, rtype, ip, domain, source, present, changed) = (
            row
        )
        return _cells(
            (
                self.names.get(env_id, ""),
                CREDENTIAL,
                host,
                user,
                self.cipher.decrypt(blob, CREDENTIAL_PASSWORD),
                ctype,
                atype,
                rtype,
                ip or "",
                domain,
                source,
                "present" if present else "absent",
                changed.strftime("%Y-%m-%d %H:%M:%S") if changed else "",
            )
        )


def rows(app: Flask) -> Iterator[list[str]]:
    """Every row of a copy: the service accounts first, then every credential's current
    password. Read through the app's engine, never its request session."""
    reader = _Rows(db.engine, cipher(app))
    yield from reader.service_accounts()
    yield from reader.credentials()


class CsvStream(io.BufferedIOBase):
    """The CSV (UTF-8, header first, CRLF line ends) as a readable binary stream: `read`
    produces it a piece at a time from `rows`, for an encryptor that reads its input.

    A failure while reading rows (the database, a stored secret that does not decrypt) is
    kept in `failure` and ends the stream with an error the encryptor passes on; the caller
    raises `failure` itself, so no message of a reader's error is lost or rewritten."""

    def __init__(self, source: Iterator[list[str]]):
        super().__init__()
        self._source = source
        self._text = io.StringIO()
        self._writer = csv.writer(self._text, lineterminator="\r\n")
        self._writer.writerow(COLUMNS)
        self._pending = bytearray()
        self._done = False
        self.count = 0
        self.failure: BaseException | None = None

    def readable(self) -> bool:
        """It is read, never written."""
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        """At most `size` bytes (all that is left for a negative size); b"" at the end."""
        wanted = size if size is not None and size >= 0 else None
        while not self._done and (wanted is None or len(self._pending) < wanted):
            self._fill()
        cut = len(self._pending) if wanted is None else min(wanted, len(self._pending))
        piece = bytes(self._pending[:cut])
        del self._pending[:cut]
        return piece

    def _fill(self) -> None:
        try:
            for _ in range(100):
                self._writer.writerow(next(self._source))
                self.count += 1
        except StopIteration:
            self._done = True
        except BaseException as exc:
            self.failure = exc
            raise
        self._pending += self._text.getvalue().encode("utf-8")
        self._text.seek(0)
        self._text.truncate()
