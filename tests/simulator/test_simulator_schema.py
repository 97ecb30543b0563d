"""Simulator responses validated against the official OpenAPI schemas (shared/vcf-api)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from support import update_spec as _update_spec

from portal.simulator import Simulator

API_DIR = Path(__file__).resolve().parents[3] / "shared" / "vcf-api"
MANAGER_91 = "subset-sddc-manager-tokens-credentials-9.1.0.0.json"
MANAGER_521 = "subset-sddc-manager-tokens-credentials-5.2.1.json"
INSTALLER_91 = "subset-vcf-installer-tokens-sddcs-9.1.0.0.json"
INSTALLER_90 = "vcf-installer-openapi-9.0.2.0.vcf-sdk-go.json"

if not (API_DIR / MANAGER_91).is_file():
    pytest.skip(
        f"the shared API specs are not at {API_DIR} (clone shared/ beside the repository)",
        allow_module_level=True,
    )


def _closed(node):
    """Copy of an OpenAPI document where objects with properties allow no other keys.

    The simulator must not invent fields the spec does not know; real servers may.
    """
    if isinstance(node, dict):
        out = {key: _closed(value) for key, value in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node


_DOCS: dict[str, Registry] = {}


def validator(document: str, schema: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<schema>`` of one spec file."""
    if document not in _DOCS:
        contents = _closed(json.loads((API_DIR / document).read_text(encoding="utf-8")))
        resource = Resource.from_contents(contents, default_specification=DRAFT202012)
        _DOCS[document] = Registry().with_resource(f"urn:vcf:{document}", resource)
    ref = {"$ref": f"urn:vcf:{document}#/components/schemas/{schema}"}
    return Draft202012Validator(ref, registry=_DOCS[document])


def assert_valid(body, document: str, schema: str) -> None:
    """Fail with every schema error found."""
    errors = sorted(validator(document, schema).iter_errors(body), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message[:200]}" for e in errors[:20])


@pytest.fixture(scope="module")
def sim():
    """A simulator with hostile data, so odd strings are checked against the schemas too."""
    with Simulator(credentials=1200, seed=11, hostile=True) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def http(sim, tmp_path_factory):
    """A requests session that trusts the simulator's CA."""
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_text(sim.ca_pem, encoding="ascii")
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify
    session.verify = str(ca)
    yield session
    session.close()


def _login(sim, http, username=None, password=None):
    response = http.post(
        f"{sim.url}/v1/tokens",
        json={
            "username": username or sim.admin_username,
            "password": password or sim.admin_password,
        },
    )
    return response


