"""The audit log page: filters and CSV export."""

from __future__ import annotations

import csv
import io


def test_audit_filters_and_csv(app, admin, synced):
    assert admin.client.get("/audit/?action=sync&since=2000-01-01").status_code == 200
    assert admin.client.get("/audit/?since=yesterday").status_code == 400
    response = admin.client.get("/audit/export.csv?action=environment")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][0] == "time_utc" and rows[1][3] == "environment.create"


def test_extreme_or_bad_dates_answer_400_never_500(app, admin):
    for query in (
        "until=9999-12-31",
        "since=9999-12-31",
        "until=0001-01-01",
        "since=2026-02-30",
        "until=31/01/2026",
    ):
        for path in ("/audit/", "/audit/export.csv"):
            response = admin.client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert b"Bad request" in response.data


def test_date_range_keeps_whole_days_and_the_form_shows_the_filters(app, admin):
    page = admin.client.get("/audit/?actor=+alice+&action=auth&since=2000-01-01&until=9998-12-31")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'value="alice"' in text and 'value="2000-01-01"' in text
    assert 'value="9998-12-31"' in text and "auth.login" in text
    assert admin.client.get("/audit/?since=+&until=").status_code == 200
