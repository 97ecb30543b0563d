"""Password expiry as SDDC Manager sees it: asked after each successful sync of an SDDC
Manager source and on demand, one expiry check per resource type, followed to its end.

A check that fails, a resource type SDDC Manager refuses or a 429 never deletes or alters what
is stored: only the expiry dates it did report are written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import bindparam, or_, select, update

from ..alerts import attention
from ..environments.service import endpoint_settings
from ..models import Credential, Endpoint
from ..platform import clock, writes
from ..platform.extensions import db
from ..platform.text import escape_controls
from ..vcf import CredentialExpiry, VcfError, client_for
from ..vcf.lifecycle import EXPIRATION_RESOURCE_TYPES

log = logging.getLogger("portal.lifecycle.expiry_checks")

POLL_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 120.0
MAX_RATE_LIMIT_WAITS = 3


def request(endpoint: Endpoint) -> None:
    """Ask for a check of this SDDC Manager source (the caller commits)."""
    endpoint.expiry_requested_at = clock.now()


def pending() -> list[Endpoint]:
    """SDDC Manager sources whose expiry was asked for after their last check."""
    return list(
        db.session.scalars(
            select(Endpoint).where(
                Endpoint.source == "manager",
                Endpoint.expiry_requested_at.is_not(None),
                or_(
                    Endpoint.expiry_checked_at.is_(None),
                    Endpoint.expiry_checked_at < Endpoint.expiry_requested_at,
                ),
            )
        )
    )


def _resource_types(environment_id: int) -> list[str]:
    present = set(
        db.session.scalars(
            select(Credential.resource_type)
            .where(
                Credential.environment_id == environment_id,
                Credential.source == "manager",
                Credential.present.is_(True),
            )
            .distinct()
        )
    )
    return [rt for rt in EXPIRATION_RESOURCE_TYPES if rt in present]


def _start(client, resource_type: str, sleep: Callable[[float], None]) -> str:
    for attempt in range(MAX_RATE_LIMIT_WAITS + 1):
        try:
            return client.start_expirations(resource_type)
        except VcfError as exc:
            if exc.kind != "rate_limited" or attempt == MAX_RATE_LIMIT_WAITS:
                raise
            sleep(min(float(exc.retry_after or 5), 30.0))
    raise AssertionError("unreachable")


def check(
    endpoint: Endpoint,
    sleep: Callable[[float], None] = time.sleep,
    may_continue: Callable[[], bool] | None = None,
) -> int:
    """Run the checks of one source; returns how many expiry dates were written. Errors per
    resource type are kept on the endpoint (`expiry_error`), the rest is stored. When
    `may_continue` turns false (the scheduler stops), it stops waiting and keeps what came."""
    errors: list[str] = []
    stopped = False
    reported: dict[str, tuple[str | None, str | None]] = {}
    reached: dict[str, tuple[str, str | None, str | None]] = {}
    started_at = clock.now()
    try:
        with client_for("manager", endpoint_settings(endpoint)) as client:
            checks = {}
            for resource_type in _resource_types(endpoint.environment_id):
                try:
                    checks[resource_type] = _start(client, resource_type, sleep)
                except VcfError as exc:
                    errors.append(f"{resource_type}: {exc}")
            deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
            while checks and time.monotonic() < deadline:
                if may_continue is not None and not may_continue():
                    stopped = True
                    break
                for resource_type, check_id in list(checks.items()):
                    try:
                        result = client.expirations(check_id)
                    except VcfError as exc:
                        if exc.kind == "rate_limited":
                            continue
                        errors.append(f"{resource_type}: {exc}")
                        del checks[resource_type]
                        continue
                    if not result.done:
                        continue
                    del checks[resource_type]
                    failed = 0
                    for item in result.elements:
                        if item.connectivity_status:
                            reached[item.credential_id] = _connectivity(item)
                        if item.error:
                            failed += 1
                        elif item.expiry_date or item.status:
                            reported[item.credential_id] = (item.expiry_date, item.status)
                    if result.status != "COMPLETED" or failed:
                        errors.append(
                            f"{resource_type}: {failed} credential(s) could not be checked"
                        )
                if checks:
                    sleep(POLL_SECONDS)
            for resource_type in checks if not stopped else ():
                errors.append(f"{resource_type}: no answer within {int(CHECK_TIMEOUT_SECONDS)} s")
    except VcfError as exc:
        errors.append(str(exc))
    written = writes.commit_in_chunks(
        list(reported.items()),
        lambda part: _write_dates(endpoint.environment_id, part),
    )
    writes.commit_in_chunks(
        list(reached.items()),
        lambda part: _write_connectivity(endpoint.environment_id, part),
    )
    if not stopped:  # a check cut short by a stop stays asked for: the next start finishes it
        endpoint.expiry_checked_at = started_at
    endpoint.expiry_error = escape_controls("; ".join(errors))[:2000] if errors else None
    db.session.commit()
    # What the check found (an account SDDC Manager cannot reach, an expired password) goes
    # into the "needs attention" list and is announced once.
    attention.review(endpoint.environment_id)
    db.session.commit()
    if errors:
        log.warning(
            "expiry check of environment %s: %d dates written; %s",
            endpoint.environment_id,
            written,
            endpoint.expiry_error,
        )
    return written


def _connectivity(item: CredentialExpiry) -> tuple[str, str | None, str | None]:
    """What one element says of SDDC Manager's connection to the account: the status, and on an
    ERROR the message (9.1 connectivityErrorDetails, or the element's error) and what to do."""
    status = (item.connectivity_status or "")[:32]
    if status != "ERROR":
        return status, None, None
    message = item.connectivity_error or item.error
    return status, (message or "")[:2000] or None, (item.remediation or "")[:2000] or None


def _by_remote_id(environment_id: int):
    """An UPDATE of one environment's SDDC Manager credential named by `_remote_id`."""
    table = Credential.__table__
    return update(table).where(
        table.c.environment_id == environment_id,
        table.c.source == "manager",
        table.c.remote_id == bindparam("_remote_id"),
    )


def _write_connectivity(environment_id: int, part) -> int:
    """Store one slice of reported connectivity (by SDDC Manager's credential id)."""
    statement = _by_remote_id(environment_id).values(
        connectivity_status=bindparam("_status"),
        connectivity_error=bindparam("_error"),
        connectivity_remediation=bindparam("_remediation"),
    )
    db.session.connection().execute(
        statement,
        [
            {"_remote_id": remote_id, "_status": status, "_error": error, "_remediation": fix}
            for remote_id, (status, error, fix) in part
        ],
    )
    return len(part)


def _write_dates(environment_id: int, part) -> int:
    """Store one slice of reported expiry dates (by SDDC Manager's credential id)."""
    statement = _by_remote_id(environment_id).values(
        expiry_date=bindparam("_date"), expiry_status=bindparam("_status")
    )
    result = db.session.connection().execute(
        statement,
        [
            {"_remote_id": remote_id, "_date": date, "_status": status}
            for remote_id, (date, status) in part
        ],
    )
    # PostgreSQL's batched UPDATEs report no row count: then the dates reported are counted.
    return result.rowcount if result.rowcount >= 0 else len(part)


def process(may_continue: Callable[[], bool] | None = None) -> int:
    """Check every source that waits for it; returns how many were checked."""
    done = 0
    for endpoint in pending():
        if may_continue is not None and not may_continue():
            break
        check(endpoint, may_continue=may_continue)
        done += 1
    return done
