"""One declaration per operation: what each route needs besides its role or level (which
tests/test_access.py checks route by route): a recent sign-in (`recent_sign_in`, with the
audit action of a refusal) and, for the JSON API, the token scope (`api_operation`). The
table below is the whole list; a new route, or a changed declaration, must change it here,
where a reviewer sees it."""

from __future__ import annotations

from support import make_app

# endpoint: (recent sign-in action or None, token scope or None for pages)
DECLARED = {
    "access_requests.inbox": (None, None),
    "environments.policy": (None, None),
    "environments.save_policy": ("policy.change", None),
    "policies.defaults": (None, None),
    "policies.save_defaults": ("policy.change", None),
    "api.approve_access_request": (None, "session"),
    "api.deny_access_request": (None, "session"),
    "api.environment_policy": (None, "read"),
    "api.get_access_request": (None, "read"),
    "api.global_policy": (None, "read"),
    "api.list_access_requests": (None, "read"),
    "api.request_access": (None, "reveal"),
    "api.revoke_access_request": (None, "reveal"),
    "api.set_environment_policy": ("policy.change", "admin"),
    "api.set_global_policy": ("policy.change", "admin"),
    "account.confirm_totp": (None, None),
    "account.create_token": ("token.create", None),
    "account.regenerate_codes": (None, None),
    "account.remove_passkey": (None, None),
    "account.remove_totp": (None, None),
    "account.revoke_token": (None, None),
    "account.security": (None, None),
    "account.start_totp": (None, None),
    "account.token_list": (None, None),
    "api.add_passkey": (None, "session"),
    "api.all_tokens": (None, "read"),
    "api.break_glass_settings": (None, "admin"),
    "api.cancel_action": (None, "admin"),
    "api.checkin": (None, "reveal"),
    "api.checkout_credential": (None, "reveal"),
    "api.confirm_password": (None, "session"),
    "api.confirm_totp": (None, "session"),
    "api.create_environment": (None, "admin"),
    "api.create_group": ("group.create", "admin"),
    "api.create_token": ("token.create", "session"),
    "api.delete_environment": (None, "admin"),
    "api.delete_group": ("group.delete", "admin"),
    "api.export_credentials": ("credential.export", "reveal"),
    "api.export_definitions": (None, "read"),
    "api.export_definitions_with_passwords": (None, "admin"),
    "api.export_environment": ("credential.export", "reveal"),
    "api.get_action": (None, "read"),
    "api.get_environment": (None, "read"),
    "api.get_group": (None, "read"),
    "api.get_sync_run": (None, "read"),
    "api.import_definitions": (None, "admin"),
    "api.ldap_settings": (None, "admin"),
    "api.list_actions": (None, "read"),
    "api.list_audit": (None, "read"),
    "api.list_checkouts": (None, "read"),
    "api.list_credentials": (None, "read"),
    "api.list_environments": (None, "read"),
    "api.list_factors": (None, "read"),
    "api.list_grants": (None, "read"),
    "api.list_groups": (None, "read"),
    "api.list_sync_runs": (None, "read"),
    "api.list_user_roles": (None, "read"),
    "api.make_break_glass_copy": (None, "admin"),
    "api.needs_rotation": (None, "read"),
    "api.take_back": (None, "admin"),
    "api.my_tokens": (None, "read"),
    "api.oidc_settings": (None, "admin"),
    "api.audit_destinations": (None, "admin"),
    "api.add_audit_destination": ("settings.audit_forwarding", "admin"),
    "api.remove_audit_destination": ("settings.audit_forwarding", "admin"),
    "audit_forwarding.overview": (None, None),
    "audit_forwarding.add": ("settings.audit_forwarding", None),
    "audit_forwarding.remove": ("settings.audit_forwarding", None),
    "api.openapi": (None, "read"),
    "api.passkey_options": (None, "session"),
    "api.password_age": (None, "read"),
    "api.password_history": (None, "read"),
    "api.pause_sync": (None, "admin"),
    "api.purge_credential": (None, "admin"),
    "api.queue_action": (None, "admin"),
    "api.regenerate_codes": (None, "session"),
    "api.remove_passkey": (None, "session"),
    "api.remove_totp": (None, "session"),
    "api.replace_grants": ("environment.grants", "admin"),
    "api.request_expiry_check": (None, "admin"),
    "api.resume_sync": (None, "admin"),
    "api.retry_action": (None, "admin"),
    "api.rotate_seen": (None, "admin"),
    "api.reveal_history_password": (None, "reveal"),
    "api.reveal_password": (None, "reveal"),
    "api.revoke_my_token": (None, "admin"),
    "api.revoke_token": (None, "admin"),
    "api.scheduler_state": (None, "read"),
    "api.needs_attention": (None, "read"),
    "api.search_credentials": (None, "read"),
    "api.security_policy": (None, "read"),
    "api.set_break_glass_settings": ("settings.break_glass", "admin"),
    "api.seen_by": (None, "read"),
    "api.seen_report": (None, "read"),
    "api.seen_report_csv": (None, "read"),
    "api.set_ldap_settings": ("settings.ldap", "admin"),
    "api.set_oidc_settings": ("settings.oidc", "admin"),
    "api.set_preferences": (None, "admin"),
    "api.set_security_policy": ("settings.security", "admin"),
    "api.set_user_role": ("user.role", "admin"),
    "api.start_totp": (None, "session"),
    "api.sync_environment": (None, "admin"),
    "api.test_connection": (None, "admin"),
    "api.test_ldap_settings": (None, "admin"),
    "api.unlock_user": ("user.unlock", "admin"),
    "api.update_environment": (None, "admin"),
    "api.update_group": ("group.update", "admin"),
    "api.who_am_i": (None, "read"),
    "audit.audit_log": (None, None),
    "audit.export_audit_csv": (None, None),
    "audit.export_seen_csv": (None, None),
    "audit.seen_report": (None, None),
    "auth.change_password": (None, None),
    "break_glass.make_copy": (None, None),
    "break_glass.overview": (None, None),
    "break_glass.save": ("settings.break_glass", None),
    "auth.login": (None, None),
    "auth.logout": (None, None),
    "auth.oidc_callback": (None, None),
    "auth.oidc_start": (None, None),
    "auth.passkey_options": (None, None),
    "auth.passkey_verify": (None, None),
    "auth.verify": (None, None),
    "dashboard.index": (None, None),
    "environments.edit_environment": (None, None),
    "environments.export_environment": ("credential.export", None),
    "environments.new_environment": (None, None),
    "environments.save_access": ("environment.grants", None),
    "environments.view_environment": (None, None),
    "export.export_all": ("credential.export", None),
    "health.healthz": (None, None),
    "metrics.scrape": (None, None),
    "notifications.delete_channel": ("settings.notification_channel_delete", None),
    "notifications.edit_channel": ("settings.notification_channel_update", None),
    "notifications.new_channel": ("settings.notification_channel_create", None),
    "notifications.overview": (None, None),
    "notifications.save_thresholds": ("settings.notifications", None),
    "notifications.test_channel": (None, None),
    "preferences.preferences": (None, None),
    "preferences.save_preferences": (None, None),
    "scheduler.scheduler": (None, None),
    "attention.needs_attention": (None, None),
    "settings.about": (None, None),
    "settings.accept_certificate": ("settings.certificate_accept", None),
    "settings.certificate": (None, None),
    "settings.certificate_request": ("settings.certificate_csr", None),
    "settings.download_log": (None, None),
    "settings.generate_certificate": ("settings.certificate_generate", None),
    "settings.logs": (None, None),
    "settings.restart": (None, None),
    "settings.security": ("settings.security", None),
    "settings.upload_certificate": ("settings.certificate_upload", None),
    "sign_in.overview": (None, None),
    "sign_in.save": ("settings.sign_in", None),
    "sign_in.test_ldap": (None, None),
    "users.add_group_member": ("group.update", None),
    "users.create_group": ("group.create", None),
    "users.create_user": ("user.create", None),
    "users.delete_group": ("group.delete", None),
    "users.delete_user": ("user.delete", None),
    "users.list_users": (None, None),
    "users.remove_group_member": ("group.update", None),
    "users.reset_password": ("user.reset_password", None),
    "users.reset_second_factor": ("user.reset_second_factor", None),
    "users.set_group_role": ("group.update", None),
    "users.set_role": ("user.role", None),
    "users.toggle_disabled": ("user.disable", None),
    "users.unlock_user": ("user.unlock", None),
}

