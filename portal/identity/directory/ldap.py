"""LDAP and Active Directory: check a password by binding as the user, read their groups.

No database here: the caller passes the options and the bind password. The user's password
is sent only in the bind as that user, over LDAPS or StartTLS (plain LDAP only where the
settings allow it explicitly), and never kept. Servers are tried in order; one that answers
decides (a wrong password on the first server is not tried on the next).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_bytes, escape_filter_chars
from ldap3.utils.dn import parse_dn

from .account_state import (
    account_state,
    disabled,
    primary_group_sid,
)
from .options import LdapOptions

log = logging.getLogger(__name__)

MAX_USERNAME = 256
MAX_GROUPS = 1000
_USERNAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")


class DirectoryUnavailable(Exception):
    """No server could be reached, TLS failed, or the service account was refused. The
    message names the servers and the reasons, never a password."""


@dataclass
class DirectoryUser:
    """A user as the directory describes them."""

    dn: str
    stable_id: str
    username: str
    display_name: str = ""
    email: str = ""
    groups: list[str] = field(default_factory=list)
    disabled: bool = False
    server: str = ""


def _tls(options: LdapOptions, host: str) -> Tls:
    named = not _is_address(host)
    return Tls(
        validate=ssl.CERT_REQUIRED if options.verify_certificates else ssl.CERT_NONE,
        ca_certs_data=options.ca_bundle or None,
        version=ssl.PROTOCOL_TLS_CLIENT,
        sni=host if named else None,  # a load balancer in front of several DCs picks by it
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _open(options: LdapOptions, url: str, dn: str | None, password: str | None) -> Connection:
    """A connection to one server, TLS established, bound as `dn` (anonymous when None).

    Raises ldap3's exceptions for network and TLS failures; a refused bind answers a
    Connection whose `bound` is False."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:  # LdapOptions keeps no URL without a host
        raise ValueError(f"{url}: no host")
    secure = parts.scheme == "ldaps"
    server = Server(
        host,
        port=parts.port or (636 if secure else 389),
        use_ssl=secure,
        tls=_tls(options, host),
        get_info=NONE,
        connect_timeout=options.timeout_seconds,
    )
    connection = Connection(
        server,
        user=dn,
        password=password,
        authentication=SIMPLE if dn else ANONYMOUS,
        receive_timeout=options.timeout_seconds,
        read_only=True,
        auto_referrals=False,
        raise_exceptions=False,
    )
    try:
        connection.open()
        if not secure and options.start_tls:
            if not connection.start_tls():
                raise ldap_errors.LDAPStartTLSError(f"StartTLS refused: {connection.result}")
        elif not secure and not options.allow_plain:
            raise ldap_errors.LDAPStartTLSError("plain LDAP is not allowed")
        connection.bind()
    except BaseException:
        _close(connection)
        raise
    return connection


def _close(connection: Connection) -> None:
    """Unbind and close the socket, also after a failed open (ldap3 keeps it then)."""
    try:
        connection.unbind()
    except ldap_errors.LDAPException:
        pass
    sock = getattr(connection, "socket", None)
    if sock is not None:
        sock.close()


_VERIFY_FAILED = re.compile(r"(certificate verify failed: [^(\]]*)")


def _reason(exc: Exception) -> str:
    if not isinstance(exc, (ldap_errors.LDAPException, OSError)):
        # ldap3 parsing what another kind of service sent (a web server, say) fails with
        # KeyError, IndexError and the like: that is an answer that is not LDAP.
        return f"the server did not answer as an LDAP server ({type(exc).__name__})"
    text = " ".join(str(exc).split())
    # A TLS failure's reason comes first, not after the certificate ldap3 prints before it.
    mismatch = text.find("doesn't match")
    if mismatch >= 0:
        text = "the server's certificate " + text[mismatch:]
    elif (failed := _VERIFY_FAILED.search(text)) is not None:
        text = failed.group(1)
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _service(options: LdapOptions, bind_password: str) -> tuple[Connection, str]:
    """The first server that accepts the service account; DirectoryUnavailable if none."""
    if not options.urls:
        raise DirectoryUnavailable("No LDAP server is configured.")
    problems = []
    for url in options.urls:
        try:
            connection = _open(options, url, options.bind_dn or None, bind_password or None)
        except Exception as exc:  # noqa: BLE001 - any failure of this server: try the next
            problems.append(f"{url}: {_reason(exc)}")
            continue
        if connection.bound:
            return connection, url
        description = connection.result.get("description", "refused")
        _close(connection)
        problems.append(f"{url}: the service account was refused ({description})")
    raise DirectoryUnavailable("; ".join(problems))


def _first(entry_attributes: dict, name: str) -> str:
    value = entry_attributes.get(name)
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


