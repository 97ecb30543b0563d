"""VCF Installer (9.x) client: the passwords held in each deployment's ``SddcSpec``.

Flow: ``GET /v1/sddcs`` lists the deployment tasks, then ``GET /v1/sddcs/{id}/spec`` returns
each deployment's full input spec, passwords in clear (auto-generated ones included).

A task whose spec answers 404 is skipped with a warning: the installer keeps failed or
superseded attempts in the list, and their spec may be gone. If there are tasks but *none*
has a spec, the fetch fails (``not_found``) instead of returning an empty list that would
look like "no passwords". No deduplication across tasks: two deployments that name the same
host both appear, each with its own values.

Every host name is made fully qualified with ``dnsSpec.subdomain`` when it is a short name
(the spec says ``hostSpecs[].hostname`` is "prefixed to the DNS subdomain"; other names are
normally FQDNs already and pass unchanged). Blank or missing password fields are skipped;
the installer never yields ``password=None``.

Mapping. Resource types are the server's own names: the 9.x credential/task enums (ESXI,
VCENTER, PSC, NSXT_MANAGER, SDDC_MANAGER, VSP) and, for VCF Operations components, the
component types SDDC Manager's 9.x spec lists (VROPS, VRA, VRSLCM, VCF_OPS_CLOUD_PROXY).

====================================  ======================  ===================  ============
spec field -> host name               user                    resource type        cred/account
====================================  ======================  ===================  ============
hostSpecs[].credentials               credentials.username    ESXI                 SSH/USER
  (object, or a list) -> hostname     (default root)
vcenterSpec.rootVcenterPassword       root                    VCENTER              SSH/USER
  -> vcenterHostname
vcenterSpec.adminUserSsoPassword      adminUserSsoUsername,   PSC                  SSO/SYSTEM
  -> vcenterHostname                  else administrator@
                                      <ssoDomain or
                                      vsphere.local>
nsxtSpec.rootNsxtManagerPassword      root                    NSXT_MANAGER         SSH/USER
nsxtSpec.nsxtAdminPassword            admin                   NSXT_MANAGER         API/USER
nsxtSpec.nsxtAuditPassword            audit                   NSXT_MANAGER         AUDIT/USER
  -> each nsxtManagers[].hostname, and vipFqdn
sddcManagerSpec.rootPassword          root                    SDDC_MANAGER         SSH/USER
sddcManagerSpec.sshPassword           vcf                     SDDC_MANAGER         SSH/USER
sddcManagerSpec.localUserPassword     admin@local             SDDC_MANAGER         API/USER
  -> sddcManagerSpec.hostname
vcfOperationsSpec.adminUserPassword   admin                   VROPS                API/USER
  -> loadBalancerFqdn, else the master node, else the first node
vcfOperationsSpec.nodes[]             root                    VROPS                SSH/USER
  .rootUserPassword -> nodes[].hostname
vcfOperationsCollectorSpec            root                    VCF_OPS_CLOUD_PROXY  SSH/USER
  .rootUserPassword -> .hostname
vcfOperationsFleetManagementSpec      root / admin            VRSLCM               SSH/USER,
  (9.0 only) .rootUserPassword /                                                   API/USER
  .adminUserPassword -> .hostname
vcfAutomationSpec.adminUserPassword   admin                   VRA                  API/USER
  -> .hostname
vspClusterSpec.systemUserPassword     vmware-system-user      VSP                  SSH/USER
  (9.1) -> .platformFqdn              admin@vsp.local         VSP                  API/USER
====================================  ======================  ===================  ============

PSC (not VCENTER) for the SSO administrator matches how SDDC Manager lists the same account,
so one account reads the same whichever appliance it came from. ``domain_names`` is
``(sddcId,)``, the management domain's name; ``remote_id`` is None (spec fields have no id).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from ._http import ApiTransport, clean_text, log
from .models import EndpointSettings, FetchedCredential, VcfError, text_of

SDDCS_PATH = "/v1/sddcs"


class InstallerClient:
    """Reads deployment passwords from one VCF Installer; context manager or close()."""

    source = "installer"

    def __init__(self, settings: EndpointSettings, session: requests.Session | None = None):
        self.settings = settings
        self._api = ApiTransport(self.source, settings, session)

    def __enter__(self) -> InstallerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the HTTP session and forget the tokens."""
        self._api.close()

    def sddc_ids(self) -> list[str]:
        """Return the ids of the deployment tasks the installer lists."""
        body = self._api.get_json(SDDCS_PATH)
        if not isinstance(body, dict) or not isinstance(body.get("elements"), list):
            raise VcfError("malformed", "/v1/sddcs is not a list of deployments")
        ids = []
        for index, task in enumerate(body["elements"]):
            task_id = task.get("id") if isinstance(task, dict) else None
            if not isinstance(task_id, str) or not task_id:
                raise VcfError("malformed", f"deployment {index} in /v1/sddcs has no id")
            ids.append(task_id)
        return ids

    def fetch_spec(self, sddc_id: str) -> dict[str, Any]:
        """Return the SddcSpec of one deployment (VcfError not_found if it has none)."""
        path = f"{SDDCS_PATH}/{quote(sddc_id, safe='')}/spec"
        spec = self._api.get_json(path)
        if not isinstance(spec, dict):
            raise VcfError("malformed", "the deployment spec is not a JSON object")
        return spec

    def fetch_credentials(self) -> list[FetchedCredential]:
        """Return the passwords of every deployment whose spec the installer still has."""
        ids = self.sddc_ids()
        results: list[FetchedCredential] = []
        found = 0
        for sddc_id in ids:
            try:
                spec = self.fetch_spec(sddc_id)
            except VcfError as exc:
                if exc.kind != "not_found":
                    raise
                log.warning("installer: deployment %s has no spec; skipped", clean_text(sddc_id))
                continue
            found += 1
            results.extend(credentials_from_spec(spec))
        if ids and not found:
            raise VcfError("not_found", "none of the installer's deployments has a spec")
        return results

    def probe(self) -> int:
        """Log in, list deployments and count the passwords in the first spec."""
        ids = self.sddc_ids()
        if not ids:
            return 0
        return len(credentials_from_spec(self.fetch_spec(ids[0])))

    @property
    def certificate_sha256(self) -> str | None:
        """The fingerprint seen during the last TLS failure, if any."""
        return self._api.last_certificate_sha256