# Operations whose recent sign-in depends on the request, checked in the handler with
# access.guards.token_or_recent_auth (a dry run or a retry of nothing needs none), and the
# definitions export that holds service-account passwords only when asked for them.
IN_HANDLER = {
    "api.queue_action",
    "api.retry_action",
    "api.rotate_seen",
    "api.export_definitions_with_passwords",
}


def _declarations(app) -> dict[str, tuple[str | None, str | None]]:
    found: dict[str, tuple[str | None, str | None]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        operation = getattr(view, "api_operation", None)
        scope = None
        if operation is not None:
            methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
            scope = "/".join(sorted({operation.needed_scope(m) for m in methods}))
        found[rule.endpoint] = (getattr(view, "recent_sign_in", None), scope)
    return found


def test_every_operation_is_declared_as_listed(tmp_path):
    assert _declarations(make_app(tmp_path)) == DECLARED


def test_every_password_export_needs_a_recent_sign_in():
    """A file of passwords (credential exports, definitions with passwords) is never one
    stolen session away: each declares the recent sign-in or checks it in the handler."""
    exports = [e for e in DECLARED if "export" in e and "audit" not in e]
    assert exports, "no export operation found"
    for endpoint in exports:
        if endpoint == "api.export_definitions":
            continue  # definitions without any password
        assert DECLARED[endpoint][0] == "credential.export" or endpoint in IN_HANDLER, endpoint


def test_api_scopes_are_the_known_ones():
    assert {scope for _, scope in DECLARED.values()} <= {None, "read", "reveal", "admin", "session"}