def _rdn_value(dn: str) -> str:
    try:
        parts = parse_dn(dn)
    except ldap_errors.LDAPException:
        return ""
    if not parts:
        return ""
    return parts[0][1].replace("\\,", ",").replace("\\+", "+").replace("\\\\", "\\")


def _normal_dn(dn: str) -> str:
    return re.sub(r"\s*,\s*", ",", dn.strip()).casefold()


def _stable_id(dn: str, raw: dict) -> str:
    """What names the entry for good: Active Directory's objectGUID, OpenLDAP's entryUUID, or
    (for servers with neither) the DN. A DN changes when the entry moves; these do not, and a
    new entry that reuses a user name gets a new one."""
    guid = raw.get("objectGUID") or []
    if guid and isinstance(guid[0], bytes) and len(guid[0]) == 16:
        return f"objectGUID:{uuid.UUID(bytes_le=guid[0])}"
    entry_uuid = raw.get("entryUUID") or []
    if entry_uuid and isinstance(entry_uuid[0], bytes):
        text = entry_uuid[0].decode("ascii", "replace").strip().lower()
        if text:
            return f"entryUUID:{text}"
    named = f"dn:{_normal_dn(dn)}"
    return named if len(named) <= 512 else "dn-sha256:" + hashlib.sha256(named.encode()).hexdigest()


@dataclass
class Entry:
    """A user entry found by the user filter."""

    dn: str
    attributes: dict
    raw: dict

    @property
    def stable_id(self) -> str:
        """objectGUID, entryUUID or the DN (see _stable_id)."""
        return _stable_id(self.dn, self.raw)


class SearchFailed(Exception):
    """The directory answered, but refused or could not finish one search (a time limit,
    an access right): that user cannot be looked up now; others may."""


def _usable(username: str) -> bool:
    return 0 < len(username) <= MAX_USERNAME and bool(_USERNAME_OK.match(username))


