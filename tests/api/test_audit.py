"""The audit log through the API: the page's filters, newest first, pages by id; auditors and
admins only (tests/test_access.py); the archive note is tested with the archives
(tests/test_audit_retention.py)."""

from __future__ import annotations

from portal import audit
from portal.platform.extensions import db


def _write(app, count: int, action: str = "test.api", actor: str = "carol") -> None:
    with app.app_context():
        for n in range(count):
            audit.record(action, target=f"esx-{n}", details={"n": n}, actor=actor)
        db.session.commit()


def test_records_newest_first_filtered_and_paged(app, admin):
    _write(app, 7)
    answer = admin.client.get("/api/v1/audit?action=test.api&actor=carol&limit=5").json
    assert answer["archived"] is None
    items = answer["items"]
    assert [i["target"] for i in items] == [f"esx-{n}" for n in range(6, 1, -1)]
    assert items[0]["details"] == '{"n": "6"}' and items[0]["at"].endswith("Z")
    assert "mac" not in items[0] and "chain" not in items[0]
    rest = admin.client.get(f"/api/v1/audit?action=test.api&before={items[-1]['id']}").json
    assert [i["target"] for i in rest["items"]] == ["esx-1", "esx-0"]
    assert admin.client.get("/api/v1/audit?actor=nobody").json["items"] == []


def test_bad_filters_answer_400(app, admin):
    for query in ("since=yesterday", "until=9999-12-31", "limit=0", "limit=501", "before=0"):
        response = admin.client.get(f"/api/v1/audit?{query}")
        assert response.status_code == 400, query
        assert "error" in response.json


def test_read_only_users_are_refused(app, readonly):
    assert readonly.client.get("/api/v1/audit").status_code == 403
