"""Every /api/v1 error answers the one JSON error body: unknown paths, wrong methods (with
Allow), bodies over the limit, nobody signed in."""

from __future__ import annotations


def _is_error_body(response) -> bool:
    return response.is_json and set(response.json) == {"error", "details"}


def test_unknown_path_is_a_json_404(admin):
    missing = admin.client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404 and _is_error_body(missing)


def test_wrong_method_is_a_json_405_with_allow(admin):
    wrong = admin.api("PUT", "/api/v1/environments", json={})
    assert wrong.status_code == 405 and _is_error_body(wrong)
    assert set(wrong.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_a_body_over_the_limit_is_a_json_413(admin):
    huge = b'{"name": "' + b"x" * (8 * 1024 * 1024 + 10) + b'"}'
    refused = admin.client.post(
        "/api/v1/environments",
        data=huge,
        content_type="application/json",
        headers={"X-CSRFToken": admin.csrf_token_for_session()},
    )
    assert refused.status_code == 413 and _is_error_body(refused)


def test_nobody_signed_in_gets_a_json_401_even_without_a_csrf_token(anon):
    for method in ("GET", "POST", "DELETE"):
        refused = anon.client.open("/api/v1/environments/1", method=method, json={})
        assert refused.status_code in (401, 405), method
        assert _is_error_body(refused)
    refused = anon.client.post("/api/v1/environments", json={})
    assert refused.status_code == 401 and _is_error_body(refused)
