"""A real OpenLDAP slapd for tests, on loopback ports of its own.

`start_slapd(directory)` writes into `directory` a TLS certificate set (a private CA and a
server certificate for 127.0.0.1 and localhost), a slapd.conf and a fresh mdb database holding
the base entries, runs `/usr/sbin/slapd` in the foreground on two free ports of 127.0.0.1
(plain LDAP with StartTLS, and LDAPS) and returns once the administrator can bind:

    dc=example,dc=test
        ou=people     users (inetOrgPerson, RDN uid)
        ou=groups     groupOfNames groups (RDN cn)
        ou=services   cn=portal: the service account a directory client binds as
        ou=policies   cn=default: the password policy every entry falls under

Overlays: memberof (users get `memberOf` when they are made members of a group), refint
(deleting a user removes them from groups) and ppolicy (`pwdAccountLockedTime: 000001010000Z`
locks an account: its binds fail, which is how an account is disabled in OpenLDAP). Cleartext
passwords written by Add and Modify are stored hashed.

Access: every bound entry (users and the service account) may read the directory, users may
change their own password, anonymous clients may only authenticate. The root DSE and the
schema are readable by anyone, as clients expect.

A group of names needs at least one member: a group without users holds the service account's
DN instead (`Slapd.placeholder_member`); `add_member` and `remove_member` keep it there exactly
while the group has no other member, so `memberOf` of users is never affected by it.

The helpers of `Slapd` work as the administrator (`admin_dn`, the rootdn) through a plain
LDAP connection on loopback; `connect` binds as anyone over LDAPS, StartTLS or plain LDAP.
Nothing here listens on or connects to anything but 127.0.0.1.

    with start_slapd(tmp_path / "ldap") as ldap:
        ldap.add_user("alice", "secret", mail="alice@example.test")
        ldap.add_group("admins", ["alice"])
        conn = ldap.connect_user("alice", "secret")   # LDAPS, verified against ldap.ca_path
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

from portal.simulator.certs import CA_FILE, CERT_FILE, KEY_FILE, generate_certificates

HOST = "127.0.0.1"
MODULE_PATH = Path("/usr/lib/ldap")
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
BASE_DN = "dc=example,dc=test"
# pwdAccountLockedTime of an account locked until an administrator unlocks it.
LOCKED_FOREVER = "000001010000Z"

# slapd's environment: no ldap.conf or .ldaprc is read (LDAPNOINIT).
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LDAPNOINIT": "1"}

Transport = Literal["ldaps", "starttls", "ldap"]


def slapd_binary() -> str | None:
    """The slapd executable (it lives in /usr/sbin, often not on a user's PATH), or None."""
    found = shutil.which("slapd")
    if found:
        return found
    return "/usr/sbin/slapd" if os.access("/usr/sbin/slapd", os.X_OK) else None


class SlapdError(RuntimeError):
    """slapd could not be started (the message includes its output)."""


def _ssha(password: str) -> str:
    """An RFC 2307 {SSHA} hash of `password`, the way slapd stores one."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - the LDAP scheme
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports of 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read(path: Path) -> str:
    """The text of `path` without surrounding white space, or "" if there is none."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on `port` of 127.0.0.1."""
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _quote(value: object) -> str:
    """A slapd.conf argument in double quotes."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Slapd:
    """A running slapd started by `start_slapd`: URLs, credentials and directory helpers.

    Addresses: `url_ldap` (StartTLS offered), `url_ldaps`, `host`, `port_ldap`, `port_ldaps`.
    TLS: `ca_pem` (the CA certificate, PEM text) and `ca_path` (the same in a file).
    Names: `base_dn`, `people_base`, `groups_base`, `services_base`, `admin_dn` and
    `admin_password` (the rootdn), `service_dn` and `service_password` (the service account).
    Files: `directory`, `config_path`, `data_dir`, `log_path` (slapd's output, also `log`).

    Stop it with `stop()`, or use it as a context manager.
    """

    base_dn = BASE_DN
    people_base = f"ou=people,{BASE_DN}"
    groups_base = f"ou=groups,{BASE_DN}"
    services_base = f"ou=services,{BASE_DN}"
    policies_base = f"ou=policies,{BASE_DN}"
    policy_dn = f"cn=default,ou=policies,{BASE_DN}"
    admin_dn = f"cn=admin,{BASE_DN}"
    service_dn = f"cn=portal,ou=services,{BASE_DN}"
    # The member of a group that has no user as member (groupOfNames needs one).
    placeholder_member = service_dn

    def __init__(self, directory: Path, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self.host = HOST
        self.port_ldap = 0
        self.port_ldaps = 0
        self.admin_password = secrets.token_urlsafe(18)
        self.service_password = secrets.token_urlsafe(18)
        self.config_path = directory / "slapd.conf"
        self.data_dir = directory / "data"
        self.log_path = directory / "slapd.log"
        self.pid_path = directory / "slapd.pid"
        self.tls_dir = directory / "tls"
        self.ca_path = self.tls_dir / CA_FILE
        self.cert_path = self.tls_dir / CERT_FILE
        self.key_path = self.tls_dir / KEY_FILE
        self.ca_pem = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._admin: ldap3.Connection | None = None
        self._finalizer: weakref.finalize | None = None

    # Addresses ----------------------------------------------------------------------------

    @property
    def url_ldap(self) -> str:
        """Plain LDAP (StartTLS available), e.g. ldap://127.0.0.1:40123."""
        return f"ldap://{self.host}:{self.port_ldap}"

    @property
    def url_ldaps(self) -> str:
        """LDAP over TLS from the first byte, e.g. ldaps://127.0.0.1:40124."""
        return f"ldaps://{self.host}:{self.port_ldaps}"

    def user_dn(self, uid: str) -> str:
        """The DN of user `uid` (whether or not it exists)."""
        return f"uid={escape_rdn(uid)},{self.people_base}"

    def group_dn(self, cn: str) -> str:
        """The DN of group `cn` (whether or not it exists)."""
        return f"cn={escape_rdn(cn)},{self.groups_base}"

    @property
    def log(self) -> str:
        """What slapd has written to its standard output and error so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # Clients --------------------------------------------------------------------------------

    def tls(self, *, trust_ca: bool = True) -> ldap3.Tls:
        """TLS settings that verify the server certificate and its name: against this
        server's CA, or with `trust_ca=False` against the system's CAs only (which fails)."""
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(self.ca_path) if trust_ca else None,
        )

    def server(self, transport: Transport = "ldaps", tls: ldap3.Tls | None = None) -> ldap3.Server:
        """An ldap3 Server for LDAPS, or plain LDAP (for "starttls" and "ldap")."""
        if transport == "ldaps":
            return ldap3.Server(
                self.host,
                port=self.port_ldaps,
                use_ssl=True,
                tls=tls or self.tls(),
                get_info=ldap3.NONE,
                connect_timeout=5,
            )
        return ldap3.Server(
            self.host,
            port=self.port_ldap,
            tls=tls or self.tls(),
            get_info=ldap3.NONE,
            connect_timeout=5,
        )

    def connect(
        self,
        dn: str,
        password: str,
        *,
        transport: Transport = "ldaps",
        tls: ldap3.Tls | None = None,
    ) -> ldap3.Connection:
        """A connection bound as `dn` (the caller unbinds it): over LDAPS, over plain LDAP
        after StartTLS, or over plain LDAP; TLS verified by `tls` (default: `self.tls()`).

        Raises an ldap3 exception if TLS or the bind fails: LDAPSocketOpenError (LDAPS) or
        LDAPStartTLSError for a certificate that does not verify, LDAPBindError for a refused
        bind (wrong password, locked or missing account)."""
        auto_bind = (
            ldap3.AUTO_BIND_TLS_BEFORE_BIND if transport == "starttls" else ldap3.AUTO_BIND_NO_TLS
        )
        return ldap3.Connection(
            self.server(transport, tls),
            user=dn,
            password=password,
            auto_bind=auto_bind,
            receive_timeout=10,
        )

    def connect_user(
        self, uid: str, password: str, *, transport: Transport = "ldaps"
    ) -> ldap3.Connection:
        """`connect` as user `uid`."""
        return self.connect(self.user_dn(uid), password, transport=transport)

    @property
    def admin(self) -> ldap3.Connection:
        """The administrator's connection (plain LDAP on loopback; errors raise)."""
        if self._admin is None or self._admin.closed:
            self._admin = ldap3.Connection(
                ldap3.Server(self.host, port=self.port_ldap, get_info=ldap3.NONE),
                user=self.admin_dn,
                password=self.admin_password,
                auto_bind=ldap3.AUTO_BIND_NO_TLS,
                raise_exceptions=True,
                receive_timeout=10,
            )
        return self._admin

    # Users ------------------------------------------------------------------------------------

    def add_user(
        self, uid: str, password: str, cn: str | None = None, mail: str | None = None
    ) -> str:
        """Add user `uid` (an inetOrgPerson under ou=people) and return its DN."""
        dn = self.user_dn(uid)
        attributes: dict[str, object] = {
            "uid": uid,
            "cn": cn or uid,
            "sn": (cn or uid).split()[-1],
            "userPassword": password,
        }
        if mail:
            attributes["mail"] = mail
        self.admin.add(dn, ["inetOrgPerson"], attributes)
        return dn

    def delete_user(self, uid: str) -> None:
        """Delete user `uid` (refint takes them out of their groups)."""
        self.admin.delete(self.user_dn(uid))

    def set_password(self, uid: str, password: str) -> None:
        """Replace the password of user `uid` (stored hashed)."""
        self.admin.modify(self.user_dn(uid), {"userPassword": [(ldap3.MODIFY_REPLACE, [password])]})

    def lock_user(self, uid: str) -> None:
        """Lock user `uid` until `unlock_user`: binds as them fail (ppolicy)."""
        self.admin.modify(
            self.user_dn(uid),
            {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [LOCKED_FOREVER])]},
        )

    def unlock_user(self, uid: str) -> None:
        """Unlock user `uid` (nothing happens if they were not locked)."""
        self.admin.modify(self.user_dn(uid), {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [])]})

    def member_of(self, uid: str) -> list[str]:
        """The DNs of the groups user `uid` is a member of, as memberOf tells (sorted)."""
        self.admin.search(self.user_dn(uid), "(objectClass=*)", ldap3.BASE, attributes=["memberOf"])
        return sorted(self.admin.response[0]["attributes"].get("memberOf") or [])

    # Groups -----------------------------------------------------------------------------------

    def add_group(self, cn: str, members: Iterable[str] = ()) -> str:
        """Add group `cn` (a groupOfNames under ou=groups) with the users `members` (uids)
        and return its DN. Without members the group holds `placeholder_member`."""
        dns = [self.user_dn(uid) for uid in members] or [self.placeholder_member]
        dn = self.group_dn(cn)
        self.admin.add(dn, ["groupOfNames"], {"cn": cn, "member": dns})
        return dn

    def delete_group(self, cn: str) -> None:
        """Delete group `cn` (memberof takes it out of its members' memberOf)."""
        self.admin.delete(self.group_dn(cn))

    def members(self, cn: str) -> list[str]:
        """The member DNs of group `cn`, as stored (the placeholder included)."""
        self.admin.search(self.group_dn(cn), "(objectClass=*)", ldap3.BASE, attributes=["member"])
        return list(self.admin.response[0]["attributes"].get("member") or [])

    def add_member(self, cn: str, uid: str) -> None:
        """Make user `uid` a member of group `cn` (the placeholder, if there, goes)."""
        changes = [(ldap3.MODIFY_ADD, [self.user_dn(uid)])]
        if self._holds_placeholder(cn):
            changes.append((ldap3.MODIFY_DELETE, [self.placeholder_member]))
        self.admin.modify(self.group_dn(cn), {"member": changes})

    def remove_member(self, cn: str, uid: str) -> None:
        """Take user `uid` out of group `cn` (the placeholder comes in for the last one)."""
        dn = self.user_dn(uid)
        changes = [(ldap3.MODIFY_DELETE, [dn])]
        others = [m for m in self.members(cn) if m.lower() != dn.lower()]
        if not others:
            changes.insert(0, (ldap3.MODIFY_ADD, [self.placeholder_member]))
        self.admin.modify(self.group_dn(cn), {"member": changes})

    def _holds_placeholder(self, cn: str) -> bool:
        """Whether group `cn` holds `placeholder_member`."""
        placeholder = self.placeholder_member.lower()
        return any(m.lower() == placeholder for m in self.members(cn))

    # Life cycle -------------------------------------------------------------------------------

    def _write_config(self) -> None:
        """slapd.conf: schemas, modules, TLS, the mdb database, its access rules and overlays."""
        d = self
        lines = [f"include {_quote(SCHEMA_DIR / f'{name}.schema')}" for name in SCHEMAS]
        lines += [
            f"pidfile {_quote(d.pid_path)}",
            f"argsfile {_quote(d.directory / 'slapd.args')}",
            f"modulepath {_quote(MODULE_PATH)}",
            "moduleload back_mdb",
            "moduleload memberof",
            "moduleload refint",
            "moduleload ppolicy",
            f"TLSCACertificateFile {_quote(d.ca_path)}",
            f"TLSCertificateFile {_quote(d.cert_path)}",
            f"TLSCertificateKeyFile {_quote(d.key_path)}",
            "TLSVerifyClient never",
            # Before any database: the root DSE and the schema, for any client.
            'access to dn.base="" by * read',
            'access to dn.base="cn=Subschema" by * read',
            "",
            "database mdb",
            f"suffix {_quote(d.base_dn)}",
            f"rootdn {_quote(d.admin_dn)}",
            f"rootpw {_quote(_ssha(d.admin_password))}",
            f"directory {_quote(d.data_dir)}",
            "maxsize 67108864",
            "dbnosync",
            "index objectClass eq",
            "index uid,cn,mail eq",
            "index member,memberOf eq",
            "access to attrs=userPassword",
            "  by self write",
            "  by anonymous auth",
            "  by * none",
            "access to *",
            "  by users read",
            "  by * none",
            "overlay memberof",
            "memberof-refint TRUE",
            "overlay refint",
            "refint_attributes member",
            f"refint_nothing {_quote(d.placeholder_member)}",
            "overlay ppolicy",
            f"ppolicy_default {_quote(d.policy_dn)}",
            "ppolicy_hash_cleartext",
        ]
        d.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _spawn(self) -> None:
        """Start slapd on two new free ports. `-d none` keeps it in the foreground and logs to
        standard error only what it always logs: start, stop and errors."""
        if self._finalizer is not None:
            self._finalizer()  # an earlier attempt's slapd, which exited
        self.port_ldap, self.port_ldaps = _free_ports(2)
        self.pid_path.unlink(missing_ok=True)
        urls = f"{self.url_ldap}/ {self.url_ldaps}/"
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "-d", "none", "-h", urls, "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_ENV,
            )
        self._finalizer = weakref.finalize(self, _terminate, self.process)

    def _wait_until_ready(self, deadline: float) -> bool:
        """Wait until the administrator can bind; False if slapd exited first.

        slapd writes its pid file once it holds both ports (and listens a moment later), so
        what answers then is this slapd and not whoever else may have been listening there.
        A TCP connection comes before the bind: ldap3 leaves the socket of a refused
        connection open."""
        assert self.process is not None
        pid = str(self.process.pid)
        while self.process.poll() is None:
            if _read(self.pid_path) == pid and _accepts(self.port_ldap):
                conn = ldap3.Connection(
                    ldap3.Server(self.host, port=self.port_ldap, get_info=ldap3.NONE),
                    user=self.admin_dn,
                    password=self.admin_password,
                    receive_timeout=5,
                )
                try:
                    bound = conn.bind()
                except LDAPException:
                    bound = False
                finally:
                    conn.unbind()
                if bound:
                    return True
            if time.monotonic() > deadline:
                self.stop()
                raise SlapdError(f"slapd did not answer in time; its output:\n{self.log}")
            time.sleep(0.01)
        return False

    def _base_ldif(self) -> str:
        """The base entry, the organizational units, the password policy and the service
        account, as LDIF."""
        entries = [
            [f"dn: {self.base_dn}", "objectClass: dcObject", "objectClass: organization"]
            + ["dc: example", "o: Example"],
        ]
        for base in (self.people_base, self.groups_base, self.services_base, self.policies_base):
            ou = base.split(",")[0].removeprefix("ou=")
            entries.append([f"dn: {base}", "objectClass: organizationalUnit", f"ou: {ou}"])
        entries += [
            [
                f"dn: {self.policy_dn}",
                "objectClass: organizationalRole",
                "objectClass: pwdPolicy",
                "cn: default",
                "pwdAttribute: userPassword",
                # Locking by pwdAccountLockedTime needs pwdLockout; with pwdMaxFailure 0
                # failed binds never lock an account by themselves.
                "pwdLockout: TRUE",
                "pwdMaxFailure: 0",
            ],
            [
                f"dn: {self.service_dn}",
                "objectClass: organizationalRole",
                "objectClass: simpleSecurityObject",
                "cn: portal",
                f"userPassword: {_ssha(self.service_password)}",
            ],
        ]
        return "".join("\n".join(entry) + "\n\n" for entry in entries)

    def _load_base_entries(self) -> None:
        """Load `_base_ldif()` into the new database with slapadd (slapd -T add), offline."""
        ldif = self.directory / "base.ldif"
        ldif.write_text(self._base_ldif(), encoding="utf-8")
        done = subprocess.run(
            [self.binary, "-T", "add", "-q", "-f", str(self.config_path), "-l", str(ldif)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_ENV,
            timeout=60,
        )
        if done.returncode != 0:
            output = done.stdout + done.stderr + _apparmor_hint()
            raise SlapdError(f"slapadd failed ({done.returncode}):\n{output}")

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL after 10 s) and wait for it to exit."""
        if self._admin is not None:
            try:
                self._admin.unbind()
            except LDAPException:
                pass
            self._admin = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Slapd:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """End `process` (slapd) and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _apparmor_hint() -> str:
    """A hint when an AppArmor profile for slapd is loaded (it may deny the files here)."""
    try:
        profiles = Path("/sys/kernel/security/apparmor/profiles").read_text()
    except OSError:
        return ""  # no AppArmor, or not allowed to look
    if "slapd" not in profiles:
        return ""
    return "\n(An AppArmor profile for slapd is loaded: it may deny slapd these files.)"