def credentials_from_spec(spec: dict[str, Any]) -> list[FetchedCredential]:
    """Extract every password of an ``SddcSpec`` (see the module docstring for the mapping)."""
    out = _SpecReader(spec)
    out.esxi_hosts()
    out.vcenter()
    out.nsx()
    out.sddc_manager()
    out.operations()
    out.simple("vcfOperationsCollectorSpec", "VCF_OPS_CLOUD_PROXY", [("rootUserPassword", "root")])
    out.simple(
        "vcfOperationsFleetManagementSpec",
        "VRSLCM",
        [("rootUserPassword", "root"), ("adminUserPassword", "admin")],
    )
    out.simple("vcfAutomationSpec", "VRA", [("adminUserPassword", "admin")])
    out.vsp()
    return out.results


# (credential_type, account_type) per kind of account.
_OS_ROOT = ("SSH", "USER")
_WEB_ADMIN = ("API", "USER")


class _SpecReader:
    def __init__(self, spec: dict[str, Any]) -> None:
        if not isinstance(spec, dict):
            raise VcfError("malformed", "the deployment spec is not a JSON object")
        self.spec = spec
        dns = _obj(spec.get("dnsSpec"))
        self.subdomain = text_of(dns.get("subdomain"))
        sddc_id = text_of(spec.get("sddcId"))
        self.domains: tuple[str, ...] = (sddc_id,) if sddc_id else ()
        self.results: list[FetchedCredential] = []

    def fqdn(self, name: str | None) -> str | None:
        if name and "." not in name and self.subdomain:
            return f"{name}.{self.subdomain.lstrip('.')}"
        return name

    def add(
        self,
        field_path: str,
        hostname: str | None,
        username: str,
        password: Any,
        resource_type: str,
        kinds: tuple[str, str],
    ) -> None:
        if password is None or password == "":
            return
        if not isinstance(password, str):
            raise VcfError("malformed", f"{field_path} is not a string")
        host = self.fqdn(hostname)
        if not host:
            raise VcfError("malformed", f"{field_path} is set but its host name is missing")
        self.results.append(
            FetchedCredential(
                source="installer",
                hostname=host,
                username=username,
                password=password,
                credential_type=kinds[0],
                account_type=kinds[1],
                resource_type=resource_type,
                domain_names=self.domains,
            )
        )

    def esxi_hosts(self) -> None:
        hosts = self.spec.get("hostSpecs")
        if not isinstance(hosts, list):
            return
        for index, host in enumerate(hosts):
            host = _obj(host)
            creds = host.get("credentials")
            # Seen as one object on 9.0; a list is accepted too in case a release changes it.
            entries = creds if isinstance(creds, list) else [creds]
            for entry in entries:
                entry = _obj(entry)
                self.add(
                    f"hostSpecs[{index}].credentials.password",
                    text_of(host.get("hostname")),
                    text_of(entry.get("username")) or "root",
                    entry.get("password"),
                    "ESXI",
                    _OS_ROOT,
                )

    def vcenter(self) -> None:
        vc = _obj(self.spec.get("vcenterSpec"))
        host = text_of(vc.get("vcenterHostname"))
        self.add(
            "vcenterSpec.rootVcenterPassword",
            host,
            "root",
            vc.get("rootVcenterPassword"),
            "VCENTER",
            _OS_ROOT,
        )
        sso_user = text_of(vc.get("adminUserSsoUsername"))
        if not sso_user:
            sso_user = f"administrator@{text_of(vc.get('ssoDomain')) or 'vsphere.local'}"
        self.add(
            "vcenterSpec.adminUserSsoPassword",
            host,
            sso_user,
            vc.get("adminUserSsoPassword"),
            "PSC",
            ("SSO", "SYSTEM"),
        )

    def nsx(self) -> None:
        nsx = _obj(self.spec.get("nsxtSpec"))
        if not nsx:
            return
        names: list[str] = []
        managers = nsx.get("nsxtManagers")
        for manager in managers if isinstance(managers, list) else []:
            name = self.fqdn(text_of(_obj(manager).get("hostname")))
            if name and name not in names:
                names.append(name)
        vip = self.fqdn(text_of(nsx.get("vipFqdn")))
        if vip and vip not in names:
            names.append(vip)
        accounts = [
            ("rootNsxtManagerPassword", "root", _OS_ROOT),
            ("nsxtAdminPassword", "admin", _WEB_ADMIN),
            ("nsxtAuditPassword", "audit", ("AUDIT", "USER")),
        ]
        for key, user, kinds in accounts:
            password = nsx.get(key)
            if password in (None, ""):
                continue
            if not names:
                raise VcfError("malformed", f"nsxtSpec.{key} is set but no NSX host is named")
            for name in names:
                self.add(f"nsxtSpec.{key}", name, user, password, "NSXT_MANAGER", kinds)

    def sddc_manager(self) -> None:
        sm = _obj(self.spec.get("sddcManagerSpec"))
        host = text_of(sm.get("hostname"))
        for key, user, kinds in (
            ("rootPassword", "root", _OS_ROOT),
            ("sshPassword", "vcf", _OS_ROOT),
            ("localUserPassword", "admin@local", _WEB_ADMIN),
        ):
            self.add(f"sddcManagerSpec.{key}", host, user, sm.get(key), "SDDC_MANAGER", kinds)

    def operations(self) -> None:
        ops = _obj(self.spec.get("vcfOperationsSpec"))
        if not ops:
            return
        raw_nodes = ops.get("nodes")
        nodes = [_obj(n) for n in raw_nodes] if isinstance(raw_nodes, list) else []
        master = next((n for n in nodes if text_of(n.get("type")) == "master"), None)
        first = master or (nodes[0] if nodes else {})
        admin_host = text_of(ops.get("loadBalancerFqdn")) or text_of(first.get("hostname"))
        self.add(
            "vcfOperationsSpec.adminUserPassword",
            admin_host,
            "admin",
            ops.get("adminUserPassword"),
            "VROPS",
            _WEB_ADMIN,
        )
        for index, node in enumerate(nodes):
            self.add(
                f"vcfOperationsSpec.nodes[{index}].rootUserPassword",
                text_of(node.get("hostname")),
                "root",
                node.get("rootUserPassword"),
                "VROPS",
                _OS_ROOT,
            )

    def simple(self, key: str, resource_type: str, fields: list[tuple[str, str]]) -> None:
        part = _obj(self.spec.get(key))
        for field_name, user in fields:
            kinds = _OS_ROOT if user == "root" else _WEB_ADMIN
            self.add(
                f"{key}.{field_name}",
                text_of(part.get("hostname")),
                user,
                part.get(field_name),
                resource_type,
                kinds,
            )

    def vsp(self) -> None:
        vsp = _obj(self.spec.get("vspClusterSpec"))
        host = text_of(vsp.get("platformFqdn"))
        password = vsp.get("systemUserPassword")
        self.add(
            "vspClusterSpec.systemUserPassword",
            host,
            "vmware-system-user",
            password,
            "VSP",
            _OS_ROOT,
        )
        self.add(
            "vspClusterSpec.systemUserPassword",
            host,
            "admin@vsp.local",
            password,
            "VSP",
            _WEB_ADMIN,
        )


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
