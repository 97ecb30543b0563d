"""LDAP and Active Directory: check a password by binding as the user, read their groups.

No database here: the caller passes the options and the bind password. The user's password
is sent only in the bind as that user, over LDAPS or StartTLS (plain LDAP only where the
settings allow it explicitly), and never kept. Servers are tried in order; one that answers
decides (a wrong password on the first server is not tried on the next).
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from .options import LdapOptions

log = logging.getLogger(__name__)

MAX_USERNAME = 256
MAX_GROUPS = 1000
# Active Directory: userAccountControl bit 2 is ACCOUNTDISABLE.
_AD_DISABLED = 0x2
_USERNAME_OK = re.compile(r"^[^\x00-\x1f\x7f]+$")


class DirectoryUnavailable(Exception):
    """No server could be reached, TLS failed, or the service account was refused. The
    message names the servers and the reasons, never a password."""


@dataclass
class DirectoryUser:
    """A user as the directory describes them."""

    dn: str
    username: str
    display_name: str = ""
    email: str = ""
    groups: list[str] = field(default_factory=list)
    disabled: bool = False
    server: str = ""


def _tls(options: LdapOptions) -> Tls:
    return Tls(
        validate=ssl.CERT_REQUIRED if options.verify_certificates else ssl.CERT_NONE,
        ca_certs_data=options.ca_bundle or None,
        version=ssl.PROTOCOL_TLS_CLIENT,
    )


def _open(options: LdapOptions, url: str, dn: str | None, password: str | None) -> Connection:
    """A connection to one server, TLS established, bound as `dn` (anonymous when None).

    Raises ldap3's exceptions for network and TLS failures; a refused bind answers a
    Connection whose `bound` is False."""
    parts = urlsplit(url)
    secure = parts.scheme == "ldaps"
    server = Server(
        parts.hostname,
        port=parts.port or (636 if secure else 389),
        use_ssl=secure,
        tls=_tls(options),
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


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _service(options: LdapOptions, bind_password: str) -> tuple[Connection, str]:
    """The first server that accepts the service account; DirectoryUnavailable if none."""
    if not options.urls:
        raise DirectoryUnavailable("No LDAP server is configured.")
    problems = []
    for url in options.urls:
        try:
            connection = _open(options, url, options.bind_dn or None, bind_password or None)
        except (ldap_errors.LDAPException, OSError) as exc:
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
    return (
        parts[0][1].replace("\\,", ",").replace("\\+", "+").replace("\\\\", "\\") if parts else ""
    )


def _find(connection: Connection, options: LdapOptions, username: str) -> tuple[str, dict] | None:
    """The one entry the user filter finds for `username`: (dn, attributes), or None when
    none or several match."""
    query = options.effective("user_filter").replace("{username}", escape_filter_chars(username))
    attributes = [
        options.effective("username_attribute"),
        "cn",
        "displayName",
        "mail",
        "userAccountControl",
        "pwdAccountLockedTime",
    ]
    if options.effective("group_mode") == "memberof":
        attributes.append("memberOf")
    connection.search(
        options.user_base,
        query,
        search_scope=SUBTREE,
        attributes=attributes,
        size_limit=2,
        time_limit=options.timeout_seconds,
    )
    entries = [e for e in connection.response or [] if e.get("type") == "searchResEntry"]
    if connection.result.get("result") not in (0, 4):  # success, or size limit exceeded
        raise DirectoryUnavailable(
            f"the user search failed: {connection.result.get('description', 'error')}"
        )
    if len(entries) != 1:
        if len(entries) > 1:
            log.warning("the LDAP user filter matches several entries for one name")
        return None
    return entries[0]["dn"], entries[0].get("attributes", {})


def _groups(connection: Connection, options: LdapOptions, dn: str, attributes: dict) -> list[str]:
    mode = options.effective("group_mode")
    names: list[str] = []
    if mode == "memberof":
        values = attributes.get("memberOf") or []
        names = [_rdn_value(str(value)) for value in values]
    else:
        name_attribute = options.group_name_attribute
        query = options.effective("group_filter").replace("{user_dn}", escape_filter_chars(dn))
        connection.search(
            options.group_base or options.user_base,
            query,
            search_scope=SUBTREE,
            attributes=[name_attribute],
            size_limit=MAX_GROUPS,
            time_limit=options.timeout_seconds,
        )
        if connection.result.get("result") not in (0, 4):
            raise DirectoryUnavailable(
                f"the group search failed: {connection.result.get('description', 'error')}"
            )
        for entry in connection.response or []:
            if entry.get("type") == "searchResEntry":
                names.append(
                    _first(entry.get("attributes", {}), name_attribute) or _rdn_value(entry["dn"])
                )
    cleaned = {name.strip() for name in names if name and _USERNAME_OK.match(name)}
    return sorted(cleaned, key=str.lower)[:MAX_GROUPS]


def _disabled(attributes: dict) -> bool:
    control = _first(attributes, "userAccountControl")
    if control.isdigit() and int(control) & _AD_DISABLED:
        return True
    return bool(attributes.get("pwdAccountLockedTime"))


def _describe(
    connection: Connection, options: LdapOptions, dn: str, attributes: dict, url: str
) -> DirectoryUser:
    return DirectoryUser(
        dn=dn,
        username=_first(attributes, options.effective("username_attribute")),
        display_name=_first(attributes, "displayName") or _first(attributes, "cn"),
        email=_first(attributes, "mail"),
        groups=_groups(connection, options, dn, attributes),
        disabled=_disabled(attributes),
        server=url,
    )


def _usable(username: str) -> bool:
    return 0 < len(username) <= MAX_USERNAME and bool(_USERNAME_OK.match(username))


def authenticate(
    options: LdapOptions, bind_password: str, username: str, password: str
) -> DirectoryUser | None:
    """The user when `password` is theirs (a bind as them succeeds) and they are not
    disabled; None otherwise. Raises DirectoryUnavailable when the directory cannot say."""
    if not password or not _usable(username):  # an empty password would bind anonymously
        return None
    service, url = _service(options, bind_password)
    try:
        found = _find(service, options, username)
        if found is None:
            return None
        dn, attributes = found
        try:
            as_user = _open(options, url, dn, password)
        except (ldap_errors.LDAPException, OSError) as exc:
            raise DirectoryUnavailable(f"{url}: {_reason(exc)}") from None
        right = as_user.bound
        _close(as_user)
        if not right:
            return None
        user = _describe(service, options, dn, attributes, url)
        return None if user.disabled else user
    except ldap_errors.LDAPException as exc:
        raise DirectoryUnavailable(f"{url}: {_reason(exc)}") from None
    finally:
        _close(service)


def lookup(options: LdapOptions, bind_password: str, username: str) -> DirectoryUser | None:
    """The user as the directory describes them now (with `disabled` set), or None when the
    user filter no longer finds them. Raises DirectoryUnavailable."""
    if not _usable(username):
        return None
    service, url = _service(options, bind_password)
    try:
        found = _find(service, options, username)
        if found is None:
            return None
        dn, attributes = found
        return _describe(service, options, dn, attributes, url)
    except ldap_errors.LDAPException as exc:
        raise DirectoryUnavailable(f"{url}: {_reason(exc)}") from None
    finally:
        _close(service)