class Directory:
    """A connection as the service account to the first server that accepts it, to find
    users, check their passwords and read their groups. A context manager."""

    def __init__(self, options: LdapOptions, bind_password: str):
        self.options = options
        self.connection, self.url = _service(options, bind_password)

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Unbind and close the connection."""
        _close(self.connection)

    def _search(
        self,
        base: str,
        query: str,
        attributes: list[str],
        limit: int,
        scope: Literal["BASE", "LEVEL", "SUBTREE"] = SUBTREE,
    ) -> list[dict]:
        try:
            self.connection.search(
                base,
                query,
                search_scope=scope,
                attributes=attributes,
                size_limit=limit,
                time_limit=self.options.timeout_seconds,
            )
        except Exception as exc:  # noqa: BLE001 - broke, timed out, or not LDAP at all
            raise DirectoryUnavailable(f"{self.url}: {_reason(exc)}") from None
        result = self.connection.result or {}
        if result.get("result") not in (0, 4):  # success, or size limit exceeded
            raise SearchFailed(f"the search failed: {result.get('description', 'error')}")
        return [e for e in self.connection.response or [] if e.get("type") == "searchResEntry"]

    def find(self, username: str) -> Entry | None:
        """The one entry the user filter finds for `username`, or None when none or several
        match, or when its user name attribute does not hold exactly one value."""
        if not _usable(username):
            return None
        options = self.options
        name_attribute = options.effective("username_attribute")
        query = options.effective("user_filter").replace(
            "{username}", escape_filter_chars(username)
        )
        attributes = [
            name_attribute,
            "cn",
            "displayName",
            "mail",
            "userAccountControl",
            "pwdAccountLockedTime",
            "accountExpires",
            "entryUUID",
            "objectGUID",
        ]
        if options.effective("group_mode") == "memberof":
            attributes.append("memberOf")
        if options.flavor == "active_directory":
            attributes += ["primaryGroupID", "objectSid"]
        entries = self._search(options.user_base, query, attributes, 2)
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("the LDAP user filter matches several entries for one name")
            return None
        entry = Entry(
            entries[0]["dn"], entries[0].get("attributes", {}), entries[0].get("raw_attributes", {})
        )
        names = entry.raw.get(name_attribute) or []
        if len(names) != 1:  # a second value could name another user's account
            log.warning("an LDAP entry has %d values of %s: refused", len(names), name_attribute)
            return None
        return entry

    def find_by_key(self, key: str) -> Entry | None:
        """The entry whose stable id is `key` (objectGUID, entryUUID or DN), under the name it
        has now: found by that id, then by its current user name through the user filter, so
        the filter still decides who is a user. None when it is gone, filtered out, or holds
        no single name; for a key that cannot be searched (a hashed long DN) too."""
        kind, _, value = key.partition(":")
        name_attribute = self.options.effective("username_attribute")
        base, scope = self.options.user_base, SUBTREE
        try:
            if kind == "objectGUID":
                query = f"(objectGUID={escape_bytes(uuid.UUID(value).bytes_le)})"
            elif kind == "entryUUID":
                query = f"(entryUUID={escape_filter_chars(value)})"
            elif kind == "dn":
                base, scope, query = value, BASE, "(objectClass=*)"
            else:
                return None
        except ValueError:
            return None
        try:
            entries = self._search(base, query, [name_attribute], 2, scope)
        except SearchFailed:
            if (self.connection.result or {}).get("result") == 32:  # noSuchObject: the DN
                return None
            raise
        if len(entries) != 1:
            return None
        names = (entries[0].get("raw_attributes") or {}).get(name_attribute) or []
        if len(names) != 1:
            return None
        entry = self.find(names[0].decode("utf-8", "replace"))
        return entry if entry is not None and entry.stable_id == key else None

    def password_ok(self, entry: Entry, password: str) -> bool:
        """True when a bind as the entry with `password` succeeds (never with an empty one,
        which would be an anonymous bind). Raises AccountState when the directory names an
        account state rather than a wrong password (must change, expired, disabled)."""
        if not password:
            return False
        try:
            as_user = _open(self.options, self.url, entry.dn, password)
        except Exception as exc:  # noqa: BLE001 - as for the service account
            raise DirectoryUnavailable(f"{self.url}: {_reason(exc)}") from None
        right = as_user.bound
        state = None if right else account_state(as_user.result)
        _close(as_user)
        if state is not None:
            raise state
        return right

    def groups(self, entry: Entry) -> list[str]:
        """The names of the entry's groups (group_name_attribute, or the first RDN); on
        Active Directory its primary group too (and, with nested groups, those holding it)."""
        options = self.options
        names: list[str] = []
        if options.effective("group_mode") == "memberof":
            base = _normal_dn(options.group_base) if options.group_base else ""
            for value in entry.attributes.get("memberOf") or []:
                dn = str(value)
                if not base or _normal_dn(dn).endswith("," + base):
                    names.append(_rdn_value(dn))
        else:
            names += self._groups_holding(entry.dn)
        ad = options.flavor == "active_directory"
        primary_sid = primary_group_sid(entry.raw) if ad else None
        if primary_sid is not None:
            names += self._primary_groups(primary_sid)
        cleaned = {name.strip() for name in names if name and _USERNAME_OK.match(name)}
        return sorted(cleaned, key=str.lower)[:MAX_GROUPS]

    def _group_names(self, query: str) -> list[str]:
        name_attribute = self.options.group_name_attribute
        base = self.options.group_base or self.options.user_base
        found = self._search(base, query, [name_attribute], MAX_GROUPS)
        return [
            _first(group.get("attributes", {}), name_attribute) or _rdn_value(group["dn"])
            for group in found
        ]

    def _groups_holding(self, member_dn: str) -> list[str]:
        """The groups the group filter finds for `member_dn` (a user or a group)."""
        query = self.options.effective("group_filter").replace(
            "{user_dn}", escape_filter_chars(member_dn)
        )
        return self._group_names(query)

    def _primary_groups(self, sid: bytes) -> list[str]:
        """The primary group found by its SID under the group base, and with nested groups
        every group that holds it."""
        name_attribute = self.options.group_name_attribute
        base = self.options.group_base or self.options.user_base
        found = self._search(base, f"(objectSid={escape_bytes(sid)})", [name_attribute], 1)
        if not found:
            return []
        group = found[0]
        names = [_first(group.get("attributes", {}), name_attribute) or _rdn_value(group["dn"])]
        if self.options.effective("group_mode") == "nested":
            names += self._groups_holding(group["dn"])
        return names

    def describe(self, entry: Entry) -> DirectoryUser:
        """The user as the directory describes them, groups included."""
        attributes = entry.attributes
        return DirectoryUser(
            dn=entry.dn,
            stable_id=entry.stable_id,
            username=_first(attributes, self.options.effective("username_attribute")),
            display_name=_first(attributes, "displayName") or _first(attributes, "cn"),
            email=_first(attributes, "mail"),
            groups=self.groups(entry),
            disabled=disabled(entry.raw),
            server=self.url,
        )


def lookup(options: LdapOptions, bind_password: str, username: str) -> DirectoryUser | None:
    """The user as the directory describes them now (with `disabled` set), or None when the
    user filter no longer finds them. Raises DirectoryUnavailable."""
    with Directory(options, bind_password) as directory:
        try:
            entry = directory.find(username)
            return directory.describe(entry) if entry is not None else None
        except SearchFailed as exc:
            raise DirectoryUnavailable(f"{directory.url}: {exc}") from None
