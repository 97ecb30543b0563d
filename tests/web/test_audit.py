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
