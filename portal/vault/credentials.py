"""Stored credentials: filtered, sorted pages of metadata; revealing one password (audited)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, and_, func, or_, select, tuple_
from sqlalchemy.orm import aliased

from ..audit.sightings import credential_target
from ..control import gate
from ..control import requests as control_requests
from ..models import Credential, Environment, PasswordHistory, User
from ..platform import clock
from ..platform.clock import iso
from ..platform.crypto import CREDENTIAL_PASSWORD, HISTORY_PASSWORD, cipher
from ..platform.extensions import db

PAGE_SIZES = (50, 100, 500)
# The cross-environment search on the dashboard shows this many matches at most.
SEARCH_PAGE_SIZE = 25
# How long a revealed password stays on screen (and in the clipboard), in seconds.
REVEAL_SECONDS = 30
# Password age: a password unchanged for more than this many days is stale, unless asked otherwise.
STALE_DAYS = 90
MAX_STALE_DAYS = 3650
MAX_PER_PAGE = 500
FILTERS = {
    "hostname": Credential.hostname,
    "username": Credential.username,
    "credential_type": Credential.credential_type,
    "account_type": Credential.account_type,
    "resource_type": Credential.resource_type,
    "domain": Credential.domain,
    "source": Credential.source,
}
SORTS = {
    **FILTERS,
    "status": Credential.present,
    "last_changed_at": Credential.last_changed_at,
    "first_seen_at": Credential.first_seen_at,
    "expiry_date": Credential.expiry_date,
}


SUBSTRING_FILTERS = ("hostname", "username", "domain")


class CredentialFilters(BaseModel):
    """Search box, column filters (substring for host, user and domain), status and sort.

    The one reading of the filters of the credential list: the API's query arguments and the
    export form are parsed with it, and the queries below take nothing else.
    """

    q: str | None = None
    hostname: str | None = None
    username: str | None = None
    credential_type: str | None = None
    account_type: str | None = None
    resource_type: str | None = None
    domain: str | None = None
    source: str | None = None
    status: Literal["present", "absent"] | None = None
    expiring_within: int | None = Field(
        default=None, ge=0, le=3650, description="Expired, or expiring within this many days"
    )
    sort: str = Field(default="hostname", description="A column name; a leading - sorts descending")

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("sort")
    @classmethod
    def _known_column(cls, sort: str) -> str:
        name = sort.lstrip("-") or "hostname"
        if name not in SORTS:
            raise ValueError(f"cannot sort by {name!r}")
        return sort


# The fields the search box looks in.
SEARCHED = (
    Credential.hostname,
    Credential.username,
    Credential.resource_type,
    Credential.domain,
    Credential.resource_ip,
)
MAX_WORDS = 8
_WORD = re.compile(r'"([^"]+)"|(\S+)')


def search_words(text: str | None) -> list[str]:
    """The search box's words: separated by spaces, a "quoted phrase" kept as one; at most
    MAX_WORDS (the rest are ignored)."""
    if not text:
        return []
    words = [quoted or plain for quoted, plain in _WORD.findall(text)]
    return [word for word in words if word.strip()][:MAX_WORDS]


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filtered_query(
    environment_id: int | None, filters: CredentialFilters, within: set[int] | None = None
) -> Select:
    """SELECT of credentials matching the search box and the column filters, of one
    environment (or all) and only of the environments `within` (None: no limit)."""
    query = select(Credential)
    if environment_id is not None:
        query = query.where(Credential.environment_id == environment_id)
    if within is not None:
        query = query.where(Credential.environment_id.in_(sorted(within)))
    for word in search_words(filters.q):
        # Every word matches, each in any of the searched fields: "esx05 root" finds root on
        # esx05, wherever each word appears.
        pattern = _like(word)
        query = query.where(or_(*(column.ilike(pattern, escape="\\") for column in SEARCHED)))
    for name, column in FILTERS.items():
        value = getattr(filters, name)
        if value:
            if name in SUBSTRING_FILTERS:
                query = query.where(column.ilike(_like(value), escape="\\"))
            else:
                query = query.where(column == value)
    if filters.status is not None:
        query = query.where(Credential.present.is_(filters.status == "present"))
    if filters.expiring_within is not None:
        query = query.where(
            Credential.expiry_date.is_not(None),
            Credential.expiry_date != "",
            Credential.expiry_date <= expiry_horizon(filters.expiring_within),
        )
    return query


def expiry_horizon(days: int) -> str:
    """The expiry date (ISO 8601, as SDDC Manager writes it) `days` from now: dates sort as
    text."""
    return clock.iso(clock.now() + timedelta(days=days))


def _sorted(query: Select, sort: str) -> Select:
    descending = sort.startswith("-")
    column = SORTS[sort.lstrip("-") or "hostname"]
    primary = column.desc() if descending else column.asc()
    return query.order_by(primary, Credential.hostname, Credential.username, Credential.id)


def credential_dict(
    cred: Credential,
    environment_name: str | None = None,
    requires: tuple[str, ...] = (),
) -> dict:
    """The API shape of a credential's metadata; never the password. `requires`: what its
    dual-control policy asks before its password is shown."""
    body = {
        "id": cred.id,
        "environment_id": cred.environment_id,
        "hostname": cred.hostname,
        "username": cred.username,
        "credential_type": cred.credential_type,
        "account_type": cred.account_type,
        "resource_type": cred.resource_type,
        "resource_ip": cred.resource_ip,
        "domain": cred.domain,
        "source": cred.source,
        "status": "present" if cred.present else "absent",
        "absent_since": iso(cred.absent_since),
        "first_seen_at": iso(cred.first_seen_at),
        "last_changed_at": iso(cred.last_changed_at),
        "expiry_date": cred.expiry_date,
        "expiry_status": cred.expiry_status,
        "auto_rotate_days": cred.auto_rotate_days,
        "requires": list(requires),
        "rotation_due": cred.rotation_due_since is not None,
    }
    if environment_name is not None:
        body["environment"] = environment_name
    return body


def credentials_page(
    environment_id: int | None,
    filters: CredentialFilters,
    page: int,
    per_page: int,
    within: set[int] | None = None,
    user: User | None = None,
) -> dict:
    """One page of credential metadata with the total, per `filters`, of the environments
    `within` (None: all); with `user`, what each password still needs for them (`needs`)."""
    query = filtered_query(environment_id, filters, within)
    total = count_matching(environment_id, filters, within)
    rows = db.session.scalars(
        _sorted(query, filters.sort).limit(per_page).offset((page - 1) * per_page)
    ).all()
    names = None
    if environment_id is None:
        names = dict(db.session.execute(select(Environment.id, Environment.name)).all())
    required = gate.requirements_for(rows)
    items = [
        credential_dict(r, names[r.environment_id] if names else None, required[r.id]) for r in rows
    ]
    _needs(items, rows, user)
    return {
        "items": items,
        "total": total,
        "page": page,
        "per_page": per_page,
    }


# The source whose copy of an account the search shows when several hold the same password:
# SDDC Manager, then fleet management (current values), then the installer (bring-up values).
PREFERRED_SOURCES = ("manager", "fleet", "installer")


def _same_account(one, other):
    """SQL: `other` is the same account as `one` (environment, host, user, type) from another
    source."""
    return and_(
        other.environment_id == one.environment_id,
        other.hostname == one.hostname,
        other.username == one.username,
        other.credential_type == one.credential_type,
        other.source != one.source,
    )


def search_page(
    filters: CredentialFilters,
    page: int,
    per_page: int,
    within: set[int] | None = None,
    user: User | None = None,
) -> dict:
    """One page of the search across environments, an account held by several sources with
    the same password given once.

    The item is the copy of the preferred source (SDDC Manager); `sources` names every source
    that holds that password. When another source holds the account with another password,
    both copies are items, each naming the other in `differs_from`; the installer's copy of
    an account fleet management holds with another password is `stale`. Passwords are compared by
    their keyed hash, never decrypted. Only environments `within` are searched (None: all).
    """
    query = filtered_query(None, filters, within)
    other = aliased(Credential)
    matching = filtered_query(None, filters, within).with_only_columns(Credential.id)
    preferred = [
        and_(Credential.source == later, other.source == earlier)
        for index, later in enumerate(PREFERRED_SOURCES)
        for earlier in PREFERRED_SOURCES[:index]
    ]
    duplicate = (
        select(other.id)
        .where(
            _same_account(Credential, other),
            other.password_mac == Credential.password_mac,
            or_(*preferred),
            other.id.in_(matching),
        )
        .exists()
    )
    query = query.where(~duplicate)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        _sorted(query, filters.sort).limit(per_page).offset((page - 1) * per_page)
    ).all()
    names = dict(db.session.execute(select(Environment.id, Environment.name)).all())
    twins: dict[tuple, list[Credential]] = {}
    keys = {_account_key(row) for row in rows}
    if keys:
        columns = (
            Credential.environment_id,
            Credential.hostname,
            Credential.username,
            Credential.credential_type,
        )
        for twin in db.session.scalars(select(Credential).where(tuple_(*columns).in_(keys))):
            twins.setdefault(_account_key(twin), []).append(twin)
    items = []
    required = gate.requirements_for(rows)
    for row in rows:
        item = credential_dict(row, names[row.environment_id], required[row.id])
        others = [t for t in twins.get(_account_key(row), []) if t.source != row.source]
        same = [t.source for t in others if _same_password(row, t)]
        item["sources"] = [s for s in PREFERRED_SOURCES if s == row.source or s in same]
        item["differs_from"] = [t.source for t in others if not _same_password(row, t)]
        # The installer's spec keeps the bring-up value: where fleet management (which holds
        # the current one) has another password for the account, the spec's copy is stale.
        item["stale"] = row.source == "installer" and "fleet" in item["differs_from"]
        items.append(item)
    _needs(items, rows, user)
    return {"items": items, "total": total, "page": page, "per_page": per_page}


def _needs(items: list[dict], rows, user: User | None) -> None:
    """Add to each item what its password still needs for `user` (dual control)."""
    if user is None:
        return
    unmet = gate.withheld(user, rows)
    sensitive = [item["id"] for item in items if item["requires"]]
    live = control_requests.live_for(user, sensitive)
    matched = gate.matches_for(rows)
    for item in items:
        item["needs"] = unmet.get(item["id"], [])
        item["access"] = live.get(item["id"])
        match = matched[item["id"]]
        item["break_glass"] = match.break_glass if "approval" in match.requires else None


def _account_key(cred: Credential) -> tuple:
    return (cred.environment_id, cred.hostname, cred.username, cred.credential_type)


def _same_password(one: Credential, other: Credential) -> bool:
    return one.password_mac is not None and one.password_mac == other.password_mac


EXPORT_COLUMNS = (
    "environment_id",
    "hostname",
    "username",
    "password_enc",
    "credential_type",
    "account_type",
    "resource_type",
    "resource_ip",
    "domain",
    "source",
    "present",
    "last_changed_at",
    "expiry_date",
    "expiry_status",
    "id",
)


def export_query(
    environment_id: int | None, filters: CredentialFilters, within: set[int] | None = None
) -> Select:
    """SELECT of EXPORT_COLUMNS of the filtered, sorted view (environments `within`)."""
    query = _sorted(filtered_query(environment_id, filters, within), filters.sort)
    return query.with_only_columns(*(getattr(Credential, c) for c in EXPORT_COLUMNS))


def matching_ids(
    environment_id: int | None, filters: CredentialFilters, within: set[int] | None = None
) -> list[int]:
    """The ids of the credentials the filtered view holds (environments `within`)."""
    query = filtered_query(environment_id, filters, within).with_only_columns(Credential.id)
    return list(db.session.scalars(query.order_by(Credential.id)))


def gate_rows(
    environment_id: int | None,
    filters: CredentialFilters,
    within: set[int] | None = None,
    batch: int = 1000,
) -> Iterator[Sequence[Any]]:
    """The filtered view's credentials as the fields dual control matches on (no password),
    in batches read as they come from one query on a connection of its own (as the export's
    rows are): an export of 100,000 credentials never holds them all."""
    query = filtered_query(environment_id, filters, within).with_only_columns(
        Credential.id,
        Credential.environment_id,
        Credential.resource_type,
        Credential.credential_type,
        Credential.account_type,
        Credential.username,
        Credential.last_changed_at,
    )
    with db.engine.connect() as connection:
        result = connection.execution_options(yield_per=batch).execute(query)
        yield from result.partitions()


def count_matching(
    environment_id: int | None, filters: CredentialFilters, within: set[int] | None = None
) -> int:
    """How many credentials the filtered view holds (environments `within`)."""
    query = filtered_query(environment_id, filters, within)
    return db.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()


def reveal(cred: Credential) -> str | None:
    """Decrypt a credential's current password."""
    if cred.password_enc is None:
        return None
    return cipher().decrypt(cred.password_enc, CREDENTIAL_PASSWORD)