@pytest.fixture(scope="module")
def headers(sim, http):
    """Authorization header of an admin session."""
    token = _login(sim, http).json()["accessToken"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("document", [MANAGER_91, MANAGER_521, INSTALLER_91])
def test_token_pair(sim, http, document):
    response = _login(sim, http)
    assert response.status_code == 200
    assert_valid(response.json(), document, "TokenPair")


def test_refresh_response_is_a_string(sim, http):
    refresh_id = _login(sim, http).json()["refreshToken"]["id"]
    response = http.patch(
        f"{sim.url}/v1/tokens/access-token/refresh",
        data=json.dumps(refresh_id),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert isinstance(response.json(), str)


@pytest.mark.parametrize("document", [MANAGER_91, MANAGER_521])
def test_credentials_pages(sim, http, headers, document):
    for params in (
        {"pageSize": "500", "pageNumber": "0"},
        {"pageSize": "500", "pageNumber": "2"},
        {},
    ):
        response = http.get(f"{sim.url}/v1/credentials", params=params, headers=headers)
        assert response.status_code == 200
        assert_valid(response.json(), document, "PageOfCredential")


def test_single_credential(sim, http, headers):
    credential_id = sim.credentials_snapshot()[5]["id"]
    response = http.get(f"{sim.url}/v1/credentials/{credential_id}", headers=headers)
    assert response.status_code == 200
    assert_valid(response.json(), MANAGER_91, "Credential")
    assert_valid(response.json(), MANAGER_521, "Credential")


def _error_responses(sim, http, headers):
    url = sim.url
    yield _login(sim, http, password="wrong-password-1")
    yield http.post(f"{url}/v1/tokens", data=b"{not json", headers={"Content-Type": "x"})
    yield http.get(f"{url}/v1/credentials")
    yield http.get(f"{url}/v1/credentials", headers={"Authorization": "Bearer a.b.c"})
    yield http.get(f"{url}/v1/credentials", params={"pageSize": "-1"}, headers=headers)
    yield http.get(f"{url}/v1/credentials/no-such-id", headers=headers)
    yield http.patch(f"{url}/v1/tokens/access-token/refresh", data=b'"unknown"')
    yield http.get(f"{url}/v1/sddcs/123e4567-e89b-42d3-a456-556642440000", headers=headers)
    yield http.get(f"{url}/v1/nothing-here", headers=headers)
    operator = _login(sim, http, sim.operator_username, sim.operator_password).json()
    yield http.get(
        f"{url}/v1/credentials",
        headers={"Authorization": f"Bearer {operator['accessToken']}"},
    )
    sim.inject_failure("500", path_prefix="/v1/credentials")
    yield http.get(f"{url}/v1/credentials", headers=headers)


@pytest.mark.parametrize("document", [MANAGER_91, INSTALLER_91])
def test_error_bodies(sim, http, headers, document):
    statuses = []
    for response in _error_responses(sim, http, headers):
        statuses.append(response.status_code)
        body = response.json()
        assert_valid(body, document, "Error")
        assert body["errorCode"] and body["message"]
        if response.status_code >= 500:
            assert body["referenceToken"]
    assert statuses == [401, 400, 401, 401, 400, 404, 404, 404, 404, 403, 500]


def test_sddc_task_page_and_task(sim, http, headers):
    page = http.get(f"{sim.url}/v1/sddcs", headers=headers).json()
    assert_valid(page, INSTALLER_91, "PageOfSddcTask")
    latest = http.get(f"{sim.url}/v1/sddcs/latest", headers=headers).json()
    assert_valid(latest, INSTALLER_91, "SddcTask")
    task = http.get(f"{sim.url}/v1/sddcs/{sim.sddc_id}", headers=headers).json()
    assert_valid(task, INSTALLER_91, "SddcTask")
    assert task == latest == page["elements"][0]


def test_sddc_spec_91(sim, http, headers):
    response = http.get(f"{sim.url}/v1/sddcs/{sim.sddc_id}/spec", headers=headers)
    assert response.status_code == 200
    assert_valid(response.json(), INSTALLER_91, "SddcSpec")
    assert "vspClusterSpec" in response.json()


def test_sddc_spec_90_against_the_90_spec(tmp_path):
    if not (API_DIR / INSTALLER_90).is_file():
        pytest.skip(f"{INSTALLER_90} is missing")
    with Simulator(credentials=10, installer_version="9.0") as old:
        spec = old.installer_spec()
        task = copy.deepcopy(old.sddc_id)
    assert task
    assert_valid(spec, INSTALLER_90, "SddcSpec")
    assert "vcfOperationsFleetManagementSpec" in spec and "vspClusterSpec" not in spec


def test_the_validator_is_not_vacuous():
    bad_page = {"elements": [{"id": 1, "resource": {}}], "pageMetadata": {"pageNumber": "0"}}
    assert len(list(validator(MANAGER_91, "PageOfCredential").iter_errors(bad_page))) >= 3
    assert list(validator(INSTALLER_91, "SddcSpec").iter_errors({"sddcId": "x"}))
    assert list(validator(MANAGER_91, "Credential").iter_errors({"unknownField": 1}))


# -- credential lifecycle (PATCH /v1/credentials, tasks, expirations) ---------------------

MANAGER_91_FULL = "sddc-manager-openapi-9.1.0.0.json"


def _by_type(sim, rtype, username, n):
    found, names = [], set()
    for element in sim.credentials_snapshot():
        name = element["resource"]["resourceName"]
        if (
            element["resource"]["resourceType"] == rtype
            and element["username"] == username
            and name not in names
        ):
            found.append(element)
            names.add(name)
    return found[:n]


@pytest.fixture(scope="module")
def lifecycle(sim, http, headers):
    """Every kind of lifecycle response, collected once: (schema, body) pairs."""
    url = sim.url
    collected = []

    def keep(schema, response, status):
        assert response.status_code == status, (response.status_code, response.text[:300])
        collected.append((schema, response.json()))
        return response.json()

    ok, failing, cancelled, updated = _by_type(sim, "ESXI", "root", 4)
    (vcenter,) = _by_type(sim, "VCENTER", "root", 1)
    (nsx,) = _by_type(sim, "NSXT_MANAGER", "admin", 1)
    failing_name = failing["resource"]["resourceName"]
    sim.inject_credential_fault(failing_name, "fail", message="boom", count=1)
    sim.inject_credential_fault(cancelled["resource"]["resourceName"], "fail", message="boom")
    specs = [
        _update_spec("ROTATE", [ok, failing]),
        _update_spec("ROTATE", [cancelled]),
        _update_spec("UPDATE", [updated], "N3w-Passw0rd!x"),
        _update_spec("REMEDIATE", [nsx], "Rem3diated!pw"),
        _update_spec(
            "UPDATE_AUTO_ROTATE_POLICY",
            [vcenter],
            autoRotatePolicy={"enableAutoRotatePolicy": True, "frequencyInDays": 30},
        ),
    ]
    collected += [("CredentialsUpdateSpec", spec) for spec in specs]
    tasks = [
        keep("Task", http.patch(f"{url}/v1/credentials", json=spec, headers=headers), 202)
        for spec in specs
    ]
    first, second = tasks[0]["id"], tasks[1]["id"]
    keep("CredentialsTask", http.get(f"{url}/v1/credentials/tasks/{first}", headers=headers), 200)
    sim.settle_tasks()
    for task in tasks:
        view = keep(
            "CredentialsTask",
            http.get(f"{url}/v1/credentials/tasks/{task['id']}", headers=headers),
            200,
        )
        keep("Task", http.get(f"{url}/v1/tasks/{task['id']}", headers=headers), 200)
        assert view["status"] == ("FAILED" if task["id"] in (first, second) else "SUCCESSFUL")
    retry = _update_spec("ROTATE", [failing])
    collected.append(("CredentialsUpdateSpec", retry))
    retried = http.patch(f"{url}/v1/credentials/tasks/{first}", json=retry, headers=headers)
    keep("Task", retried, 202)
    keep("Task", http.delete(f"{url}/v1/credentials/tasks/{second}", headers=headers), 202)
    sim.settle_tasks()
    keep("CredentialsTask", http.get(f"{url}/v1/credentials/tasks/{first}", headers=headers), 200)
    keep("CredentialsTask", http.get(f"{url}/v1/credentials/tasks/{second}", headers=headers), 200)
    keep("PageOfCredentialsTask", http.get(f"{url}/v1/credentials/tasks", headers=headers), 200)
    resource_credentials = http.get(
        f"{url}/v1/credentials/tasks/{first}/resource-credentials", headers=headers
    )
    for item in keep(None, resource_credentials, 200):
        collected.append(("ResourceCredentials", item))
    keep("Credential", http.get(f"{url}/v1/credentials/{vcenter['id']}", headers=headers), 200)
    page = http.get(
        f"{url}/v1/credentials",
        params={"resourceName": vcenter["resource"]["resourceName"]},
        headers=headers,
    )
    assert any("autoRotatePolicy" in e for e in keep("PageOfCredential", page, 200)["elements"])

    sim.inject_credential_fault(ok["resource"]["resourceName"], "fail", "EXPIRATION", "down")
    expiration_specs = [
        {"resourceType": "ESXI"},
        {"resourceType": "VCENTER", "domainName": "sfo-m01"},
        {"resourceType": "PSC", "credentialIds": [sim.credentials_snapshot()[2]["id"]]},
    ]
    collected += [("CredentialsExpirationSpec", spec) for spec in expiration_specs]
    checks = [
        keep(
            "CredentialsExpiration",
            http.post(f"{url}/v1/credentials/expirations", json=spec, headers=headers),
            202,
        )
        for spec in expiration_specs
    ]
    sim.settle_tasks()
    for check in checks:
        done = keep(
            "CredentialsExpiration",
            http.get(f"{url}/v1/credentials/expirations/{check['id']}", headers=headers),
            200,
        )
        assert done["status"] == "COMPLETED"
    keep("PageOfCredential", http.get(f"{url}/v1/credentials", headers=headers), 200)

    sim.task_delay = 60
    try:
        refused = []
        hosts = [
            e
            for e in sim.credentials_snapshot()
            if e["resource"]["resourceType"] == "ESXI" and e["accountType"] == "SERVICE"
        ]
        for element in hosts[:11]:
            response = http.patch(
                f"{url}/v1/credentials", json=_update_spec("ROTATE", [element]), headers=headers
            )
            refused.append(response)
        assert [r.status_code for r in refused] == [202] * 10 + [403]
        keep("Error", refused[-1], 403)
        sim.settle_tasks()
    finally:
        sim.task_delay = 0.2
    sim.inject_credential_fault(updated["resource"]["resourceName"], "inactive", count=1)
    sim.inject_credential_fault(ok["resource"]["resourceName"], "busy", count=1)
    for element in (updated, ok):
        spec = _update_spec("ROTATE", [element])
        keep("Error", http.patch(f"{url}/v1/credentials", json=spec, headers=headers), 400)
    keep("Error", http.patch(f"{url}/v1/credentials", json={}, headers=headers), 400)
    keep("Error", http.get(f"{url}/v1/credentials/tasks/nope", headers=headers), 404)
    keep("Error", http.delete(f"{url}/v1/credentials/tasks/{first}", headers=headers), 400)
    keep("Error", http.get(f"{url}/v1/credentials/expirations/nope", headers=headers), 404)
    sim.inject_failure("429", path_prefix="/v1/credentials/expirations", delay=2)
    limited = http.post(
        f"{url}/v1/credentials/expirations", json={"resourceType": "ESXI"}, headers=headers
    )
    assert limited.headers["Retry-After"] == "2"
    keep("Error", limited, 429)
    sim.clear_failures()
    return [(schema, body) for schema, body in collected if schema is not None]


@pytest.mark.parametrize("document", [MANAGER_91, MANAGER_91_FULL])
def test_lifecycle_bodies_match_the_spec(lifecycle, document):
    if not (API_DIR / document).is_file():
        pytest.skip(f"{document} is missing")
    seen = set()
    for schema, body in lifecycle:
        assert_valid(body, document, schema)
        seen.add(schema)
    assert seen == {
        "CredentialsUpdateSpec",
        "CredentialsExpirationSpec",
        "Task",
        "CredentialsTask",
        "PageOfCredentialsTask",
        "ResourceCredentials",
        "Credential",
        "PageOfCredential",
        "CredentialsExpiration",
        "Error",
    }


def test_passwords_appear_only_where_the_spec_has_them(lifecycle):
    for schema, body in lifecycle:
        text = json.dumps(body)
        if (
            schema == "CredentialsTask"
            and body["status"] == "SUCCESSFUL"
            and body["type"] != "UPDATE_AUTO_ROTATE_POLICY"
        ):
            assert "oldPassword" in text and "newPassword" in text
        if schema not in ("CredentialsTask", "PageOfCredentialsTask", "CredentialsUpdateSpec"):
            assert "oldPassword" not in text and "newPassword" not in text
    schemas = json.loads((API_DIR / MANAGER_91).read_text())["components"]["schemas"]
    assert "newPassword" in schemas["CredentialsSubTask"]["properties"]
    for schema in ("Task", "SubTask", "CredentialsExpiration", "Error", "ResourceCredentials"):
        assert "newPassword" not in json.dumps(schemas[schema])
    task_views = [body for schema, body in lifecycle if schema == "Task"]
    assert task_views and not any(
        _keys(b) & {"password", "oldPassword", "newPassword"} for b in task_views
    )


def _keys(node) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(_keys(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(item) for item in node))
    return set()


def test_the_lifecycle_validator_is_not_vacuous():
    assert list(validator(MANAGER_91, "CredentialsTask").iter_errors({"id": "x"}))
    task = {"id": "x", "name": "n", "status": "S", "creationTimestamp": "t", "oldPassword": "p"}
    assert list(validator(MANAGER_91, "Task").iter_errors(task))
    assert list(validator(MANAGER_91, "CredentialsExpiration").iter_errors({"elements": 1}))
