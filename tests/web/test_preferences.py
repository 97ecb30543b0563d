"""The preferences page: the time zone of exact times and the dashboard layout."""

from __future__ import annotations


def test_preferences_are_saved_and_unknown_values_refused(admin):
    page = admin.client.get("/preferences").get_data(as_text=True)
    assert 'value="local" checked' in page and "Show times in UTC" in page
    saved = admin.post("/preferences", {"time_zone": "utc", "dashboard_view": "list"})
    assert saved.status_code == 303
    assert admin.client.get("/api/v1/me").json["preferences"] == {
        "dashboard_view": "list",
        "time_zone": "utc",
    }
    # The page scripts learn the zone from the configuration of every page.
    assert '"timeZone": "utc"' in admin.client.get("/").get_data(as_text=True)
    refused = admin.post("/preferences", {"time_zone": "Mars/Olympus"})
    assert refused.status_code == 303
    assert admin.client.get("/api/v1/me").json["preferences"]["time_zone"] == "utc"
    assert "Unknown value for time_zone." in admin.client.get("/preferences").get_data(as_text=True)