def history_items(cred: Credential) -> list[dict]:
    """The password history of a credential, newest first, without passwords."""
    entries = db.session.scalars(
        select(PasswordHistory)
        .where(PasswordHistory.credential_id == cred.id)
        .order_by(PasswordHistory.id.desc())
    ).all()
    return [
        {
            "id": e.id,
            "first_seen_at": iso(e.first_seen_at),
            "changed_at": iso(e.changed_at),
            "changed_by": e.changed_by,
            "current": e.changed_at is None,
        }
        for e in entries
    ]


def reveal_history(entry: PasswordHistory) -> str:
    """Decrypt one history value."""
    return cipher().decrypt(entry.password_enc, HISTORY_PASSWORD)


def audit_target(cred: Credential) -> str:
    """How audit records name a credential: environment, host, user, type."""
    env = db.session.get(Environment, cred.environment_id)
    name = env.name if env else str(cred.environment_id)
    return credential_target(name, cred.hostname, cred.username, cred.credential_type)


AGE_BUCKETS = ((0, 30), (31, 90), (91, 180), (181, 365), (366, None))
EXPIRING_STATES = ("EXPIRING", "EXPIRED")


def password_age(environment_id: int, threshold_days: int) -> dict:
    """Age of current passwords in buckets, the stale ones, and those SDDC Manager flags."""
    now = clock.now()
    creds = db.session.scalars(
        select(Credential)
        .where(Credential.environment_id == environment_id, Credential.present.is_(True))
        .order_by(Credential.last_changed_at, Credential.hostname)
    ).all()
    buckets = [
        {
            "label": f"{low}–{high} days" if high else f"over {low - 1} days",
            "min_days": low,
            "max_days": high,
            "count": 0,
        }
        for low, high in AGE_BUCKETS
    ]
    stale, expiring = [], []
    required = gate.requirements_for(creds)
    for cred in creds:
        age = (now - cred.last_changed_at).days
        for bucket in buckets:
            if age >= bucket["min_days"] and (
                bucket["max_days"] is None or age <= bucket["max_days"]
            ):
                bucket["count"] += 1
                break
        item = None
        if age > threshold_days:
            item = {**credential_dict(cred, requires=required[cred.id]), "age_days": age}
            stale.append(item)
        if (cred.expiry_status or "").upper() in EXPIRING_STATES:
            expiring.append(
                item or {**credential_dict(cred, requires=required[cred.id]), "age_days": age}
            )
    return {
        "threshold_days": threshold_days,
        "buckets": buckets,
        "stale": stale,
        "expiring": expiring,
    }
