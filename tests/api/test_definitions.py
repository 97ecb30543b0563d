"""Environment definitions: export with and without passwords, import."""

from __future__ import annotations

from support import PASSWORD, run_sync


def test_definitions_round_trip(app, admin, synced):
    sim, env = synced
    plain = admin.client.get("/api/v1/environments/definitions")
    document = plain.json
    assert document["environments"][0]["manager"]["host"] == sim.host
    assert sim.admin_password not in plain.get_data(as_text=True)
    refused = admin.api(
        "POST",
        "/api/v1/environments/definitions/export",
        json={"include_passwords": True, "confirm_password": "wrong"},
    )
    assert refused.status_code == 403
    full = admin.api(
        "POST",
        "/api/v1/environments/definitions/export",
        json={"include_passwords": True, "confirm_password": PASSWORD},
    ).json
    assert full["environments"][0]["manager"]["password"] == sim.admin_password
    document["environments"][0]["name"] = "copy"
    document["environments"].append({"name": "", "manager": {"host": "bad host"}})
    result = admin.api("POST", "/api/v1/environments/definitions/import", json=document).json
    assert result["created"] == 1 and result["updated"] == 0
    assert "#2" in result["errors"] and result["without_password"] == ["copy / manager"]
    full["environments"][0]["description"] = "moved"
    result = admin.api("POST", "/api/v1/environments/definitions/import", json=full).json
    assert result["updated"] == 1
    assert run_sync(app, admin, env["id"])["state"] == "success"
    bad = admin.api("POST", "/api/v1/environments/definitions/import", json={"x": 1})
    assert bad.status_code == 400
