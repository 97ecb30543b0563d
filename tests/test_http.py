"""Malformed input answers 400 or 422 with the JSON error body, never a 500."""

from __future__ import annotations

import pytest

HUGE = "9" * 23
DEEP = "[" * 100000
ENDPOINT = {"host": "vcf.example.test", "username": "svc", "password": "pw"}


def _environment(admin) -> int:
    created = admin.api("POST", "/api/v1/environments", json={"name": "x", "manager": ENDPOINT})
    assert created.status_code == 201, created.json
    return created.json["id"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/api/v1/environments"),
        ("PATCH", "/api/v1/environments/{id}"),
        ("POST", "/api/v1/environments/test-connection"),
        ("POST", "/api/v1/environments/{id}/sync"),
        ("POST", "/api/v1/environments/{id}/pause"),
        ("POST", "/api/v1/environments/definitions/import"),
        ("PATCH", "/api/v1/me/preferences"),
    ],
)
def test_deeply_nested_json_is_a_bad_request(admin, method, url):
    url = url.format(id=_environment(admin))
    response = admin.api(method, url, data=DEEP, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert set(response.json) == {"error", "details"}


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", f"/api/v1/environments/{HUGE}"),
        ("PATCH", f"/api/v1/environments/{HUGE}"),
        ("GET", f"/api/v1/environments/{HUGE}/credentials"),
        ("POST", f"/api/v1/environments/{HUGE}/sync"),
        ("GET", f"/api/v1/sync-runs/{HUGE}"),
        ("POST", f"/api/v1/credentials/{HUGE}/reveal"),
        ("POST", f"/api/v1/credentials/1/history/{HUGE}/reveal"),
        ("DELETE", f"/api/v1/credentials/{HUGE}"),
        ("GET", f"/api/v1/credentials?page={HUGE}"),
        ("GET", f"/api/v1/environments/1/password-age?days={HUGE}"),
    ],
)
def test_numbers_beyond_64_bits_are_a_bad_request(admin, method, url):
    _environment(admin)
    response = admin.api(method, url, json={})
    assert response.status_code == 400
    assert set(response.json) == {"error", "details"}


def test_page_with_a_huge_id_is_a_bad_request(admin):
    response = admin.client.get(f"/environments/{HUGE}")
    assert response.status_code == 400
    assert "text/html" in response.content_type


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        (
            "POST",
            "/api/v1/environments/test-connection",
            {"source": "manager", **ENDPOINT, "host": ":::::"},
            "manager.host",
        ),
        (
            "POST",
            "/api/v1/environments/test-connection",
            {"source": "manager", **ENDPOINT, "host": "fe80::1%eth0"},
            "manager.host",
        ),
        (
            "POST",
            "/api/v1/environments/test-connection",
            {"source": "manager", **ENDPOINT, "environment_id": int(HUGE)},
            "environment_id",
        ),
        (
            "POST",
            "/api/v1/environments",
            {"name": "y", "manager": {**ENDPOINT, "host": ":::::"}},
            "manager.host",
        ),
        (
            "PATCH",
            "/api/v1/environments/{id}",
            {"manager": {**ENDPOINT, "host": ":::::"}},
            "manager.host",
        ),
    ],
)
def test_malformed_fields_are_refused(admin, method, url, body, field):
    # A value that cannot be a host is a field error like any other: 422 naming the field,
    # which the environment form shows beside it.
    url = url.format(id=_environment(admin))
    response = admin.api(method, url, json=body)
    assert response.status_code == 422, response.get_data(as_text=True)[:200]
    assert response.json["error"] == "Some fields are not valid."
    assert list(response.json["details"]) == [field]


def test_ipv6_literal_is_still_a_host(admin):
    body = {"name": "v6", "manager": {**ENDPOINT, "host": "fd00::10"}}
    assert admin.api("POST", "/api/v1/environments", json=body).status_code == 201
