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
