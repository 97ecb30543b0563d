"""SDDC Manager client: every credential from ``GET /v1/credentials``, page by page.

Tolerances, because the enumerations are documentation text rather than schema enums and
change between releases:

* unknown ``credentialType``/``accountType``/``resourceType``/expiry values are kept as-is;
* a missing ``password`` gives ``password=None``;
* the deprecated ``resource.domainName``/``resource.resourceIp`` may be absent
  (``domainNames`` falls back to ``domainName`` when only the latter is present);
* extra fields are ignored.

What is *not* tolerated, because a partial list must never look complete: a page that is
not ``{"elements": [...]}``, an element without ``username`` or ``resource.resourceName``,
a credential id returned twice, or a final count that disagrees with ``totalElements``.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests

from . import lifecycle
from ._http import ApiTransport
from .models import EndpointSettings, ExpirationCheck, FetchedCredential, VcfError, text_of
from .paging import PageCheck, reported_int

CREDENTIALS_PATH = "/v1/credentials"
TASKS_PATH = "/v1/credentials/tasks"
EXPIRATIONS_PATH = "/v1/credentials/expirations"
PAGE_SIZE = 500
# Pages requested at once after the first: quicker on a large inventory, and still polite to
# SDDC Manager.
CONCURRENT_PAGES = 4
# 2,000 pages of 500 is a million credentials: far beyond any real deployment, and a hard
# stop for a server whose pageMetadata never ends.
MAX_PAGES = 2000


class SddcManagerClient:
    """Reads credentials from one SDDC Manager; use as a context manager or call close()."""

    source = "manager"

    def __init__(self, settings: EndpointSettings, session: requests.Session | None = None):
        self.settings = settings
        self._api = ApiTransport(self.source, settings, session)

    def __enter__(self) -> SddcManagerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the HTTP session and forget the tokens."""
        self._api.close()

    def fetch_credentials(self) -> list[FetchedCredential]:
        """Return every credential SDDC Manager holds, following all pages.

        Once the first page gives the number of pages, the others are read up to
        CONCURRENT_PAGES at a time and checked in order as they arrive.
        """
        pages = _Pages()
        elements, metadata = self._page(0)
        pages.add(0, elements, metadata)
        total_pages = _metadata_int(metadata, "totalPages")
        if not elements:
            return pages.complete()
        if total_pages is not None:
            if total_pages > MAX_PAGES:
                raise VcfError("malformed", f"/v1/credentials did not end after {MAX_PAGES} pages")
            self._read_pages_concurrently(pages, total_pages, metadata)
            return pages.complete()
        # Without pageMetadata a short (or oversized, paging ignored) page is the end.
        page = 0
        while len(elements) == PAGE_SIZE:
            page += 1
            if page >= MAX_PAGES:
                raise VcfError("malformed", f"/v1/credentials did not end after {MAX_PAGES} pages")
            elements, metadata = self._page(page)
            pages.add(page, elements, metadata)
            if not elements:
                break
        return pages.complete()

    def _page(self, page: int) -> tuple[list[Any], dict[str, Any] | None]:
        body = self._api.get_json(
            CREDENTIALS_PATH, {"pageSize": str(PAGE_SIZE), "pageNumber": str(page)}
        )
        return _page_parts(body, page)

    def _read_pages_concurrently(
        self, pages: _Pages, total_pages: int, first: dict[str, Any] | None
    ) -> None:
        # A window of pages in flight keeps memory bounded however many pages there are;
        # with verification off the requests go one at a time (see ApiTransport.may_overlap).
        workers = CONCURRENT_PAGES if self._api.may_overlap else 1
        expected = (_metadata_int(first, "totalElements"), total_pages)
        # Page 1 alone first: a server that ignores pageNumber is caught after one request
        # rather than after a window of them.
        following = iter(range(1, total_pages))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vcf-pages")
        try:
            pending: deque = deque()
            for page in itertools.islice(following, 1):
                pending.append((page, pool.submit(self._page, page)))
            while pending:
                page, future = pending.popleft()
                elements, metadata = future.result()
                reported = (
                    _metadata_int(metadata, "totalElements"),
                    _metadata_int(metadata, "totalPages"),
                )
                if reported != expected:
                    raise VcfError(
                        "malformed",
                        f"page {page} of /v1/credentials reports another total than page 0; "
                        "the list changed while it was read, try again",
                    )
                pages.add(page, elements, metadata)
                if not elements:
                    break
                for more in itertools.islice(following, 2 * workers - len(pending)):
                    pending.append((more, pool.submit(self._page, more)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def probe(self) -> int | None:
        """Log in and read one credential page of size 1; return the reported total."""
        body = self._api.get_json(CREDENTIALS_PATH, {"pageSize": "1", "pageNumber": "0"})
        elements, metadata = _page_parts(body, 0)
        for index, element in enumerate(elements):
            parse_credential(element, 0, index)
        return _metadata_int(metadata, "totalElements")

    @property
    def certificate_sha256(self) -> str | None:
        """The fingerprint seen during the last TLS failure, if any."""
        return self._api.last_certificate_sha256

    # -- credential lifecycle ------------------------------------------------------------
    # Errors: VcfError with kind "rejected" (HTTP 400: error_code says why, e.g.
    # RESOURCE_IS_NOT_IN_ACTIVE_STATE or a task already running for the resource),
    # "rate_limited" (429, or 403 for the 10 concurrent operations; retry_after when given),
    # "forbidden", "not_found", "auth", "server" and the transport kinds. No password that
    # was sent, nor one that came back in a task, appears in a message, a log line or a
    # returned value.

    def update_credentials(
        self,
        operation: str,
        elements: list[dict[str, Any]],
        auto_rotate: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """PATCH /v1/credentials: start UPDATE, ROTATE, REMEDIATE or UPDATE_AUTO_ROTATE_POLICY.

        ``elements`` are ``ResourceCredentials`` objects (``resourceName``, ``resourceType``,
        ``credentials: [{credentialType, username, password?}]``); ``auto_rotate`` is the
        ``autoRotatePolicy`` (``enableAutoRotatePolicy``, ``frequencyInDays``). Returns the
        ``Task`` (``id``, ``status``, ``isCancellable``, ...) without any password. Never
        retried by itself: a lost answer may still have started the operation.
        """
        body = lifecycle.update_spec(operation, elements, auto_rotate)
        secrets = lifecycle.passwords_in(elements)
        answer = self._api.request_json("PATCH", CREDENTIALS_PATH, json_body=body, secrets=secrets)
        return self._task(answer, f"PATCH {CREDENTIALS_PATH}", secrets)

    def credentials_task(self, task_id: str) -> dict[str, Any]:
        """GET /v1/credentials/tasks/{id}: the ``CredentialsTask`` and its sub-tasks, with
        ``oldPassword``/``newPassword`` removed (their values masked in every text)."""
        path = _task_path(task_id)
        return self._task(self._api.get_json(path), f"GET {TASKS_PATH}/{{id}}")

    def credentials_tasks(self, limit: int | None = None) -> list[dict[str, Any]]:
        """GET /v1/credentials/tasks: recent credentials tasks, scrubbed like credentials_task."""
        params = {"limit": str(int(limit))} if limit is not None else None
        body = self._api.get_json(TASKS_PATH, params)
        if not isinstance(body, dict) or not isinstance(body.get("elements"), list):
            raise VcfError("malformed", f"GET {TASKS_PATH} is not a list of tasks")
        return [self._task(task, f"GET {TASKS_PATH}") for task in body["elements"]]

    def retry_credentials_task(
        self,
        task_id: str,
        operation: str | None = None,
        elements: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """PATCH /v1/credentials/tasks/{id}: retry a FAILED task; returns the ``Task``.

        The spec wants a ``CredentialsUpdateSpec`` with the retry: give ``operation`` and
        ``elements`` (with new passwords for an UPDATE or REMEDIATE), or leave them out to
        retry the failed sub-tasks as they were.
        """
        path = _task_path(task_id)
        if operation is None or elements is None:
            body = lifecycle.retry_spec(self.credentials_task(task_id))
        else:
            body = lifecycle.update_spec(operation, elements, None)
        secrets = lifecycle.passwords_in(body["elements"])
        answer = self._api.request_json("PATCH", path, json_body=body, secrets=secrets)
        return self._task(answer, f"PATCH {TASKS_PATH}/{{id}}", secrets)

    def cancel_credentials_task(self, task_id: str) -> dict[str, Any]:
        """DELETE /v1/credentials/tasks/{id}: cancel a FAILED task; returns the ``Task``."""
        answer = self._api.request_json("DELETE", _task_path(task_id))
        return self._task(answer, f"DELETE {TASKS_PATH}/{{id}}")

    def start_expirations(
        self,
        resource_type: str,
        domain_name: str | None = None,
        credential_ids: list[str] | None = None,
    ) -> str:
        """POST /v1/credentials/expirations for one resource type (the spec requires it; see
        lifecycle.EXPIRATION_RESOURCE_TYPES); returns the id to poll with expirations()."""
        body = lifecycle.expiration_spec(resource_type, domain_name, credential_ids)
        answer = self._api.request_json("POST", EXPIRATIONS_PATH, json_body=body)
        check_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(check_id, str) or not check_id:
            raise VcfError("malformed", f"POST {EXPIRATIONS_PATH} answered no id")
        return check_id

    def expirations(self, request_id: str) -> ExpirationCheck:
        """GET /v1/credentials/expirations/{id}: status and, once done, expiry per credential
        (a credential that could not be checked carries its error)."""
        path = f"{EXPIRATIONS_PATH}/{quote(lifecycle.task_id_of(request_id), safe='')}"
        body = self._api.get_json(path)
        return lifecycle.parse_expiration(body, self._api.safe_text)

    def _task(self, body: Any, what: str, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
        def mask(text: str, found: tuple[str, ...]) -> str:
            return self._api.mask(text, (*secrets, *found))

        return lifecycle.scrub_task(body, what, mask)


class _Pages:
    """Credential pages checked in order (paging.PageCheck: no page repeating the one before,
    no id twice, no empty page before the total, as many credentials as the last total)."""

    def __init__(self) -> None:
        self.results: list[FetchedCredential] = []
        self.check = PageCheck(CREDENTIALS_PATH, "credential id", "SDDC Manager", "credentials")
        self.shared: dict = {}

    def add(self, page: int, elements: list[Any], metadata: dict[str, Any] | None) -> None:
        """Check and parse one page."""
        parsed = [
            parse_credential(element, page, index, self.shared)
            for index, element in enumerate(elements)
        ]
        self.check.add(
            page, [c.remote_id for c in parsed], _metadata_int(metadata, "totalElements")
        )
        self.results.extend(parsed)

    def complete(self) -> list[FetchedCredential]:
        """Every credential read, or VcfError when the count disagrees with the total."""
        self.shared.clear()
        self.check.complete()
        return self.results


def parse_credential(
    element: Any, page: int = 0, index: int = 0, shared: dict | None = None
) -> FetchedCredential:
    """Turn one ``Credential`` JSON object into a FetchedCredential (VcfError if unusable).

    `shared` (one dict for a whole fetch) keeps one copy of the values many credentials
    repeat (host names, user names, types, domains): a large inventory takes less memory.
    """
    where = f"credential {index} on page {page}"
    if not isinstance(element, dict):
        raise VcfError("malformed", f"{where} is not a JSON object")
    resource = element.get("resource")
    if not isinstance(resource, dict):
        raise VcfError("malformed", f"{where} has no resource")
    hostname = resource.get("resourceName")
    username = element.get("username")
    if not isinstance(hostname, str) or not hostname:
        raise VcfError("malformed", f"{where} has no resource.resourceName")
    if not isinstance(username, str) or not username:
        raise VcfError("malformed", f"{where} has no username")
    password = element.get("password")
    if password is not None and not isinstance(password, str):
        raise VcfError("malformed", f"{where} has a password that is not a string")
    domain_names = resource.get("domainNames")
    names: tuple[str, ...] = ()
    if isinstance(domain_names, list):
        names = tuple(n for n in domain_names if isinstance(n, str) and n)
    if not names and isinstance(resource.get("domainName"), str) and resource["domainName"]:
        names = (resource["domainName"],)
    expiry = element.get("expiry")
    expiry = expiry if isinstance(expiry, dict) else {}
    policy = element.get("autoRotatePolicy")
    policy = policy if isinstance(policy, dict) else {}
    days = policy.get("frequencyInDays")
    one = (
        (lambda value: value) if shared is None else (lambda value: shared.setdefault(value, value))
    )
    return FetchedCredential(
        source="manager",
        hostname=one(hostname),
        username=one(username),
        password=password,
        credential_type=one(text_of(element.get("credentialType")) or ""),
        account_type=one(text_of(element.get("accountType")) or ""),
        resource_type=one(text_of(resource.get("resourceType")) or ""),
        resource_id=one(text_of(resource.get("resourceId"))),
        resource_ip=one(text_of(resource.get("resourceIp"))),
        domain_names=one(names),
        remote_id=text_of(element.get("id")),
        modified_at=text_of(element.get("modificationTimestamp")),
        expiry_date=text_of(expiry.get("expiryDate")),
        expiry_status=one(text_of(expiry.get("status"))),
        auto_rotate_days=days if isinstance(days, int) and not isinstance(days, bool) else None,
        auto_rotate_next=text_of(policy.get("nextSchedule")),
    )


def _task_path(task_id: str) -> str:
    return f"{TASKS_PATH}/{quote(lifecycle.task_id_of(task_id), safe='')}"


def _page_parts(body: Any, page: int) -> tuple[list[Any], dict[str, Any] | None]:
    if not isinstance(body, dict) or not isinstance(body.get("elements"), list):
        raise VcfError("malformed", f"page {page} of /v1/credentials is not a list of credentials")
    metadata = body.get("pageMetadata")
    return body["elements"], metadata if isinstance(metadata, dict) else None


def _metadata_int(metadata: dict[str, Any] | None, key: str) -> int | None:
    return None if metadata is None else reported_int(metadata.get(key))