def start_slapd(directory: Path, timeout: float = 15.0) -> Slapd:
    """Start a slapd whose files (certificates, configuration, database, log) live in
    `directory` (made if missing; it should be new or empty) and return it once the
    administrator can bind.

    Raises SlapdError with slapd's output if slapd is not installed, exits or does not
    answer within `timeout` seconds. A port taken by someone else between choosing it and
    slapd binding it is retried on new ports.
    """
    binary = slapd_binary()
    if binary is None:
        raise SlapdError("slapd is not installed (Debian: apt-get install slapd)")
    directory = Path(directory)
    slapd = Slapd(directory, binary)
    slapd.data_dir.mkdir(parents=True, exist_ok=True)
    certificates = generate_certificates([HOST, "localhost"])
    certificates.write(slapd.tls_dir)
    slapd.ca_pem = certificates.ca_pem
    slapd._write_config()
    slapd._load_base_entries()
    deadline = time.monotonic() + timeout
    for _attempt in range(5):
        logged = len(slapd.log)
        slapd._spawn()
        if slapd._wait_until_ready(deadline):
            return slapd
        if "Address already in use" not in slapd.log[logged:]:
            break
    slapd.stop()
    raise SlapdError(f"slapd exited while starting; its output:\n{slapd.log}{_apparmor_hint()}")
