"""The signed-in user's own facts and preferences."""

from __future__ import annotations


def test_preferences(admin):
    assert admin.client.get("/api/v1/me").json["preferences"]["dashboard_view"] == "cards"
    assert (
        admin.api("PATCH", "/api/v1/me/preferences", json={"dashboard_view": "list"}).status_code
        == 200
    )
    me = admin.client.get("/api/v1/me").json
    assert me["preferences"]["dashboard_view"] == "list" and me["recent_auth"] is True
    assert (
        admin.api("PATCH", "/api/v1/me/preferences", json={"dashboard_view": "x"}).status_code
        == 422
    )
