"""Every route against every role: anonymous, read-only and admin."""

from __future__ import annotations

import pytest

# Who may use each endpoint: "public" (no sign-in), "user" (any signed-in role), "admin".
ACCESS = {
    "auth.login": "public",
    "auth.logout": "public",
    "health.healthz": "public",
    "auth.change_password": "user",
    "dashboard.index": "user",
    "environments.new_environment": "admin",
    "environments.view_environment": "user",
    "environments.edit_environment": "admin",
    "scheduler.scheduler": "user",
    "users.list_users": "admin",
    "users.create_user": "admin",
    "users.set_role": "admin",
    "users.reset_password": "admin",
    "users.toggle_disabled": "admin",
    "users.delete_user": "admin",
    "audit.audit_log": "admin",
    "api.openapi": "user",
    "api.list_environments": "user",
    "api.create_environment": "admin",
    "api.get_environment": "user",
    "api.update_environment": "admin",
    "api.delete_environment": "admin",
    "api.test_connection": "admin",
    "api.sync_environment": "admin",
    "api.get_sync_run": "user",
    "api.list_sync_runs": "user",
    "api.list_credentials": "user",
    "api.search_credentials": "user",
    "api.reveal_password": "user",
    "api.password_history": "user",
    "api.reveal_history_password": "user",
    "api.purge_credential": "admin",
    "api.password_age": "user",
    "audit.export_audit_csv": "admin",
    "environments.export_environment": "user",
    "export.export_all": "user",
    "api.who_am_i": "user",
    "preferences.preferences": "user",
    "preferences.save_preferences": "user",
    "api.set_preferences": "user",
    "api.confirm_password": "user",
    "api.scheduler_state": "user",
    "api.pause_sync": "admin",
    "api.resume_sync": "admin",
    "api.export_definitions": "admin",
    "api.export_definitions_with_passwords": "admin",
    "api.import_definitions": "admin",
    "settings.certificate": "admin",
    "settings.upload_certificate": "admin",
    "settings.generate_certificate": "admin",
    "settings.certificate_request": "admin",
    "settings.accept_certificate": "admin",
    "settings.restart": "admin",
    "settings.logs": "admin",
    "settings.download_log": "admin",
    "settings.about": "admin",
}


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            args = {name: 999999 for name in rule.arguments}
            path = rule.build(args)[1] if rule.arguments else rule.rule
            yield rule.endpoint, method, path


def test_every_route_is_classified(app):
    endpoints = {endpoint for endpoint, _, _ in _routes(app)}
    assert endpoints == set(ACCESS), "classify new routes in ACCESS"


def _call(portal, method, path):
    if method == "GET":
        return portal.client.get(path)
    if path.startswith("/api/"):
        return portal.api(method, path, json={})
    return portal.post(path) if method == "POST" else portal.api(method, path, json={})


@pytest.mark.parametrize("role", ["anon", "readonly", "admin"])
def test_route_matrix(request, app, role):
    portal = request.getfixturevalue(role)
    for endpoint, method, path in _routes(app):
        need = ACCESS[endpoint]
        response = _call(portal, method, path)
        code = response.status_code
        where = f"{role} {method} {path} -> {code}"
        if need == "public":
            assert code < 500, where
        elif role == "anon":
            if path.startswith("/api/"):
                assert code == 401, where
            else:
                assert code == 302 and "/login" in response.headers["Location"], where
        elif need == "admin" and role == "readonly":
            assert code == 403, where
        else:
            assert code not in (401, 403) and code < 500, where
        if endpoint == "auth.logout" and role != "anon":
            portal.login("alice" if role == "admin" else "bob")
