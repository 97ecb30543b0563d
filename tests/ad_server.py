"""A real Active Directory domain controller for tests: Samba's AD DC (Debian's samba-ad-dc).

`start_samba_ad(directory)` provisions a new domain EXAMPLE.TEST in `directory` (no DNS
server, only the LDAP service), gives it a TLS certificate of a private CA, starts `samba` in
the foreground and returns once the administrator can bind over LDAPS.

Samba's LDAP ports cannot be chosen (389, 636, and 3268/3269 for the global catalogue) and it
listens only on addresses that an interface holds. So the domain controller gets an address
of its own on the loopback interface (a random 127.x.y.z, added with `ip addr` and removed
when it stops): two test runs on one machine never meet, and nothing listens outside
127.0.0.0/8. That needs root, as Samba itself does.

Users and groups are made with `samba-tool` on the domain's database, the way an
administrator does on a domain controller:

    with start_samba_ad(tmp_path / "ad") as ad:
        ad.add_user("alice", "Passw0rd-1!")
        ad.add_group("vcf-ops", ["alice"])
        ad.add_group("vcf-admins", ["vcf-ops"])      # nested
        ad.rename_user("alice", "alice2")            # same objectGUID, new name, CN and UPN

Samba refuses a simple bind over plain LDAP, as a domain controller with its default
settings does: LDAPS (`url_ldaps`) or StartTLS (`url_ldap`).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import weakref
from pathlib import Path

import ldap3
from ldap3.core.exceptions import LDAPException

from portal.simulator.certs import CA_FILE, CERT_FILE, KEY_FILE, generate_certificates

REALM = "EXAMPLE.TEST"
DOMAIN = "EXAMPLE"
BASE_DN = "DC=example,DC=test"
USERS_BASE = f"CN=Users,{BASE_DN}"
# samba-tool is Debian's Python program: none of the test run's Python settings reach it.
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class SambaError(RuntimeError):
    """The domain controller could not be provisioned or started (with Samba's output)."""


def samba_missing() -> str | None:
    """Why a domain controller cannot run here, or None when it can."""
    for program in ("samba", "samba-tool", "ip"):
        if shutil.which(program, path=_ENV["PATH"]) is None:
            return f"{program} is not installed (Debian: samba-ad-dc samba-ad-provision iproute2)"
    if not Path("/usr/share/samba/setup/ad-schema").is_dir():
        return "Samba's provisioning files are missing (Debian: samba-ad-provision)"
    if os.geteuid() != 0:
        return "a Samba domain controller needs root (port 389, an address on lo)"
    return None


def _run(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        args, env=_ENV, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SambaError(f"{' '.join(args[:3])} failed: {done.stdout}{done.stderr}")
    return done.stdout


def _own_loopback_address() -> str:
    """A loopback address no interface holds yet and where nothing listens on 389 or 636."""
    held = _run("ip", "-o", "-4", "addr", "show", "dev", "lo")
    for _ in range(50):
        address = f"127.{random.randint(64, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"  # noqa: S311
        if f" {address}/" not in held:
            return address
    raise SambaError("no free loopback address")


def _password() -> str:
    # Active Directory's complexity rule: three kinds of characters at least.
    return f"Ad-{secrets.token_hex(8)}-X{secrets.randbelow(10)}"


class SambaAD:
    """A running domain controller started by `start_samba_ad`.

    Addresses: `host` (its own loopback address), `url_ldaps`, `url_ldap` (StartTLS).
    TLS: `ca_pem`. Names: `base_dn`, `users_base`, `realm`, `admin_dn`/`admin_password`,
    `service_dn`/`service_password` (an ordinary user a directory client binds as).
    Stop it with `stop()`, or use it as a context manager.
    """

    base_dn = BASE_DN
    users_base = USERS_BASE
    realm = REALM

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.host = ""
        self.admin_password = _password()
        self.service_password = _password()
        self.admin_dn = f"CN=Administrator,{USERS_BASE}"
        self.service_dn = f"CN=portal-svc,{USERS_BASE}"
        self.config_path = directory / "etc" / "smb.conf"
        self.tls_dir = directory / "tls"
        self.log_path = directory / "samba.log"
        self.ca_pem = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._address_added = False
        self._finalizer: weakref.finalize | None = None

    @property
    def url_ldaps(self) -> str:
        return f"ldaps://{self.host}"

    @property
    def url_ldap(self) -> str:
        return f"ldap://{self.host}"

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def user_dn(self, name: str) -> str:
        """The DN of user `name` (its CN is its sAMAccountName, also after `rename_user`)."""
        return f"CN={name},{USERS_BASE}"

    # Directory changes, through samba-tool on the domain's database -----------------------

    def tool(self, *args: str) -> str:
        """Run `samba-tool` with `args` on this domain's database; its output."""
        database = str(self.directory / "private" / "sam.ldb")
        return _run("samba-tool", *args, "-H", database, "-s", str(self.config_path))

    def add_user(self, name: str, password: str, *, must_change: bool = False) -> None:
        """A user `name` (sAMAccountName, and UPN name@example.test) with `password`."""
        extra = ["--must-change-at-next-login"] if must_change else []
        mail = f"--mail-address={name}@example.test"
        self.tool("user", "create", name, password, mail, *extra)

    def add_group(self, name: str, members: tuple[str, ...] | list[str] = ()) -> None:
        """A global security group `name` with `members` (users or groups)."""
        self.tool("group", "add", name)
        if members:
            self.add_members(name, list(members))

    def add_members(self, group: str, members: list[str]) -> None:
        self.tool("group", "addmembers", group, ",".join(members))

    def remove_members(self, group: str, members: list[str]) -> None:
        self.tool("group", "removemembers", group, ",".join(members))

    def set_primary_group(self, user: str, group: str) -> None:
        """Make `group` the user's primary group (primaryGroupID: not listed in `member`)."""
        self.tool("user", "setprimarygroup", user, group)

    def disable_user(self, name: str) -> None:
        self.tool("user", "disable", name)

    def enable_user(self, name: str) -> None:
        self.tool("user", "enable", name)

    def expire_account(self, name: str) -> None:
        """The account expires now (accountExpires), as when a contract ends."""
        self.tool("user", "setexpiry", name, "--days=0")

    def rename_user(self, old: str, new: str) -> None:
        """A new sAMAccountName and UPN for the same entry (same objectGUID); Samba renames
        its CN too, so the DN changes."""
        self.tool("user", "rename", old, f"--samaccountname={new}", f"--upn={new}@example.test")

    def connect(self, who: str, password: str) -> ldap3.Connection:
        """A connection bound as `who` (a DN, UPN or DOMAIN\\name) over verified LDAPS."""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_data=self.ca_pem)
        server = ldap3.Server(self.url_ldaps, use_ssl=True, tls=tls, connect_timeout=5)
        connection = ldap3.Connection(server, who, password, receive_timeout=10)
        try:
            if not connection.bind():
                raise LDAPException(f"bind refused: {connection.result.get('message')}")
        except BaseException:
            connection.unbind()
            raise
        return connection

    # Start and stop ---------------------------------------------------------------------------

    def _provision(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _run(
            "samba-tool",
            "domain",
            "provision",
            f"--realm={REALM}",
            f"--domain={DOMAIN}",
            "--server-role=dc",
            "--dns-backend=NONE",
            f"--targetdir={self.directory}",
            f"--host-ip={self.host}",
            "--host-name=dc1",
            f"--adminpass={self.admin_password}",
        )
        certificates = generate_certificates([self.host])
        certificates.write(self.tls_dir)
        for name in (CA_FILE, CERT_FILE, KEY_FILE):
            os.chmod(self.tls_dir / name, 0o600)  # Samba refuses a key others may read
        self.ca_pem = certificates.ca_pem
        (self.directory / "run").mkdir(exist_ok=True)
        root = self.directory
        # Only what a test needs, all files in `directory`, only this address.
        self.config_path.write_text(
            "[global]\n"
            f"\tnetbios name = DC1\n\trealm = {REALM}\n\tworkgroup = {DOMAIN}\n"
            "\tserver role = active directory domain controller\n"
            "\tserver services = ldap\n"
            f"\tinterfaces = {self.host}\n\tbind interfaces only = yes\n"
            f"\tprivate dir = {root}/private\n\tlock directory = {root}\n"
            f"\tstate directory = {root}/state\n\tcache directory = {root}/cache\n"
            f"\tbinddns dir = {root}/bind-dns\n\tpid directory = {root}/run\n"
            f"\ttls enabled = yes\n\ttls keyfile = {self.tls_dir / KEY_FILE}\n"
            f"\ttls certfile = {self.tls_dir / CERT_FILE}\n"
            f"\ttls cafile = {self.tls_dir / CA_FILE}\n"
        )

    def _spawn(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    "samba",
                    "--foreground",
                    "--no-process-group",
                    "--model=single",
                    "--debug-stdout",
                    "--debuglevel=1",
                    "-s",
                    str(self.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_ENV,
                start_new_session=True,
            )
        finally:
            log.close()
        self._finalizer = weakref.finalize(
            self, _stop, self.process, self.host if self._address_added else ""
        )

    def _wait_until_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                # ldap3 leaves the socket of a refused connection open: ask the port first.
                with socket.create_connection((self.host, 636), timeout=1):
                    pass
                self.connect(f"Administrator@{REALM.lower()}", self.admin_password).unbind()
                return True
            except (LDAPException, OSError):
                time.sleep(0.2)
        return False

    def stop(self) -> None:
        """Stop Samba and remove its loopback address (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        elif self._address_added:
            _stop(None, self.host)
        self._address_added = False

    def __enter__(self) -> SambaAD:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stop(process: subprocess.Popen | None, address: str) -> None:
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
    if address:
        subprocess.run(
            ["ip", "addr", "del", f"{address}/32", "dev", "lo"],
            env=_ENV,
            capture_output=True,
            check=False,
        )


def _ports_free(address: str) -> bool:
    for port in (389, 636):
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def start_samba_ad(directory: Path, timeout: float = 60.0) -> SambaAD:
    """Provision and start a domain controller whose files live in `directory` (new or
    empty), with a service account; return it once the administrator can bind over LDAPS.
    Raises SambaError (with Samba's output) when it cannot."""
    missing = samba_missing()
    if missing:
        raise SambaError(missing)
    ad = SambaAD(Path(directory))
    ad.host = _own_loopback_address()
    _run("ip", "addr", "add", f"{ad.host}/32", "dev", "lo")
    ad._address_added = True
    try:
        if not _ports_free(ad.host):
            raise SambaError(f"ports 389/636 of {ad.host} are taken")
        ad._provision()
        ad._spawn()
        if not ad._wait_until_ready(time.monotonic() + timeout):
            raise SambaError(f"samba did not answer; its output:\n{ad.log}")
        ad.add_user("portal-svc", ad.service_password)
    except BaseException:
        ad.stop()
        raise
    return ad
