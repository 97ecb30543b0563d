"""Every route against every role (anonymous, member, auditor, read-only, admin) and every
level on an environment (none, view, reveal, approve, manage)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import PASSWORD, create_env, fleet_body

from portal.models import (
    AccessRequest,
    Credential,
    CredentialAction,
    CredentialCheckout,
    EnvironmentGrant,
    User,
)
from portal.platform import clock
from portal.platform.crypto import CREDENTIAL_PASSWORD, cipher
from portal.platform.extensions import db
from portal.platform.security import hash_password

# Who may use each endpoint: "public" (no sign-in), "user" (any signed-in role), "auditor"
# (auditors and admins), "admin", "reveal-somewhere" (the reveal level on at
# least one environment), "manage-somewhere", "env:LEVEL": the level on the environment
# (or the credential's, or the action's) in the path; without any it answers 404. Who saw
# what: "audit-or-manage-somewhere" (auditors, admins, managers of an environment) and
# "env:audit" (auditors, admins, the path's environment's managers; 404 without any level).
# Check-in: "env:holder" (only the check-out's holder, alice of the lab, an admin; 404 without
# any level on its environment).
ACCESS = {
    "auth.login": "public",
    "auth.logout": "public",
    "health.healthz": "public",
    "auth.verify": "public",
    "auth.passkey_options": "public",
    "auth.passkey_verify": "public",
    "auth.oidc_start": "public",
    "auth.oidc_callback": "public",
    "auth.change_password": "user",
    "account.security": "user",
    "account.start_totp": "user",
    "account.confirm_totp": "user",
    "account.remove_totp": "user",
    "account.regenerate_codes": "user",
    "account.remove_passkey": "user",
    "account.token_list": "user",
    "account.create_token": "user",
    "account.revoke_token": "user",
    "api.list_factors": "user",
    "api.start_totp": "user",
    "api.confirm_totp": "user",
    "api.remove_totp": "user",
    "api.regenerate_codes": "user",
    "api.passkey_options": "user",
    "api.add_passkey": "user",
    "api.remove_passkey": "user",
    "api.my_tokens": "user",
    "api.create_token": "user",
    "api.revoke_my_token": "user",
    "api.all_tokens": "admin",
    "api.revoke_token": "admin",
    "api.export_environment": "env:reveal",
    "api.export_credentials": "reveal-somewhere",
    "api.queue_action": "manage-somewhere",
    "api.get_action": "env:view",
    "api.list_actions": "env:view",
    "api.retry_action": "env:manage",
    "api.cancel_action": "env:manage",
    "api.request_expiry_check": "env:manage",
    "api.checkout_credential": "env:reveal",
    "api.checkin": "env:holder",
    "api.take_back": "env:manage",
    "api.list_checkouts": "user",
    "api.needs_rotation": "user",
    "api.security_policy": "admin",
    "api.set_security_policy": "admin",
    "settings.security": "admin",
    "api.ldap_settings": "admin",
    "api.set_ldap_settings": "admin",
    "api.test_ldap_settings": "admin",
    "api.oidc_settings": "admin",
    "api.break_glass_settings": "admin",
    "api.set_break_glass_settings": "admin",
    "api.make_break_glass_copy": "admin",
    "break_glass.overview": "admin",
    "break_glass.save": "admin",
    "break_glass.make_copy": "admin",
    "api.set_oidc_settings": "admin",
    "sign_in.overview": "admin",
    "sign_in.save": "admin",
    "sign_in.test_ldap": "admin",
    "users.reset_second_factor": "admin",
    "dashboard.index": "user",
    "attention.needs_attention": "user",
    "api.needs_attention": "user",
    "environments.new_environment": "admin",
    "environments.view_environment": "env:view",
    "environments.edit_environment": "env:manage",
    "scheduler.scheduler": "user",
    "users.list_users": "admin",
    "users.create_user": "admin",
    "users.set_role": "admin",
    "users.reset_password": "admin",
    "users.toggle_disabled": "admin",
    "users.delete_user": "admin",
    "users.unlock_user": "admin",
    "audit.audit_log": "auditor",
    "api.list_audit": "auditor",
    "api.openapi": "user",
    "api.list_environments": "user",
    "api.create_environment": "admin",
    "api.get_environment": "env:view",
    "api.update_environment": "env:manage",
    "api.delete_environment": "admin",
    "api.test_connection": "manage-somewhere",
    "api.sync_environment": "env:manage",
    "api.get_sync_run": "user",
    "api.list_sync_runs": "env:view",
    "api.list_credentials": "env:view",
    "api.search_credentials": "user",
    "api.reveal_password": "env:reveal",
    "api.password_history": "env:view",
    "api.reveal_history_password": "env:reveal",
    "api.purge_credential": "env:manage",
    "api.password_age": "env:view",
    "audit.export_audit_csv": "auditor",
    "api.seen_report": "audit-or-manage-somewhere",
    "audit.seen_report": "audit-or-manage-somewhere",
    "audit.export_seen_csv": "audit-or-manage-somewhere",
    "api.seen_report_csv": "audit-or-manage-somewhere",
    "api.seen_by": "env:audit",
    "api.rotate_seen": "manage-somewhere",
    "environments.export_environment": "env:reveal",
    "export.export_all": "reveal-somewhere",
    "api.who_am_i": "user",
    "preferences.preferences": "user",
    "preferences.save_preferences": "user",
    "api.set_preferences": "user",
    "api.confirm_password": "user",
    "api.scheduler_state": "user",
    "api.pause_sync": "env:manage",
    "api.resume_sync": "env:manage",
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
    "notifications.overview": "admin",
    "notifications.save_thresholds": "admin",
    "notifications.new_channel": "admin",
    "notifications.edit_channel": "admin",
    "notifications.delete_channel": "admin",
    "notifications.test_channel": "admin",
    "environments.save_access": "admin",
    "users.create_group": "admin",
    "users.set_group_role": "admin",
    "users.add_group_member": "admin",
    "users.remove_group_member": "admin",
    "users.delete_group": "admin",
    "api.list_grants": "admin",
    "api.replace_grants": "admin",
    "api.list_groups": "admin",
    "api.create_group": "admin",
    "api.get_group": "admin",
    "api.update_group": "admin",
    "api.delete_group": "admin",
    "api.list_user_roles": "admin",
    "api.set_user_role": "admin",
    "api.unlock_user": "admin",
    "api.audit_destinations": "admin",
    "api.add_audit_destination": "admin",
    "api.remove_audit_destination": "admin",
    "audit_forwarding.overview": "admin",
    "audit_forwarding.add": "admin",
    "audit_forwarding.remove": "admin",
    # Dual control: policies, access requests. "requester-or-approve" (the requester, else
    # the approve level on the request's environment; 404 for anyone else).
    "access_requests.inbox": "user",
    "policies.defaults": "admin",
    "policies.save_defaults": "admin",
    "environments.policy": "env:manage",
    "environments.save_policy": "env:manage",
    "api.global_policy": "admin",
    "api.set_global_policy": "admin",
    "api.environment_policy": "env:view",
    "api.set_environment_policy": "env:manage",
    "api.request_access": "env:reveal",
    "api.list_access_requests": "user",
    "api.get_access_request": "env:approve-or-requester",
    "api.approve_access_request": "env:approve-or-requester",
    "api.deny_access_request": "env:approve-or-requester",
    "api.revoke_access_request": "env:approve-or-requester",
    # Its own access rule (an API token or an allowed address): tests/web/test_metrics.py.
    "metrics.scrape": "public",
}


ROLE_RANK = {"member": 0, "auditor": 1, "readonly": 2, "admin": 3}
LEVEL_RANK = {None: -1, "view": 0, "reveal": 1, "approve": 2, "manage": 3}
# The level each global role gives on every environment.
ROLE_LEVEL = {"member": None, "auditor": "view", "readonly": "reveal", "admin": "manage"}
USERS = {"admin": "alice", "readonly": "bob", "auditor": "carol", "member": "dave"}


def _routes(app, ids=None):
    ids = ids or {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            args = {name: ids.get(name, 999999) for name in rule.arguments}
            path = rule.build(args)[1] if rule.arguments else rule.rule
            yield rule.endpoint, method, path


def test_every_route_is_classified(app):
    endpoints = {endpoint for endpoint, _, _ in _routes(app)}
    assert endpoints == set(ACCESS), "classify new routes in ACCESS"


def _call(portal, method, path, body=None):
    if method == "GET":
        return portal.client.get(path)
    if path.startswith("/api/"):
        return portal.api(method, path, json=body if body is not None else {})
    return portal.post(path) if method == "POST" else portal.api(method, path, json={})


@pytest.fixture
def lab(app, admin, sim):
    """An environment (SDDC Manager and fleet management) with one credential, one action,
    frank's request for the credential and alice's check-out of another; carol (auditor),
    dave (member), frank (readonly)."""
    env = create_env(admin, sim)
    fleet = fleet_body(sim, sync_enabled=False)
    added = admin.api("PATCH", f"/api/v1/environments/{env['id']}", json={"fleet": fleet})
    assert added.status_code == 200, added.json
    with app.app_context():
        for name, role in (
            ("carol", "auditor"),
            ("dave", "member"),
            ("erin", "member"),
            ("frank", "readonly"),
        ):
            db.session.add(User(username=name, role=role, password_hash=hash_password(PASSWORD)))
        cred = Credential(
            environment_id=env["id"], source="manager", hostname="esx-1", username="root"
        )
        db.session.add(cred)
        db.session.flush()
        action = CredentialAction(
            environment_id=env["id"], operation="rotate", state="failed", requested_by="alice"
        )
        db.session.add(action)
        # Alice's check-out of another credential of the environment.
        held = Credential(
            environment_id=env["id"], source="manager", hostname="esx-2", username="root"
        )
        db.session.add(held)
        db.session.flush()
        alice = db.session.scalar(db.select(User).where(User.username == "alice"))
        checkout = CredentialCheckout(
            credential_id=held.id,
            environment_id=env["id"],
            holder_id=alice.id,
            holder_name="alice",
            reason="matrix",
            due_at=clock.now() + clock.timedelta(hours=1),
        )
        db.session.add(checkout)
        frank = db.session.scalar(db.select(User).where(User.username == "frank"))
        # Someone else's request, waiting for a decision.
        request = AccessRequest(
            credential_id=cred.id,
            environment_id=env["id"],
            requester_id=frank.id,
            requester_name="frank",
            reason="maintenance",
            minutes=30,
            state="pending",
            closes_at=clock.now() + timedelta(hours=1),
        )
        db.session.add(request)
        db.session.commit()
        ids = {
            "env_id": env["id"],
            "cred_id": cred.id,
            "action_id": action.id,
            "checkout_id": checkout.id,
            "req_id": request.id,
        }
    return ids


def _grant(app, env_id, username, level):
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username == username))
        db.session.add(EnvironmentGrant(environment_id=env_id, user_id=user.id, level=level))
        db.session.commit()


def _expect(need, role, level, method, path, code, response):
    where = f"{role}/{level} {method} {path} -> {code}"
    if need == "public":
        assert code < 500, where
        return
    if role == "anon":
        if path.startswith("/api/"):
            assert code == 401, where
        else:
            assert code == 302 and "/login" in response.headers["Location"], where
        return
    if need == "auditor":  # the audit log: auditors and admins, not read-only users
        allowed = role in ("auditor", "admin")
    elif need == "audit-or-manage-somewhere":
        allowed = role in ("auditor", "admin") or level == "manage"
    elif need == "env:audit":
        if level is None:
            assert code == 404, where
            return
        allowed = role in ("auditor", "admin") or level == "manage"
    elif need == "env:holder":
        if level is None:
            assert code == 404, where
            return
        allowed = role == "admin"  # alice, the holder
    elif need in ROLE_RANK:
        allowed = ROLE_RANK[role] >= ROLE_RANK[need]
    elif need.endswith("-somewhere"):
        allowed = LEVEL_RANK[level] >= LEVEL_RANK[need.split("-")[0]]
    elif need == "env:approve-or-requester":  # someone else's request: hidden below approve
        if level is None or LEVEL_RANK[level] < LEVEL_RANK["approve"]:
            assert code == 404, where
            return
        allowed = True
    elif need.startswith("env:"):
        wanted = need.split(":")[1]
        if level is None:
            assert code == 404, where
            return
        allowed = LEVEL_RANK[level] >= LEVEL_RANK[wanted]
    else:
        allowed = True
    if allowed:
        assert code not in (401, 403) and code < 500, where
    else:
        assert code == 403, where


def _run_matrix(app, portal, username, role, level, ids):
    # Bodies that pass validation, so that the answer is the access rule's.
    bodies = {
        "api.queue_action": {"operation": "rotate", "credential_ids": [ids["cred_id"]]},
        "api.rotate_seen": {"person": "alice", "dry_run": True},
        # The fleet management source (VCF 9) answers to the same rules as the others.
        "api.sync_environment": {"source": "fleet"},
        "api.pause_sync": {"source": "fleet"},
        "api.resume_sync": {"source": "fleet"},
        "api.checkout_credential": {"minutes": 30, "reason": "matrix"},
        "api.request_access": {"reason": "maintenance", "minutes": 30},
        "api.set_environment_policy": {"rules": []},
        "api.set_global_policy": {"rules": []},
    }
    for endpoint, method, path in _routes(app, ids):
        response = _call(portal, method, path, bodies.get(endpoint))
        _expect(ACCESS[endpoint], role, level, method, path, response.status_code, response)
        # Sign-in steps may end the session (logout; a second step with none pending).
        signed_out = (
            endpoint.startswith("auth.") and portal.client.get("/api/v1/me").status_code == 401
        )
        if role != "anon" and signed_out:
            portal.login(username)


@pytest.mark.parametrize("role", ["anon", "member", "auditor", "readonly", "admin"])
@pytest.mark.own_database  # syncs, exports and backups on connections of their own
def test_route_matrix(request, app, lab, role):
    """Each global role on an environment it has no grant for (its role's level only)."""
    from support import Portal, client_for

    portal = Portal(client_for(app))
    if role != "anon":
        assert portal.login(USERS[role]).status_code == 302
    _run_matrix(app, portal, USERS.get(role), role, ROLE_LEVEL.get(role), lab)


@pytest.mark.parametrize("level", ["view", "reveal", "approve", "manage"])
@pytest.mark.own_database  # syncs, exports and backups on connections of their own
def test_route_matrix_by_grant(app, lab, level):
    """A member with a grant at each level on the environment."""
    from support import Portal, client_for

    _grant(app, lab["env_id"], "erin", level)
    portal = Portal(client_for(app))
    assert portal.login("erin").status_code == 302
    _run_matrix(app, portal, "erin", "member", level, lab)


@pytest.mark.parametrize(
    ("role", "level", "sync", "reveal"),
    [
        ("anon", None, 401, 401),
        ("member", None, 404, 404),
        ("member", "view", 403, 403),
        ("member", "reveal", 403, 200),
        ("member", "manage", 202, 200),
        ("readonly", None, 403, 200),
        ("admin", None, 202, 200),
    ],
)
@pytest.mark.own_database  # syncs on connections of their own
def test_the_fleet_source_by_role_and_level(app, admin, sim, role, level, sync, reveal):
    """Syncing fleet management alone and revealing one of its accounts' passwords."""
    from support import Portal, client_for

    env = admin.api(
        "POST",
        "/api/v1/environments",
        json={
            "name": "vcf9",
            "fleet": {
                "host": sim.host,
                "port": sim.port,
                "username": sim.installer_username,
                "password": sim.installer_password,
                "ca_pem": sim.ca_pem,
                "locker_password": sim.fleet_root_password,
                "sync_enabled": False,
            },
        },
    ).json
    with app.app_context():
        db.session.add(User(username="dave", role="member", password_hash=hash_password(PASSWORD)))
        cred = Credential(
            environment_id=env["id"],
            source="fleet",
            hostname="sfo-vcfops01.sfo.rainpole.io",
            username="admin",
            resource_type="VCF_OPERATIONS",
            password_enc=cipher().encrypt("Fleet-Admin-Pw-1!", CREDENTIAL_PASSWORD),
        )
        db.session.add(cred)
        db.session.commit()
        cred_id = cred.id
    if level:
        _grant(app, env["id"], "dave", level)
    portal = Portal(client_for(app))
    if role != "anon":
        assert portal.login(USERS[role]).status_code == 302
    queued = portal.api("POST", f"/api/v1/environments/{env['id']}/sync", json={"source": "fleet"})
    assert queued.status_code == sync, queued.json
    if sync == 202:
        assert [run["source"] for run in queued.json["runs"]] == ["fleet"]
    shown = portal.api("POST", f"/api/v1/credentials/{cred_id}/reveal")
    assert shown.status_code == reveal, shown.status_code
    if reveal == 200:
        assert shown.json["password"] == "Fleet-Admin-Pw-1!"
