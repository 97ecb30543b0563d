"""The one rule for sensitive operations (portal.access.guards.recent_sign_in): every export, grant,
user, group, settings, certificate and token change needs a sign-in within 15 minutes (or the
password again) from a browser session, through pages and API alike; each refusal is audited
once; an API token passes."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select
from support import PASSWORD, create_env

from portal.models import AuditEvent, Environment
from portal.platform import clock
from portal.platform.extensions import db

# Every sensitive operation, by endpoint. A new sensitive route must be added here and carry
# @recent_sign_in; a route that loses it fails below.
SENSITIVE = {
    # exports of passwords
    "api.export_credentials": "credential.export",
    "api.export_environment": "credential.export",
    "environments.export_environment": "credential.export",
    "export.export_all": "credential.export",
    # who may see what
    "api.replace_grants": "environment.grants",
    "environments.save_access": "environment.grants",
    "api.set_global_policy": "policy.change",
    "api.set_environment_policy": "policy.change",
    "policies.save_defaults": "policy.change",
    "environments.save_policy": "policy.change",
    # users and groups
    "api.set_user_role": "user.role",
    "api.create_group": "group.create",
    "api.update_group": "group.update",
    "api.delete_group": "group.delete",
    "users.create_user": "user.create",
    "users.set_role": "user.role",
    "users.reset_password": "user.reset_password",
    "users.toggle_disabled": "user.disable",
    "users.delete_user": "user.delete",
    "users.reset_second_factor": "user.reset_second_factor",
    "users.create_group": "group.create",
    "users.set_group_role": "group.update",
    "users.delete_group": "group.delete",
    "users.add_group_member": "group.update",
    "users.remove_group_member": "group.update",
    "users.unlock_user": "user.unlock",
    "api.unlock_user": "user.unlock",
    # settings and keys
    "api.set_security_policy": "settings.security",
    "settings.security": "settings.security",
    "api.set_ldap_settings": "settings.ldap",
    "api.set_oidc_settings": "settings.oidc",
    "api.add_audit_destination": "settings.audit_forwarding",
    "api.remove_audit_destination": "settings.audit_forwarding",
    "audit_forwarding.add": "settings.audit_forwarding",
    "audit_forwarding.remove": "settings.audit_forwarding",
    "sign_in.save": "settings.sign_in",
    "notifications.save_thresholds": "settings.notifications",
    "notifications.new_channel": "settings.notification_channel_create",
    "notifications.edit_channel": "settings.notification_channel_update",
    "notifications.delete_channel": "settings.notification_channel_delete",
    # who can read every password when the portal is down
    "api.set_break_glass_settings": "settings.break_glass",
    "break_glass.save": "settings.break_glass",
    "settings.upload_certificate": "settings.certificate_upload",
    "settings.generate_certificate": "settings.certificate_generate",
    "settings.certificate_request": "settings.certificate_csr",
    "settings.accept_certificate": "settings.certificate_accept",
    # tokens
    "api.create_token": "token.create",
    "account.create_token": "token.create",
}


def _marked(app) -> dict[str, str]:
    return {
        endpoint: view.recent_sign_in
        for endpoint, view in app.view_functions.items()
        if getattr(view, "recent_sign_in", None)
    }


def _url(rule) -> str:
    values = {name: ("ldap" if name == "kind" else 1) for name in rule.arguments}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), rule.rule)


def _denied(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action, AuditEvent.outcome == "denied")
        ).all()


def _events(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(AuditEvent.id)))


def test_every_sensitive_operation_declares_the_rule(app):
    assert _marked(app) == SENSITIVE


def test_every_sensitive_operation_refuses_an_old_sign_in(app, admin):
    with app.app_context():  # ids in paths are 1: this environment exists
        db.session.add(Environment(name="first"))
        db.session.commit()
    clock.offset = timedelta(minutes=20)
    for rule in app.url_map.iter_rules():
        action = SENSITIVE.get(rule.endpoint)
        if action is None:
            continue
        method = next(m for m in ("POST", "PUT", "PATCH", "DELETE") if m in rule.methods)
        before, refusals = _events(app), len(_denied(app, action))
        url = _url(rule)
        if url.startswith("/api/"):
            answer = admin.api(method, url, json={})
            assert answer.status_code == 403, (url, answer.status_code)
            assert answer.json["details"] == {"needs": "recent_sign_in"}, url
            assert "confirm_password" in answer.json["error"]
        else:
            answer = admin.post(url, {}, follow_redirects=False)
            assert answer.status_code in (302, 403), (url, answer.status_code)
            if answer.status_code == 302:
                assert "/login" not in answer.headers["Location"], url
        # Nothing but the one audited refusal happened.
        assert _events(app) == before + 1, url
        refused = _denied(app, action)
        assert len(refused) == refusals + 1, url
        assert refused[-1].actor == "alice" and refused[-1].target == url
        assert "15 minutes" in refused[-1].details


def test_the_export_api_needs_a_recent_sign_in(app, admin, sim):
    env = create_env(admin, sim)
    clock.offset = timedelta(minutes=16)
    for url in (f"/api/v1/environments/{env['id']}/export", "/api/v1/credentials/export"):
        assert admin.api("POST", url, json={}).status_code == 403
    assert not [e for e in _denied(app, "credential.export") if e.outcome != "denied"]
    # The password in the body: the export goes on (the model never sees the field).
    typed = admin.api("POST", "/api/v1/credentials/export", json={"confirm_password": PASSWORD})
    assert typed.status_code == 200, typed.json
    assert typed.mimetype == "text/csv"
    clock.offset = timedelta(minutes=32)
    wrong = admin.api("POST", "/api/v1/credentials/export", json={"confirm_password": "nope"})
    assert wrong.status_code == 403


def test_grant_changes_need_a_recent_sign_in(app, admin, sim):
    env = create_env(admin, sim)
    url = f"/api/v1/environments/{env['id']}/grants"
    clock.offset = timedelta(minutes=16)
    grant = [{"subject": "user:bob", "level": "reveal"}]
    assert admin.api("PUT", url, json=grant).status_code == 403
    assert admin.client.get(url).json == []
    # A list body has no room for the password: confirm it first, then change.
    assert admin.api("POST", "/api/v1/me/reauth", json={"password": PASSWORD}).status_code == 204
    assert admin.api("PUT", url, json=grant).status_code == 200
    assert admin.client.get(url).json == grant

    # The Access tab: refused with the reason on the page, then saved with the password.
    clock.offset = timedelta(minutes=40)
    page = f"/environments/{env['id']}/access"
    form = {"subject": "user:bob", "level": "none"}
    refused = admin.post(page, form, follow_redirects=True)
    assert "Access not changed" in refused.get_data(as_text=True)
    assert admin.client.get(url).json == grant
    admin.post(page, {**form, "confirm_password": PASSWORD})
    assert admin.client.get(url).json == []


def test_an_admin_token_passes_the_rule(app, admin, sim):
    env = create_env(admin, sim)
    body = {"name": "ci", "scope": "admin", "expires_in_days": 30}
    made = admin.api("POST", "/api/v1/me/tokens", json=body)
    assert made.status_code == 201, made.json
    bearer = {"Authorization": f"Bearer {made.json['token']}"}
    clock.offset = timedelta(minutes=60)
    client = admin.client.application.test_client()
    client.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    grants = client.put(
        f"/api/v1/environments/{env['id']}/grants",
        json=[{"subject": "user:bob", "level": "view"}],
        headers=bearer,
    )
    assert grants.status_code == 200, grants.json
    export = client.post("/api/v1/credentials/export", json={}, headers=bearer)
    assert export.status_code == 200
