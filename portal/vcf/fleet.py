"""VCF Operations fleet management (VCF 9) client: the management appliances' passwords.

On VCF 9 SDDC Manager no longer lists VCF Operations, Operations for Logs and for Networks,
VCF Automation, the Identity Broker, the fleet management appliance or cloud proxies
(../shared/vcf-api/VCF9-FLEET.md section 1). Fleet management holds them, behind one of two
surfaces; which one answers is detected, never asked:

- **9.1, fleet password management** (VCF Operations): ``POST /suite-api/api/auth/token/acquire``
  ``{username, password, authSource}`` gives an ``OpsToken``; ``POST
  /suite-api/api/auth/token/exchange {"serviceKeys": ["fleet-lcm"]}`` turns it into the Bearer
  token the fleet paths take (an OpsToken alone was refused there in one lab; where the
  exchange is not offered, the OpsToken is used). ``POST
  /suite-api/api/fleet-management/password-management/accounts/query`` (query ``page``,
  ``pageSize``; body filters) lists ``VcfPasswordAccountResponse`` objects: appliance, FQDN,
  user, types, status and expiry, but no value. The values come from the locker below, matched
  by ``passwordAlias``; without the locker decryption password the accounts are listed
  without a value.
- **9.0, the fleet management locker** (inherited from Aria Suite Lifecycle), HTTP Basic:
  ``GET /lcm/locker/api/passwords`` (query ``from``, ``size``; ``{total, passwords[]}``, values
  masked), then ``POST /lcm/locker/api/v2/passwords/{vmid}/decrypted {"rootPassword": …}``
  per entry, with the fleet appliance's root password.

The first ``token/acquire`` decides: 404 (no VCF Operations there) means the 9.0 locker, when
the locker answers; once 9.1 has answered (the endpoint keeps ``api_detected``), a 404 there
fails the sync rather than switching to the locker.
``authSource`` is ``localItem`` on 9.1 and ``local`` on 9.0; the other is tried after a 401.

Mapping to FetchedCredential: resource_type = the fleet appliance type (9.1 ``appliance``;
9.0 read from the locker entry's alias and description, see ``appliance_from_text``), hostname
= the appliance FQDN, ``expiry_status`` = the fleet ``status`` (ACTIVE, EXPIRING, EXPIRED,
UNKNOWN), ``expiry_date`` = ISO 8601 of ``expiryDate`` (epoch ms), ``remote_id`` =
``passwordAccountKey`` (9.1) or the locker ``vmid`` (9.0). The paths and shapes come from
published data structures and third-party notes (VCF9-FLEET.md sections 2-3), not from a
tested appliance; unknown values pass through. What an account's fields say (types, hosts,
dates) is read in fleet_accounts.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from ._fleet_http import BasicTransport, OpsTransport, token_in
from ._http import clean_text, log
from .fleet_accounts import (
    appliance_from_text,
    credential_type,
    expiry_iso,
    fqdn_from_text,
    stamp,
)
from .models import EndpointSettings, FetchedCredential, VcfError, text_of
from .paging import PageCheck, reported_int

ACCOUNTS_QUERY_PATH = "/suite-api/api/fleet-management/password-management/accounts/query"
ACCOUNTS_PATH = "/suite-api/api/fleet-management/password-management/accounts"
WORKFLOW_PATH = "/suite-api/api/workflows/requests"
LOCKER_PATH = "/lcm/locker/api/passwords"
DECRYPT_PATH = "/lcm/locker/api/v2/passwords/{vmid}/decrypted"

API_91 = "VCF 9.1 fleet password management"
API_90 = "VCF 9.0 fleet management locker"

# The error_code of the locker's refusal of the decryption password (fails the source).
DECRYPTION_REFUSED = "LOCKER_DECRYPTION_PASSWORD_REFUSED"

# Transport failures after which a request was certainly not sent.
NOT_SENT = ("tls", "dns", "refused")

PAGE_SIZE = 200
MAX_PAGES = 1000  # 200,000 accounts: a server that never ends its pages stops here


class FleetClient:
    """Reads the management appliances' accounts from VCF Operations fleet management;
    context manager or close(). ``api_detected`` says which API answered, once one has."""

    source = "fleet"

    def __init__(
        self,
        settings: EndpointSettings,
        locker_password: str | None = None,
        session: requests.Session | None = None,
        api_detected: str | None = None,
    ) -> None:
        self.settings = settings
        # Which API answered at the last sync (the endpoint's api_detected): 9.1 is sticky.
        self._known = api_detected
        self._locker_password = locker_password or None
        self._ops = OpsTransport(settings, session)
        self._locker = BasicTransport(settings, session)
        self.api_detected: str | None = None
        # How many values the locker decrypted with the root password (audited by the caller).
        self.decryptions = 0
        # What the caller should tell the operator about an incomplete answer.
        self.notes: list[str] = []
        self._ambiguous: set[str] = set()

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the HTTP sessions and forget the tokens."""
        self._ops.close()
        self._locker.close()

    @property
    def certificate_sha256(self) -> str | None:
        """The fingerprint seen during the last TLS failure, if any."""
        return self._ops.last_certificate_sha256 or self._locker.last_certificate_sha256

    # -- detection -----------------------------------------------------------------------

    def detect(self) -> str:
        """Which API this fleet management offers (API_91 or API_90); logs in to it.

        Sticky: once 9.1 has answered (``known``, the endpoint's stored ``api_detected``), a
        404 on ``token/acquire`` fails instead of switching to 9.0 (which would change every
        account's key and expiry). 9.0 is chosen only when the locker answers too.
        """
        if self.api_detected is None:
            self.api_detected = self._detect()
        return self.api_detected

    def _detect(self) -> str:
        try:
            with self._ops._token_lock:
                self._ops._ensure_token()
            return API_91
        except VcfError as exc:
            if exc.kind != "not_found":
                raise
        if self._known == API_91:
            raise VcfError(
                "not_found",
                f"VCF Operations {self._where} answered HTTP 404 to the token request although "
                f"it answered as {API_91} before: the sync stopped and nothing stored was "
                "changed. If this fleet management really moved to another host or release, "
                "edit the endpoint's host or port: that clears the API detected, and the next "
                "sync detects it again.",
                status=404,
            )
        try:
            self._locker_page(0, 0, 1)
        except VcfError as exc:
            if exc.kind != "not_found":
                raise
            raise VcfError(
                "not_found",
                f"{self._where} answers neither as VCF Operations (token request) nor as the "
                "fleet management locker (HTTP 404): check the endpoint's host and port",
                status=404,
            ) from None
        log.info("fleet %s: no VCF Operations API; reading the 9.0 locker", self._where)
        return API_90

    @property
    def _where(self) -> str:
        return f"{clean_text(self.settings.host, 120)}:{self.settings.port}"

    # -- 9.1 fleet password management ---------------------------------------------------

    def password_accounts(self, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every account fleet password management lists (``VcfPasswordAccountResponse``)."""
        check = PageCheck(
            "the password accounts", "passwordAccountKey", "fleet password management", "accounts"
        )
        return self._pages(
            lambda page, _start, size: self._accounts_page(page, size, filters),
            check,
            "passwordAccountKey",
        )

    def _accounts_page(
        self, page: int, size: int, filters: dict[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        body = self._ops.request_json(
            "POST",
            ACCOUNTS_QUERY_PATH,
            params={"page": str(page), "pageSize": str(size)},
            json_body=filters or {},
        )
        if not isinstance(body, dict) or not isinstance(body.get("vcfPasswordAccounts"), list):
            raise VcfError("malformed", "the password accounts answer is not a list of accounts")
        items = body["vcfPasswordAccounts"]
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise VcfError("malformed", f"password account {index} is not an object")
        info = body.get("pageInfo")
        return items, reported_int(info.get("totalCount")) if isinstance(info, dict) else None

    def _pages(
        self,
        read_page: Callable[[int, int, int], tuple[list[dict[str, Any]], int | None]],
        check: PageCheck,
        id_key: str,
    ) -> list[dict[str, Any]]:
        """Every item of a paged listing, checked page by page (paging.PageCheck): a
        repeated or incomplete listing is refused, never taken for a complete one."""
        items: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            chunk, total = read_page(page, len(items), PAGE_SIZE)
            check.add(page, [text_of(item.get(id_key)) for item in chunk], total)
            items.extend(chunk)
            if check.ended(len(chunk), PAGE_SIZE):
                check.complete()
                return items
        raise VcfError("malformed", f"{check.listing} did not end after {MAX_PAGES} pages")

    def update_password(
        self, account_key: str, current_password: str, new_password: str, username: str | None
    ) -> str:
        """Start a password update of one account (9.1); returns the workflow request id."""
        spec: dict[str, Any] = {"currentPassword": current_password, "newPassword": new_password}
        if username:
            spec["userName"] = username
        body = self._ops.request_json(
            "PUT",
            f"{ACCOUNTS_PATH}/{quote(account_key, safe='')}/password",
            json_body=spec,
            secrets=(current_password, new_password),
        )
        request_id = token_in(body, ("requestId", "id")) if isinstance(body, dict) else None
        if request_id is None:
            raise VcfError("malformed", "the password update answer names no workflow request")
        return request_id

    def workflow(self, request_id: str) -> dict[str, Any]:
        """The state of a workflow request (``status``: IN_PROGRESS, COMPLETED, FAILED, …)."""
        body = self._ops.get_json(f"{WORKFLOW_PATH}/{quote(request_id, safe='')}")
        if not isinstance(body, dict):
            raise VcfError("malformed", "the workflow request is not a JSON object")
        return body

    # -- the locker (9.0, and the values on 9.1) -----------------------------------------

    def locker_entries(self) -> list[dict[str, Any]]:
        """Every locker entry (values masked): vmid, alias, userName, description, tenant."""
        check = PageCheck(
            "the locker's list", "locker vmid", "the fleet management locker", "entries"
        )
        return self._pages(self._locker_page, check, "vmid")

    def _locker_page(
        self, _page: int, start: int, size: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        body = self._locker.get_json(LOCKER_PATH, params={"from": str(start), "size": str(size)})
        if not isinstance(body, dict) or not isinstance(body.get("passwords"), list):
            raise VcfError("malformed", "the locker's answer is not a list of passwords")
        items = body["passwords"]
        for index, item in enumerate(items):
            vmid = item.get("vmid") if isinstance(item, dict) else None
            if not isinstance(vmid, str) or not vmid.strip():
                raise VcfError("malformed", f"locker entry {start + index} has no vmid")
        return items, reported_int(body.get("total"))

    def decrypt(self, vmid: str) -> str:
        """One locker value in clear, decrypted with the fleet appliance's root password."""
        if not self._locker_password:
            raise VcfError(
                "auth",
                "the locker decryption password (the fleet appliance's root password) "
                "is not set for this fleet management endpoint",
            )
        path = DECRYPT_PATH.format(vmid=quote(vmid, safe=""))
        sent = True
        try:
            body = self._locker.request_json(
                "POST",
                path,
                json_body={"rootPassword": self._locker_password},
                secrets=(self._locker_password,),
            )
        except VcfError as exc:
            # Only the decryption's own refusal (HTTP 400) means a wrong decryption password;
            # a 403 is the account's, told as such by the transport.
            if exc.kind == "rejected":
                raise VcfError(
                    "auth",
                    f"fleet management {self._where} refused the locker decryption password "
                    "(the fleet appliance's root password): nothing was changed; enter the "
                    "current root password of the fleet appliance",
                    status=exc.status,
                    error_code=DECRYPTION_REFUSED,
                ) from None
            # No connection, no name, no TLS: the password never left (nothing to audit).
            sent = exc.kind not in NOT_SENT
            raise
        finally:
            if sent:
                self.decryptions += 1
        value = body.get("password") if isinstance(body, dict) else None
        if not isinstance(value, str):
            raise VcfError("malformed", "the locker's decrypted answer holds no password")
        return value

    # -- fetching ------------------------------------------------------------------------

    def fetch_credentials(self) -> list[FetchedCredential]:
        """Every management appliance account with its password (see the module docstring)."""
        if self.detect() == API_91:
            return self._fetch_91()
        return self._fetch_90()

    def _fetch_90(self) -> list[FetchedCredential]:
        entries = self.locker_entries()
        if entries and not self._locker_password:
            raise VcfError(
                "auth",
                "the fleet management locker (VCF 9.0) needs the fleet appliance's root "
                "password to decrypt its entries: set the locker decryption password",
            )
        results = []
        for entry in entries:
            alias = text_of(entry.get("alias"))
            description = text_of(entry.get("passwordDescription")) or text_of(
                entry.get("description")
            )
            username = text_of(entry.get("userName")) or text_of(entry.get("username")) or ""
            host = fqdn_from_text(alias, description) or alias or self.settings.host
            appliance = appliance_from_text(alias, description)
            results.append(
                FetchedCredential(
                    source="fleet",
                    hostname=host,
                    username=username,
                    password=self.decrypt(entry["vmid"]),
                    credential_type=credential_type(username),
                    account_type="USER",
                    resource_type=appliance,
                    domain_names=(),
                    remote_id=entry["vmid"],
                    modified_at=stamp(entry.get("lastUpdated")),
                )
            )
        return results

    def _fetch_91(self) -> list[FetchedCredential]:
        accounts = self.password_accounts()
        values: dict[str, str] = {}
        if accounts and self._locker_password:
            wanted = {a for a in (text_of(x.get("passwordAlias")) for x in accounts) if a}
            values = self._values_by_alias(wanted)
        elif accounts:
            self.notes.append(
                "fleet password management lists no values: set the locker decryption "
                "password to read them"
            )
        results = []
        missing = 0
        for index, account in enumerate(accounts):
            host = text_of(account.get("applianceFqdn"))
            username = text_of(account.get("userName"))
            if not host or username is None:
                raise VcfError("malformed", f"password account {index} has no FQDN or user name")
            alias = text_of(account.get("passwordAlias"))
            password = values.get(alias) if alias else None
            if password is None and values and alias not in self._ambiguous:
                missing += 1
            domain = text_of(account.get("vcfDomainId"))
            results.append(
                FetchedCredential(
                    source="fleet",
                    hostname=host,
                    username=username,
                    password=password,
                    credential_type=credential_type(username, account.get("credentialType")),
                    account_type=text_of(account.get("accountType")) or "",
                    resource_type=text_of(account.get("appliance")) or "UNKNOWN",
                    resource_id=text_of(account.get("applianceOpsResourceId")),
                    domain_names=(domain,) if domain else (),
                    remote_id=text_of(account.get("passwordAccountKey")),
                    modified_at=stamp(account.get("lastPasswordUpdateTimestamp")),
                    expiry_date=expiry_iso(account.get("expiryDate")),
                    expiry_status=text_of(account.get("status")),
                )
            )
        if missing:
            self.notes.append(f"{missing} accounts have no entry in the locker: no value read")
        return results

    def _values_by_alias(self, wanted: set[str]) -> dict[str, str]:
        """The locker's values of the aliases `wanted` (9.1: password management names its
        accounts' values by alias); an alias that several entries share gets no value."""
        try:
            vmids: dict[str, set[str]] = {}
            for entry in self.locker_entries():
                alias = text_of(entry.get("alias"))
                if alias in wanted:
                    vmids.setdefault(alias, set()).add(entry["vmid"])
            ambiguous = sorted(alias for alias, found in vmids.items() if len(found) > 1)
            self._ambiguous = set(ambiguous)
            if ambiguous:
                shown = ", ".join(clean_text(a, 80) for a in ambiguous[:3])
                more = f" and {len(ambiguous) - 3} more" if len(ambiguous) > 3 else ""
                self.notes.append(
                    f"{len(ambiguous)} aliases name several locker entries ({shown}{more}): "
                    "no value read for them"
                )
            # Only the aliases the accounts name, each once: the root password is used as
            # little as possible.
            return {
                alias: self.decrypt(next(iter(found)))
                for alias, found in sorted(vmids.items())
                if len(found) == 1
            }
        except VcfError as exc:
            if exc.error_code == DECRYPTION_REFUSED:
                raise  # a wrong decryption password fails the source: nothing is changed
            # The accounts' status and expiry are still stored; no stored value changes.
            if exc.kind == "not_found":
                self.notes.append("the locker did not answer (HTTP 404): no values read")
            else:
                self.notes.append(
                    f"the fleet management locker at {self._where} failed ({exc}): no values "
                    "read, the stored passwords are unchanged"
                )
            return {}

    def probe(self) -> int | None:
        """Log in (detecting the API) and read one page of one item: the number of accounts
        or locker entries reported (None when the page reports none)."""
        if self.detect() == API_91:
            items, total = self._accounts_page(0, 1)
        else:
            items, total = self._locker_page(0, 0, 1)
        return total if total is not None else (None if items else 0)
