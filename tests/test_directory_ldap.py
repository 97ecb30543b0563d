"""Sign-in through a real OpenLDAP directory (slapd on loopback, LDAPS and StartTLS): accounts
made at the first sign-in, roles and grants from directory groups, access filtered
everywhere, and access lost when the directory removes, disables or ungroups the user."""

from __future__ import annotations

import json
import secrets

import pytest
from ldap_server import slapd_binary, start_slapd
from sqlalchemy import select
from support import (
    Portal,
    client_for,
    create_env,
    ldap_settings_body,
    recheck_directory,
    run_sync,
    user_named,
)

from portal.identity.directory import options
from portal.models import AuditEvent, User
from portal.platform.extensions import db

pytestmark = [
    pytest.mark.e2e,  # starts slapd
    pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed"),
]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    with start_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def _name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def _password() -> str:
    return f"Dir-{secrets.token_urlsafe(12)}"


def _configure(admin, slapd, **extra) -> dict:
    response = admin.api("PUT", "/api/v1/settings/ldap", ldap_settings_body(slapd, **extra))
    assert response.status_code == 200, response.json
    return response.json


def _env_names(portal) -> list[str]:
    response = portal.client.get("/api/v1/environments")
    assert response.status_code == 200, response.status_code
    return sorted(item["name"] for item in response.json["items"])


