"""A deterministic, realistic VCF inventory: SDDC Manager credentials and the installer spec.

The shape follows VMware Validated Solution naming (site ``sfo``, DNS ``sfo.rainpole.io``):
a management domain ``sfo-m01`` and workload domains ``sfo-w01``, ``sfo-w02``, ... each
with a vCenter (root SSH + PSC SSO administrator), an NSX Manager cluster VIP
(root/admin/audit), two NSX edges and ESXi hosts (root + a ``svc-vcf-...`` SERVICE account),
plus one backup SFTP account. The stream of resources is cut so that there are exactly N
credentials. The installer spec describes the management domain with the same host names
and initial passwords.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import random
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SITE = "sfo"
DNS_SUFFIX = "sfo.rainpole.io"
SSO_DOMAIN = "vsphere.local"
BASE_TIME = dt.datetime(2025, 6, 18, 9, 12, 44, 512000, tzinfo=dt.timezone.utc)

HOSTILE_STRINGS = (
    "<script>alert(1)</script>",
    "\"double\" and 'single' quotes",
    "back\\slash\\host",
    "\u202eexe.cod.rainpole.io",
    "=cmd|' /C calc'!A0",
    "+SUM(1,1)",
    "@import-formula",
    "-2+3",
    "line1\nline2\r\ninjected: true",
    "long-" + "x" * 500,  # long, yet within the portal's 512-character names
)
HOSTILE_PASSWORDS = (
    "Pa\"ss'w\\rd<b>&1Z",
    '=HYPERLINK("x")A1!',
    "\u202eRtl-Passw0rd!x",
)

_SPECIALS = "!@#$%^&*-_+=?."
QUIRKS = frozenset(
    {
        "unknown_enums",
        "missing_password",
        "no_deprecated",
        "extra_fields",
        "no_page_metadata",
        "ignore_page_number",
        "missing_identity",
        "wrong_shape",
    }
)


def iso(moment: dt.datetime) -> str:
    """Format a timestamp the way the appliance is assumed to: ISO-8601, ms, ``Z``."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


@dataclass
class Resource:
    """One managed component and the accounts SDDC Manager holds for it."""

    resource_id: str
    name: str
    ip: str
    resource_type: str
    domain: str
    accounts: list[tuple[str, str, str]]  # (username, credentialType, accountType)
    short_name: str = ""


@dataclass
class Domain:
    """A workload or management domain being generated."""

    name: str
    index: int
    resources: list[Resource] = field(default_factory=list)


