"""The OpenAPI description: every /api/v1 route in it, valid 3.1, and true to real responses."""

from __future__ import annotations

import re

import jsonschema
import pytest
from openapi_spec_validator import validate

from portal.models import Credential, PasswordHistory
from portal.platform.extensions import db

ENDPOINT = {"host": "vcf.example.test", "username": "svc", "password": "pw"}


@pytest.fixture
def document(admin):
    response = admin.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json


def test_description_lists_exactly_the_routes(app, document):
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    }
    assert routes - described == set(), "routes missing from the description"
    assert described - routes == set(), "described operations that do not exist"


def test_description_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_reference_resolves(document):
    text = str(document)
    names = set(re.findall(r"#/components/schemas/(\w+)", text))
    assert names and names <= set(document["components"]["schemas"])


def test_description_documents_parameters_bodies_errors_and_security(document):
    item = document["paths"]["/api/v1/environments/{env_id}"]
    assert item["parameters"][0]["name"] == "env_id"
    assert item["patch"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EnvironmentIn"
    }
    error = {"$ref": "#/components/schemas/Error"}
    for code in ("400", "401", "403", "404", "422"):
        assert item["patch"]["responses"][code]["content"]["application/json"]["schema"] == error
    query = document["paths"]["/api/v1/credentials"]["get"]["parameters"]
    assert {"q", "page", "per_page", "sort", "status"} <= {p["name"] for p in query}
    schemes = document["components"]["securitySchemes"]
    assert schemes["sessionCookie"] == {"type": "apiKey", "in": "cookie", "name": "portal_session"}
    assert schemes["csrfToken"]["name"] == "X-CSRFToken"
    assert schemes["bearerToken"]["scheme"] == "bearer"
    assert item["patch"]["security"] == [
        {"bearerToken": []},
        {"sessionCookie": [], "csrfToken": []},
    ]
    assert item["patch"]["x-token-scope"] == "admin" and item["get"]["x-token-scope"] == "read"
    assert item["patch"]["responses"]["default"]["content"]["application/json"]["schema"] == error
    reveal = document["paths"]["/api/v1/credentials/{cred_id}/reveal"]["post"]
    assert reveal["x-token-scope"] == "reveal" and "429" in reveal["responses"]
    report = document["paths"]["/api/v1/audit/seen.csv"]["get"]["responses"]["200"]
    assert list(report["content"]) == ["text/csv"]
    created = document["paths"]["/api/v1/me/tokens"]["post"]
    assert created["security"] == [{"sessionCookie": [], "csrfToken": []}]  # never by a token


def _check(document, response, path, method):
    """Validate a real response against the schema described for its status."""
    described = document["paths"][path][method]["responses"][str(response.status_code)]
    schema = described["content"]["application/json"]["schema"]
    resolver_doc = {**schema, "components": document["components"]}
    jsonschema.Draft202012Validator(resolver_doc).validate(response.json)


def test_real_responses_match_their_schemas(app, admin, document):
    created = admin.api(
        "POST",
        "/api/v1/environments",
        json={"name": "lab", "manager": ENDPOINT, "fleet": {**ENDPOINT, "locker_password": "r"}},
    )
    _check(document, created, "/api/v1/environments", "post")
    env_id = created.json["id"]
    with app.app_context():
        cred = Credential(
            environment_id=env_id,
            source="manager",
            hostname="esx01.lab",
            username="root",
            credential_type="SSH",
            password_enc=None,
        )
        db.session.add(cred)
        db.session.flush()
        db.session.add(PasswordHistory(credential_id=cred.id, password_enc=b"x", changed_by="SYNC"))
        db.session.commit()
        cred_id = cred.id
    calls = [
        ("get", "/api/v1/environments", None),
        ("get", f"/api/v1/environments/{env_id}", None),
        ("get", f"/api/v1/environments/{env_id}/credentials", None),
        ("get", "/api/v1/credentials?q=esx", None),
        ("get", f"/api/v1/environments/{env_id}/password-age", None),
        ("post", f"/api/v1/credentials/{cred_id}/reveal", {"purpose": "copy"}),
        ("get", f"/api/v1/credentials/{cred_id}/history", None),
        ("get", f"/api/v1/credentials/{cred_id}/seen-by", None),
        ("get", "/api/v1/audit/seen?person=alice&since=2000-01-01", None),
        ("post", f"/api/v1/environments/{env_id}/sync", {}),
        ("post", f"/api/v1/environments/{env_id}/sync", {"source": "fleet"}),
        ("get", f"/api/v1/environments/{env_id}/sync-runs", None),
        ("get", "/api/v1/scheduler", None),
        ("get", "/api/v1/me", None),
        ("patch", "/api/v1/me/preferences", {"dashboard_view": "list"}),
        ("get", "/api/v1/environments/definitions", None),
        ("post", f"/api/v1/environments/{env_id}/pause", {"source": "manager"}),
        ("get", "/api/v1/settings/break-glass", None),
        ("put", "/api/v1/settings/break-glass", {"keep": 3, "schedule": "every 6h"}),
        # Errors answer the documented Error body.
        ("get", "/api/v1/environments/999", None),
        ("post", f"/api/v1/environments/{env_id}/sync", {"source": "cloud"}),
        ("patch", "/api/v1/me/preferences", {"colour": "red"}),
        ("get", "/api/v1/credentials?page=0", None),
        ("put", "/api/v1/settings/break-glass", {"recipients": ["age1x"]}),
        ("post", "/api/v1/settings/break-glass/copies", None),
        ("get", "/api/v1/audit/seen?person=alice&until=1999-12-31", None),
    ]
    for method, url, body in calls:
        response = admin.api(method.upper(), url, json=body)
        _check(document, response, _template(url), method)


def _template(url: str) -> str:
    path = url.split("?")[0]
    path = re.sub(r"/credentials/\d+", "/credentials/{cred_id}", path)
    return re.sub(r"/environments/\d+", "/environments/{env_id}", path)


def test_the_fleet_endpoint_is_described_with_its_write_only_locker_password(document):
    schemas = document["components"]["schemas"]
    fleet_in = schemas["FleetEndpointIn"]["properties"]["locker_password"]
    assert fleet_in.get("writeOnly") is True
    assert "root password" in fleet_in["description"]
    assert "fleet" in schemas["Environment"]["properties"]
    shown = schemas["FleetEndpointOut"]["properties"]
    assert {"locker_password_set", "api_detected"} <= set(shown)
    assert "locker_password" not in shown and "password" not in shown
    assert "fleet" in str(schemas["SyncRequest"])