def _audits(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


def test_a_directory_user_gets_the_access_of_their_groups_and_loses_it(app, admin, sim, slapd):
    name, password = _name("dave"), _password()
    team = _name("vcf-ops-")
    slapd.add_user(name, password, cn="Dave Ops", mail=f"{name}@example.test")
    slapd.add_group(team, [name])
    _configure(admin, slapd)
    group = admin.api("POST", "/api/v1/groups", {"name": team.upper(), "source": "ldap"})
    assert group.status_code == 201
    sfo, nyc = create_env(admin, sim, "sfo"), create_env(admin, sim, "nyc")
    run_sync(app, admin, sfo["id"])
    granted = admin.api(
        "PUT",
        f"/api/v1/environments/{sfo['id']}/grants",
        [{"subject": f"group:{team.upper()}", "level": "reveal"}],
    )
    assert granted.status_code == 200, granted.json

    dave = Portal(client_for(app))
    assert dave.login(name, password).status_code == 302
    account = user_named(app, name)
    assert account.source == "ldap" and account.role == "member"
    assert account.external_id.startswith("entryUUID:")  # not the DN: entries move
    login = [a for a in _audits(app, "auth.login") if a.target == name][-1]
    details = json.loads(login.details)
    assert details["source"] == "ldap" and details["groups"] == team.upper()
    assert team in details["directory_groups"]

    # Only the granted environment, everywhere.
    assert _env_names(dave) == ["sfo"]
    assert dave.client.get(f"/environments/{nyc['id']}").status_code == 404
    assert dave.client.get(f"/api/v1/environments/{nyc['id']}").status_code == 404
    assert "nyc" not in dave.client.get("/").get_data(as_text=True)
    credentials = dave.client.get(f"/api/v1/environments/{sfo['id']}/credentials").json
    first = credentials["items"][0]["id"]
    revealed = dave.api("POST", f"/api/v1/credentials/{first}/reveal", {"purpose": "reveal"})
    assert revealed.status_code == 200 and revealed.json["password"]

    # The directory takes them out of the group: the periodic check applies it at once.
    slapd.remove_member(team, name)
    counts = recheck_directory(app)
    assert counts["checked"] >= 1
    assert _env_names(dave) == []
    assert dave.client.get(f"/api/v1/environments/{sfo['id']}").status_code == 404
    changed = [a for a in _audits(app, "user.directory_groups") if a.target == name][-1]
    assert json.loads(changed.details)["after"] == "(none)"

    # Back in the group, and then removed from the directory: the session ends.
    slapd.add_member(team, name)
    assert dave.login(name, password).status_code == 302
    assert _env_names(dave) == ["sfo"]
    slapd.delete_user(name)
    counts = recheck_directory(app)
    assert counts["ended"] >= 1
    assert dave.client.get("/api/v1/environments").status_code == 401
    assert dave.login(name, password).status_code == 401
    removed = [a for a in _audits(app, "auth.directory_removed") if a.target == name]
    assert removed and "not found" in json.loads(removed[-1].details)["reason"]


def test_disabled_in_the_directory_means_signed_out(app, admin, slapd):
    name, password = _name("lena"), _password()
    slapd.add_user(name, password)
    _configure(admin, slapd)
    lena = Portal(client_for(app))
    assert lena.login(name, password).status_code == 302
    assert lena.client.get("/api/v1/me").status_code == 200
    slapd.lock_user(name)
    assert recheck_directory(app)["ended"] >= 1
    assert lena.client.get("/api/v1/me").status_code == 401
    assert lena.login(name, password).status_code == 401
    slapd.unlock_user(name)
    assert lena.login(name, password).status_code == 302


def test_wrong_and_empty_passwords_are_refused_and_counted(app, admin, anon, slapd):
    name, password = _name("walt"), _password()
    slapd.add_user(name, password)
    _configure(admin, slapd)
    assert anon.login(name, "").status_code == 401  # never an anonymous bind
    assert anon.login(name, password + "x").status_code == 401
    assert user_named(app, name) is None  # no account before a right password
    assert anon.login(_name("nobody"), password).status_code == 401
    walt = Portal(client_for(app))
    assert walt.login(name, password).status_code == 302
    for _ in range(5):
        assert anon.login(name, "wrong-" + password).status_code == 401
    assert user_named(app, name).locked_until is not None
    assert anon.login(name, password).status_code == 401  # locked like a local account
    assert walt.client.get("/api/v1/me").status_code == 401  # the lock ends its sessions
    texts = {anon.login(name, "x").get_data(as_text=True).count("Sign-in failed")}
    assert texts == {1}


def test_local_accounts_keep_their_names_and_break_glass(app, admin, anon, slapd):
    slapd.add_user("bob", "Directory-Bob-1!")  # a local "bob" exists already
    _configure(admin, slapd)
    assert anon.login("bob", "Directory-Bob-1!").status_code == 401
    assert user_named(app, "bob").source == "local"
    assert Portal(client_for(app)).login("bob").status_code == 302
    assert Portal(client_for(app)).login("alice").status_code == 302


def test_starttls_memberof_and_the_test_endpoint(app, admin, slapd):
    name, password = _name("mona"), _password()
    team = _name("dba-")
    slapd.add_user(name, password, cn="Mona DBA")
    slapd.add_group(team, [name])
    _configure(admin, slapd, urls=[slapd.url_ldap], start_tls=True, group_mode="memberof")
    admin.api("POST", "/api/v1/groups", {"name": team, "role": "auditor", "source": "ldap"})
    tested = admin.api("POST", "/api/v1/settings/ldap/test", {"username": name})
    assert tested.status_code == 200, tested.json
    assert tested.json["dn"] == slapd.user_dn(name)
    assert tested.json["groups"] == [team] and tested.json["portal_groups"] == [team]
    assert tested.json["server"] == slapd.url_ldap
    missing = admin.api("POST", "/api/v1/settings/ldap/test", {"username": _name("ghost")})
    assert missing.status_code == 404
    mona = Portal(client_for(app))
    assert mona.login(name, password).status_code == 302
    assert mona.client.get("/audit/").status_code == 200  # auditor through the group
    assert mona.client.get("/api/v1/me").json["role"] in ("member", "auditor")


def test_servers_are_tried_in_order_and_certificates_verified(app, admin, anon, slapd):
    name, password = _name("otto"), _password()
    slapd.add_user(name, password)
    dead = "ldaps://127.0.0.1:1"
    _configure(admin, slapd, urls=[dead, slapd.url_ldaps])
    assert Portal(client_for(app)).login(name, password).status_code == 302
    # Without the CA the directory's certificate is not trusted: nobody signs in through it.
    untrusted = admin.api("PUT", "/api/v1/settings/ldap", {"ca_bundle": ""})
    assert untrusted.status_code == 200
    refused = anon.login(name, password)
    assert refused.status_code == 503
    tested = admin.api("POST", "/api/v1/settings/ldap/test", {"username": name})
    assert tested.status_code == 502 and "certificate" in tested.json["error"].lower()
    # Verification off (explicitly) lets it through again.
    admin.api("PUT", "/api/v1/settings/ldap", {"verify_certificates": False})
    assert Portal(client_for(app)).login(name, password).status_code == 302


def test_second_factor_policy_per_source(app, admin, slapd):
    name, password = _name("fay"), _password()
    slapd.add_user(name, password)
    _configure(admin, slapd)
    with app.app_context():
        from portal.identity import second_factor

        second_factor.set_policy("everyone")
        db.session.commit()
    fay = Portal(client_for(app))
    assert fay.login(name, password).status_code == 302
    assert fay.client.get("/api/v1/environments").status_code == 403  # must enrol first
    with app.app_context():  # the admin, too, would have to enrol first
        options.save("ldap", {"second_factor": "provider"}, "alice")
        db.session.commit()
    fay = Portal(client_for(app))
    assert fay.login(name, password).status_code == 302
    assert fay.client.get("/api/v1/environments").status_code == 200


def test_a_directory_password_confirms_a_sensitive_action(app, admin, slapd):
    name, password = _name("rita"), _password()
    slapd.add_user(name, password)
    _configure(admin, slapd)
    rita = Portal(client_for(app))
    assert rita.login(name, password).status_code == 302
    assert rita.client.get("/change-password").status_code == 302  # kept by the directory
    from portal.platform import clock

    clock.offset = clock.timedelta(minutes=20)  # the sign-in is no longer recent
    made = rita.api(
        "POST",
        "/api/v1/me/tokens",
        {"name": "cli", "scope": "read", "expires_in_days": 1, "confirm_password": "wrong"},
    )
    assert made.status_code in (401, 403)
    made = rita.api(
        "POST",
        "/api/v1/me/tokens",
        {"name": "cli", "scope": "read", "expires_in_days": 1, "confirm_password": password},
    )
    assert made.status_code == 201, made.json


def test_an_entry_cannot_take_another_users_account(app, admin, slapd):
    from ldap3 import MODIFY_ADD

    victim, mallory = _name("vic"), _name("mal")
    victim_pw, mallory_pw = _password(), _password()
    slapd.add_user(victim, victim_pw)
    slapd.add_user(mallory, mallory_pw)
    _configure(admin, slapd)
    assert Portal(client_for(app)).login(victim, victim_pw).status_code == 302
    before = user_named(app, victim).external_id
    # A second uid value naming the victim: the entry is refused, whatever it is typed as.
    slapd.admin.modify(slapd.user_dn(mallory), {"uid": [(MODIFY_ADD, [victim])]})
    mal = Portal(client_for(app))
    assert mal.login(mallory, mallory_pw).status_code == 401
    assert mal.client.get("/api/v1/me").status_code == 401
    assert user_named(app, victim).external_id == before
    # The victim leaves and a new entry takes the name: it is not the old account.
    slapd.delete_user(victim)
    slapd.add_user(victim, _password() + "n")
    newcomer = Portal(client_for(app))
    refused = newcomer.login(victim, victim_pw)
    assert refused.status_code == 401
    with app.app_context():
        assert db.session.scalar(select(User.external_id).where(User.username == victim)) == before


def test_a_reused_name_is_not_the_old_account(app, admin, slapd):
    name, old_pw, new_pw = _name("ren"), _password(), _password()
    slapd.add_user(name, old_pw)
    _configure(admin, slapd)
    assert Portal(client_for(app)).login(name, old_pw).status_code == 302
    slapd.delete_user(name)
    slapd.add_user(name, new_pw)
    refused = Portal(client_for(app)).login(name, new_pw)
    assert refused.status_code == 403
    assert "belongs to another portal account" in refused.get_data(as_text=True)


def test_removal_from_the_directory_revokes_api_tokens(app, admin, sim, slapd):
    name, password, team = _name("tina"), _password(), _name("auto-")
    slapd.add_user(name, password)
    slapd.add_group(team, [name])
    _configure(admin, slapd)
    admin.api("POST", "/api/v1/groups", {"name": team, "source": "ldap", "role": "readonly"})
    tina = Portal(client_for(app))
    assert tina.login(name, password).status_code == 302
    made = tina.api(
        "POST", "/api/v1/me/tokens", {"name": "ci", "scope": "read", "expires_in_days": 30}
    )
    assert made.status_code == 201, made.json
    bearer = {"Authorization": f"Bearer {made.json['token']}"}
    script = app.test_client()
    assert script.get("/api/v1/environments", headers=bearer).status_code == 200
    tina.post("/logout")
    assert tina.client.get("/api/v1/me").status_code == 401
    slapd.delete_user(name)
    counts = recheck_directory(app)  # no session left: the token alone makes it due
    assert counts["ended"] >= 1
    assert script.get("/api/v1/environments", headers=bearer).status_code == 401


def test_wrong_passwords_count_whatever_name_is_typed(app, admin, anon, slapd):
    name, password = _name("ali"), _password()
    slapd.add_user(name, password, mail=f"{name}@corp.example")
    _configure(
        admin,
        slapd,
        user_filter="(&(objectClass=inetOrgPerson)(|(uid={username})(mail={username})))",
    )
    assert Portal(client_for(app)).login(f"{name}@corp.example", password).status_code == 302
    assert user_named(app, name) is not None  # the account is named by uid, however typed
    for _ in range(5):
        assert anon.login(f"{name}@corp.example", "wrong-" + password).status_code == 401
    account = user_named(app, name)
    assert account.locked_until is not None
    assert anon.login(name, password).status_code == 401


def test_a_directory_that_cannot_answer_does_not_count_re_typed_passwords(app, admin, slapd):
    from portal.platform import clock

    name, password = _name("ula"), _password()
    slapd.add_user(name, password)
    _configure(admin, slapd)
    ula = Portal(client_for(app))
    assert ula.login(name, password).status_code == 302
    with app.app_context():
        options.save("ldap", {"urls": ["ldaps://127.0.0.1:1"]}, "alice")
        db.session.commit()
    clock.offset = clock.timedelta(minutes=20)
    for _ in range(6):
        made = ula.api(
            "POST",
            "/api/v1/me/tokens",
            {"name": "x", "scope": "read", "expires_in_days": 1, "confirm_password": password},
        )
        assert made.status_code == 403
    account = user_named(app, name)
    assert account.failed_logins == 0 and account.locked_until is None
    assert ula.client.get("/api/v1/me").status_code == 200


def test_a_user_renamed_in_the_directory_keeps_access_and_the_name_follows(app, admin, slapd):
    old, new, password = _name("olga"), _name("olgan"), _password()
    slapd.add_user(old, password)
    _configure(admin, slapd)
    olga = Portal(client_for(app))
    assert olga.login(old, password).status_code == 302
    made = olga.api(
        "POST", "/api/v1/me/tokens", {"name": "cli", "scope": "read", "expires_in_days": 1}
    )
    assert made.status_code == 201, made.json
    key = user_named(app, old).external_id

    # The directory renames the entry (same entryUUID, a new uid and DN).
    assert slapd.admin.modify_dn(slapd.user_dn(old), f"uid={new}", delete_old_dn=True)
    counts = recheck_directory(app)
    assert counts["ended"] == 0, counts
    assert user_named(app, old) is None and user_named(app, new).external_id == key
    assert olga.client.get("/api/v1/me").json["username"] == new  # the session lives on
    script = app.test_client(use_cookies=False)
    script.environ_base.update({"wsgi.url_scheme": "https", "HTTP_HOST": "localhost"})
    bearer = {"Authorization": f"Bearer {made.json['token']}"}
    assert script.get("/api/v1/environments", headers=bearer).status_code == 200
    renamed = _audits(app, "user.rename")
    assert json.loads(renamed[-1].details) == {"from": old, "to": new, "source": "ldap"}

    # The password re-check finds the entry by its key: the right password works.
    from portal.platform import clock

    clock.offset = clock.timedelta(minutes=20)
    confirmed = olga.api("POST", "/api/v1/me/reauth", {"password": password})
    assert confirmed.status_code == 204
    assert user_named(app, new).failed_logins == 0
    clock.offset = clock.timedelta(0)

    # Signing in with the new name opens the same account.
    again = Portal(client_for(app))
    assert again.login(new, password).status_code == 302
    assert again.client.get("/api/v1/me").json["username"] == new


def test_a_name_with_letters_beyond_ascii_is_told_why_it_cannot_sign_in(app, admin, slapd):
    name, password = "j\u00fcrgen" + secrets.token_hex(2), _password()
    slapd.add_user(name, password)
    _configure(admin, slapd)
    refused = Portal(client_for(app)).login(name, password)
    assert refused.status_code in (401, 403)
    assert "ASCII" in refused.get_data(as_text=True)
    assert user_named(app, name) is None