class Inventory:
    """The simulator's data; not thread-safe on its own (the server holds a lock)."""

    def __init__(
        self, count: int, seed: int = 1, hostile: bool = False, installer_version: str = "9.1"
    ) -> None:
        if count < 0:
            raise ValueError("count must not be negative")
        if installer_version not in ("9.0", "9.1"):
            raise ValueError("installer_version must be '9.0' or '9.1'")
        # Deterministic fake data for tests, not secrets: a seeded PRNG is the point.
        self.rng = random.Random(seed)  # noqa: S311
        self._used_passwords: set[str] = set()
        self._ids = itertools.count()
        self.credentials: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, Resource] = {}
        self._hostile_originals: dict[tuple[str, str], Any] = {}
        self.hostile = False
        self._domains: list[Domain] = []
        self._host_counter: dict[str, int] = {}
        self.installer_version = installer_version
        stream = self._resource_stream()
        self.management = self._build_domain(0)
        pending = list(self.management.resources)
        while len(self.credentials) < count:
            resource = pending.pop(0) if pending else next(stream)
            self.resources[resource.resource_id] = resource
            for account in resource.accounts:
                if len(self.credentials) >= count:
                    break
                self._append(self._credential(resource, *account))
        self.tasks: list[dict[str, Any]] = []
        self.specs: dict[str, dict[str, Any]] = {}
        self._add_primary_task()
        if hostile:
            self.set_hostile(True)

    # -- generation ----------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def password(self) -> str:
        """Return a new realistic password: 16-20 chars, all four classes, never reused."""
        while True:
            length = self.rng.randint(16, 20)
            chars = [
                self.rng.choice(string.ascii_uppercase),
                self.rng.choice(string.ascii_lowercase),
                self.rng.choice(string.digits),
                self.rng.choice(_SPECIALS),
            ]
            pool = string.ascii_letters + string.digits + _SPECIALS
            chars += [self.rng.choice(pool) for _ in range(length - len(chars))]
            self.rng.shuffle(chars)
            value = "".join(chars)
            if value not in self._used_passwords:
                self._used_passwords.add(value)
                return value

    def _ip(self, domain_index: int, host: int) -> str:
        return f"172.{16 + domain_index // 200}.{11 + domain_index % 200}.{host}"

    def _resource(
        self,
        domain: Domain,
        short: str,
        rtype: str,
        accounts: list[tuple[str, str, str]],
        host_octet: int,
        resource_id: str | None = None,
    ) -> Resource:
        resource = Resource(
            resource_id=resource_id or self._uuid(),
            name=f"{short}.{DNS_SUFFIX}",
            ip=self._ip(domain.index, host_octet),
            resource_type=rtype,
            domain=domain.name,
            accounts=accounts,
            short_name=short,
        )
        domain.resources.append(resource)
        return resource

    def _esxi(self, domain: Domain) -> Resource:
        number = self._host_counter.get(domain.name, 0) + 1
        self._host_counter[domain.name] = number
        tag = domain.name.split("-", 1)[1]
        short = f"{SITE}01-{tag}-esx{number:02d}"
        accounts = [("root", "SSH", "USER"), (f"svc-vcf-{short}", "SSH", "SERVICE")]
        return self._resource(domain, short, "ESXI", accounts, 100 + number % 150)

    def _build_domain(self, index: int) -> Domain:
        name = f"{SITE}-m01" if index == 0 else f"{SITE}-w{index:02d}"
        domain = Domain(name=name, index=index)
        self._domains.append(domain)
        nsx_accounts = [
            ("root", "SSH", "USER"),
            ("admin", "API", "USER"),
            ("audit", "AUDIT", "USER"),
        ]
        if index == 0:
            self._resource(domain, f"{SITE}-bck01", "BACKUP", [("backup", "FTP", "SYSTEM")], 9)
        vc = self._resource(domain, f"{name}-vc01", "VCENTER", [("root", "SSH", "USER")], 10)
        psc = Resource(
            resource_id=self._uuid(),
            name=vc.name,
            ip=vc.ip,
            resource_type="PSC",
            domain=name,
            accounts=[(f"administrator@{SSO_DOMAIN}", "SSO", "SYSTEM")],
            short_name=vc.short_name,
        )
        domain.resources.append(psc)
        self._resource(domain, f"{name}-nsx01", "NSXT_MANAGER", nsx_accounts, 20)
        for edge in (1, 2):
            self._resource(domain, f"{name}-en{edge:02d}", "NSXT_EDGE", nsx_accounts, 30 + edge)
        hosts = 4 if index == 0 else self.rng.randint(3, 12)
        for _ in range(hosts):
            self._esxi(domain)
        if index == 0 and self.installer_version == "9.1":
            self._types_91(domain)
        return domain

    def _types_91(self, domain: Domain) -> None:
        """SDDC Manager 9.1's new resource types in the management domain: an HCX Manager and
        the VSP cluster (whose platform FQDN the installer spec names). Their ids come from
        their names, not the seeded generator, so every other value stays as it was."""
        for short, rtype, accounts, octet in (
            (
                f"{domain.name}-hcx01",
                "HCX_MANAGER",
                [("root", "SSH", "USER"), ("admin", "API", "USER")],
                40,
            ),
            (
                f"{SITE}-vsp01",
                "VSP",
                [("vmware-system-user", "SSH", "USER"), ("admin@vsp.local", "API", "USER")],
                90,
            ),
        ):
            resource_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{short}.{DNS_SUFFIX}"))
            self._resource(domain, short, rtype, accounts, octet, resource_id)

    def _resource_stream(self) -> Iterator[Resource]:
        for index in itertools.count(1):
            yield from self._build_domain(index).resources

    def _credential(
        self, resource: Resource, username: str, ctype: str, atype: str
    ) -> dict[str, Any]:
        created = BASE_TIME + dt.timedelta(seconds=next(self._ids) * 7)
        modified = created + dt.timedelta(days=self.rng.randint(0, 30), seconds=13)
        element: dict[str, Any] = {
            "id": self._uuid(),
            "credentialType": ctype,
            "accountType": atype,
            "username": username,
            "password": self.password(),
            "creationTimestamp": iso(created),
            "modificationTimestamp": iso(modified),
            "resource": {
                "resourceId": resource.resource_id,
                "resourceName": resource.name,
                "resourceIp": resource.ip,
                "resourceType": resource.resource_type,
                "domainNames": [resource.domain],
                "domainName": resource.domain,
            },
        }
        roll = self.rng.random()
        if roll < 0.5:
            status = self.rng.choice(["ACTIVE"] * 6 + ["EXPIRING", "EXPIRED", "UNKNOWN"])
            element["expiry"] = {
                "expiryDate": iso(modified + dt.timedelta(days=90)),
                "lastCheckedDate": iso(modified + dt.timedelta(days=1)),
                "connectivityStatus": "ACTIVE" if status != "UNKNOWN" else "UNKNOWN",
                "status": status,
            }
        if roll < 0.25:
            days = self.rng.choice([30, 60, 90])
            element["autoRotatePolicy"] = {
                "frequencyInDays": days,
                "nextSchedule": iso(modified + dt.timedelta(days=days)),
            }
        return element

    def _append(self, element: dict[str, Any]) -> None:
        self.credentials.append(element)
        self.by_id[element["id"]] = element

    # -- changes -------------------------------------------------------------------------

    def rotate(self, fraction: float, now: dt.datetime) -> int:
        """Give ``fraction`` of the credentials a new password and modification time."""
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be between 0 and 1")
        count = round(fraction * len(self.credentials))
        for element in self.rng.sample(self.credentials, count):
            element["password"] = self.password()
            element["modificationTimestamp"] = iso(now)
        return count

    def remove(self, n: int) -> list[dict[str, Any]]:
        """Remove the credentials of the last ``n`` ESXi hosts; return them."""
        doomed: list[str] = []
        for element in reversed(self.credentials):
            rid = element["resource"]["resourceId"]
            if element["resource"]["resourceType"] == "ESXI" and rid not in doomed:
                if len(doomed) == n:
                    break
                doomed.append(rid)
        removed = [e for e in self.credentials if e["resource"]["resourceId"] in doomed]
        self.credentials = [
            e for e in self.credentials if e["resource"]["resourceId"] not in doomed
        ]
        for element in removed:
            self.by_id.pop(element["id"], None)
        return copy.deepcopy(removed)

    def add(self, n: int) -> list[dict[str, Any]]:
        """Add ``n`` ESXi hosts (two credentials each) to the last domain; return them."""
        domain = self._domains[-1]
        added = []
        for _ in range(n):
            resource = self._esxi(domain)
            self.resources[resource.resource_id] = resource
            for account in resource.accounts:
                element = self._credential(resource, *account)
                self._append(element)
                added.append(copy.deepcopy(element))
        return added

    def set_hostile(self, enabled: bool) -> None:
        """Put hostile strings into some names, usernames and passwords (or restore them)."""
        if enabled == self.hostile:
            return
        if not enabled:
            for (cid, key), original in self._hostile_originals.items():
                element = self.by_id.get(cid)
                if element is None:
                    continue
                if key == "resourceName":
                    element["resource"]["resourceName"] = original
                else:
                    element[key] = original
            self._hostile_originals.clear()
            self.hostile = False
            return
        total = len(self.credentials)
        plan: list[tuple[str, str]] = [(s, "resourceName") for s in HOSTILE_STRINGS]
        plan += [(s, "username") for s in HOSTILE_STRINGS]
        plan += [(s, "password") for s in HOSTILE_PASSWORDS]
        if total:
            for number, (value, key) in enumerate(plan):
                element = self.credentials[(number * 7 + 3) % total]
                if (element["id"], key) in self._hostile_originals:
                    continue
                if key == "resourceName":
                    self._hostile_originals[(element["id"], key)] = element["resource"][key]
                    element["resource"][key] = value
                else:
                    self._hostile_originals[(element["id"], key)] = element[key]
                    element[key] = value
        self.hostile = True

    # -- views ---------------------------------------------------------------------------

    @staticmethod
    def matches(element: dict[str, Any], filters: dict[str, str]) -> bool:
        """Whether a credential passes the /v1/credentials query filters (exact match)."""
        resource = element["resource"]
        for key, value in filters.items():
            if key == "domainName":
                if (
                    value not in resource.get("domainNames", [])
                    and resource.get("domainName") != value
                ):
                    return False
            elif key == "accountType":
                if element.get("accountType") != value:
                    return False
            elif resource.get(key) != value:
                return False
        return True

    @staticmethod
    def apply_quirks(
        elements: list[dict[str, Any]], quirks: frozenset[str], offset: int = 0
    ) -> list[dict[str, Any]]:
        """Return copies of ``elements`` bent by the enabled quirks (for client robustness)."""
        if not quirks & {
            "unknown_enums",
            "missing_password",
            "no_deprecated",
            "extra_fields",
            "missing_identity",
        }:
            return elements
        out = []
        for number, element in enumerate(elements, start=offset):
            element = copy.deepcopy(element)
            if "unknown_enums" in quirks and number % 7 == 0:
                element["credentialType"] = "PASSKEY"
                element["accountType"] = "ROBOT"
                element["resource"]["resourceType"] = "QUANTUM_MANAGER"
                element["expiry"] = {"status": "SNOOZED", "connectivityStatus": "FLAKY"}
            if "missing_password" in quirks and number % 5 == 1:
                element.pop("password", None)
            if "no_deprecated" in quirks:
                element["resource"].pop("domainName", None)
                element["resource"].pop("resourceIp", None)
            if "extra_fields" in quirks:
                element["futureField"] = {"nested": [1, 2, 3]}
                element["resource"]["resourceTags"] = ["x"]
            if "missing_identity" in quirks and number == 3:
                element["resource"].pop("resourceName", None)
            out.append(element)
        return out

    # -- installer -----------------------------------------------------------------------

    def _add_primary_task(self) -> None:
        task_id = self._uuid()
        self.tasks.append(self._task(task_id, "COMPLETED_WITH_SUCCESS"))
        self.specs[task_id] = self._spec()

    def add_task(self, status: str, with_spec: bool) -> str:
        """Add an installer deployment task (optionally without a spec); return its id."""
        task_id = self._uuid()
        self.tasks.append(self._task(task_id, status))
        if with_spec:
            self.specs[task_id] = self._spec()
        return task_id

    def _task(self, task_id: str, status: str) -> dict[str, Any]:
        created = iso(BASE_TIME - dt.timedelta(days=30 - len(self.tasks)))
        finished = iso(BASE_TIME - dt.timedelta(days=30 - len(self.tasks), hours=-5))
        return {
            "id": task_id,
            "name": f"{SITE}-m01",
            "deploymentType": "VCF",
            "vcfInstanceName": f"{SITE}-vcf01",
            "status": status,
            "creationTimestamp": created,
            "sddcSubTasks": [
                {
                    "sddcId": task_id,
                    "name": "Deploy vCenter Server",
                    "description": "Deploy vCenter Server appliance",
                    "status": "COMPLETED_WITH_SUCCESS",
                    "creationTimestamp": created,
                    "updateTimestamp": finished,
                    "milestoneTask": "VCENTER",
                }
            ],
            "milestones": [
                {
                    "name": "VCENTER",
                    "description": "vCenter deployment",
                    "status": "COMPLETED_WITH_SUCCESS",
                    "creationTimestamp": created,
                    "updateTimestamp": finished,
                    "completedTasks": 1,
                    "totalTasks": 1,
                }
            ],
        }

    def _spec(self) -> dict[str, Any]:
        mgmt = self.management
        by_type: dict[str, list[Resource]] = {}
        for resource in mgmt.resources:
            by_type.setdefault(resource.resource_type, []).append(resource)
        initial = self._initial_passwords()

        def first_password(resource: Resource, username: str) -> str:
            return initial.get((resource.resource_id, username)) or self.password()

        vc = by_type["VCENTER"][0]
        psc = by_type["PSC"][0]
        nsx = by_type["NSXT_MANAGER"][0]
        hosts = by_type["ESXI"]
        mgmt_net = f"172.16.{11}"
        spec: dict[str, Any] = {
            "sddcId": mgmt.name,
            "vcfInstanceName": f"{SITE}-vcf01",
            "workflowType": "VCF",
            "version": "9.1.0.0" if self.installer_version == "9.1" else "9.0.2.0",
            "ceipEnabled": False,
            "skipEsxThumbprintValidation": False,
            "dnsSpec": {"subdomain": DNS_SUFFIX, "nameservers": [f"{mgmt_net}.4", f"{mgmt_net}.5"]},
            "ntpServers": [f"{mgmt_net}.4"],
            "networkSpecs": [
                {
                    "networkType": "MANAGEMENT",
                    "subnet": f"{mgmt_net}.0/24",
                    "gateway": f"{mgmt_net}.1",
                    "vlanId": 1611,
                    "mtu": 1500,
                },
                {
                    "networkType": "VMOTION",
                    "subnet": "172.16.12.0/24",
                    "gateway": "172.16.12.1",
                    "vlanId": 1612,
                    "mtu": 9000,
                    "includeIpAddressRanges": [
                        {"startIpAddress": "172.16.12.101", "endIpAddress": "172.16.12.108"}
                    ],
                },
                {
                    "networkType": "VSAN",
                    "subnet": "172.16.13.0/24",
                    "gateway": "172.16.13.1",
                    "vlanId": 1613,
                    "mtu": 9000,
                    "includeIpAddressRanges": [
                        {"startIpAddress": "172.16.13.101", "endIpAddress": "172.16.13.108"}
                    ],
                },
            ],
            "hostSpecs": [
                {
                    "hostname": host.short_name,
                    "credentials": {"username": "root", "password": first_password(host, "root")},
                }
                for host in hosts
            ],
            "clusterSpec": {
                "datacenterName": f"{mgmt.name}-dc01",
                "clusterName": f"{mgmt.name}-cl01",
            },
            "datastoreSpec": {
                "vsanSpec": {
                    "datastoreName": f"{mgmt.name}-cl01-ds-vsan01",
                    "failuresToTolerate": 1,
                }
            },
            "vcenterSpec": {
                "vcenterHostname": vc.name,
                "rootVcenterPassword": first_password(vc, "root"),
                "vmSize": "medium",
                "storageSize": "lstorage",
                "ssoDomain": SSO_DOMAIN,
                "adminUserSsoPassword": first_password(psc, f"administrator@{SSO_DOMAIN}"),
            },
            "nsxtSpec": {
                "nsxtManagers": [
                    {"hostname": f"{nsx.short_name}{suffix}.{DNS_SUFFIX}"} for suffix in "abc"
                ],
                "vipFqdn": nsx.name,
                "nsxtManagerSize": "medium",
                "rootNsxtManagerPassword": first_password(nsx, "root"),
                "nsxtAdminPassword": first_password(nsx, "admin"),
                "nsxtAuditPassword": first_password(nsx, "audit"),
                "transportVlanId": 1614,
            },
            "sddcManagerSpec": {
                "hostname": f"{SITE}-vcf01.{DNS_SUFFIX}",
                "rootPassword": self.password(),
                "sshPassword": self.password(),
                "localUserPassword": self.password(),
            },
            "vcfOperationsSpec": {
                "nodes": [
                    {
                        "hostname": f"{SITE}-vcfops01{suffix}.{DNS_SUFFIX}",
                        "rootUserPassword": self.password(),
                        "type": node_type,
                    }
                    for suffix, node_type in (("a", "master"), ("b", "replica"), ("c", "data"))
                ],
                "adminUserPassword": self.password(),
                "applianceSize": "medium",
                "loadBalancerFqdn": f"{SITE}-vcfops01.{DNS_SUFFIX}",
            },
            "vcfOperationsCollectorSpec": {
                "hostname": f"{SITE}-opsc01.{DNS_SUFFIX}",
                "rootUserPassword": self.password(),
                "applianceSize": "small",
            },
            "vcfAutomationSpec": {
                "hostname": f"{SITE}-auto01.{DNS_SUFFIX}",
                "adminUserPassword": self.password(),
                "internalClusterCidr": "198.18.0.0/15",
                # 9.0 allows 2 or 4 addresses (standard or high availability).
                "ipPool": [f"{mgmt_net}.{n}" for n in range(80, 84)],
                "nodePrefix": f"{SITE}-auto",
            },
        }
        if self.installer_version == "9.1":
            vsp = by_type.get("VSP")
            vsp_password = first_password(vsp[0], "vmware-system-user") if vsp else self.password()
            spec["vcfAutomationSpec"]["platformFqdn"] = f"{SITE}-vsp01.{DNS_SUFFIX}"
            spec["vcfAutomationSpec"]["size"] = "small"
            spec["vspClusterSpec"] = {
                "platformFqdn": f"{SITE}-vsp01.{DNS_SUFFIX}",
                "instanceFqdn": f"{SITE}-vsp01-instance.{DNS_SUFFIX}",
                "fleetFqdn": f"{SITE}-fleet01.{DNS_SUFFIX}",
                "systemUserPassword": vsp_password,
                "ipv4Pool": {
                    "cidr": f"{mgmt_net}.0/24",
                    "addresses": [f"{mgmt_net}.{n}" for n in range(90, 95)],
                },
                "size": "small",
                "internalClusterCidrIpv4": "198.18.0.0/15",
            }
        else:
            spec["vcfOperationsFleetManagementSpec"] = {
                "hostname": f"{SITE}-fleet01.{DNS_SUFFIX}",
                "rootUserPassword": self.password(),
                "adminUserPassword": self.password(),
            }
        return spec

    def _initial_passwords(self) -> dict[tuple[str, str], str]:
        values: dict[tuple[str, str], str] = {}
        for element in self.credentials:
            key = (element["resource"]["resourceId"], element["username"])
            values.setdefault(key, element["password"])
        return values
