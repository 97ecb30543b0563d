"""Scheduler state, pause and resume through the API."""

from __future__ import annotations


def test_scheduler_state_pause_resume(app, admin, synced):
    _, env = synced
    state = admin.client.get("/api/v1/scheduler").json
    job = state["jobs"][0]
    assert job["environment"] == "sfo" and job["last_run"]["state"] == "success"
    paused = admin.api(
        "POST", f"/api/v1/environments/{env['id']}/pause", json={"source": "manager"}
    )
    assert paused.json["manager"]["sync_paused"] is True
    assert admin.client.get("/api/v1/scheduler").json["jobs"][0]["paused"] is True
    admin.api("POST", f"/api/v1/environments/{env['id']}/resume", json={"source": "manager"})
    assert admin.client.get("/api/v1/scheduler").json["jobs"][0]["paused"] is False
    assert (
        admin.api(
            "POST", f"/api/v1/environments/{env['id']}/pause", json={"source": "installer"}
        ).status_code
        == 404
    )
