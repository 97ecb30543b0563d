"""User administration: create, role, reset, disable, delete, with the last-admin guards."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from support import PASSWORD, Portal, add_directory_account, client_for

from portal.models import AuditEvent, User
from portal.platform import clock
from portal.platform.extensions import db

NEW_PASSWORD = "temporary password 1"  # noqa: S105


def _user(app, name):
    with app.app_context():
        return db.session.scalar(select(User).where(User.username == name))


def test_create_user_must_change_password(app, admin):
    response = admin.post(
        "/users/", {"username": "carol", "role": "readonly", "password": NEW_PASSWORD}
    )
    assert response.status_code == 302
    carol = _user(app, "carol")
    assert carol.role == "readonly" and carol.must_change_password
    portal = Portal(client_for(app))
    assert portal.login("carol", NEW_PASSWORD).headers["Location"].endswith("/change-password")


def test_create_user_validation(app, admin):
    bad = admin.post("/users/", {"username": "x y", "role": "root", "password": "short"})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Unknown role" in text and "at least 12" in text
    taken = admin.post("/users/", {"username": "bob", "role": "readonly", "password": NEW_PASSWORD})
    assert "taken" in taken.get_data(as_text=True)


def test_reset_password_revokes_sessions_and_forces_change(app, admin, readonly):
    bob = _user(app, "bob")
    assert readonly.client.get("/").status_code == 200
    admin.post(f"/users/{bob.id}/reset-password", {"password": NEW_PASSWORD})
    assert readonly.client.get("/").status_code == 302
    assert _user(app, "bob").must_change_password


def test_role_change_and_last_admin_guards(app, admin):
    me = _user(app, "alice")
    other_admin = _user(app, "admin")
    assert admin.post(f"/users/{me.id}/role", {"role": "readonly"}).status_code == 409
    assert admin.post(f"/users/{me.id}/delete").status_code == 409
    assert admin.post(f"/users/{me.id}/disable", {"disabled": "1"}).status_code == 409
    assert admin.post(f"/users/{other_admin.id}/role", {"role": "readonly"}).status_code == 302
    # alice is now the last admin: still cannot demote or delete herself
    assert admin.post(f"/users/{me.id}/role", {"role": "readonly"}).status_code == 409
    assert _user(app, "alice").role == "admin"
    bob = _user(app, "bob")
    assert admin.post(f"/users/{bob.id}/role", {"role": "admin"}).status_code == 302
    assert _user(app, "bob").role == "admin"


def test_disable_and_delete(app, admin, readonly):
    bob = _user(app, "bob")
    admin.post(f"/users/{bob.id}/disable", {"disabled": "1"})
    assert readonly.client.get("/").status_code == 302
    assert Portal(client_for(app)).login("bob").status_code == 401
    admin.post(f"/users/{bob.id}/disable", {"disabled": "0"})
    assert Portal(client_for(app)).login("bob").status_code == 302
    admin.post(f"/users/{bob.id}/delete")
    assert _user(app, "bob") is None
    with app.app_context():
        actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"user.disable", "user.enable", "user.delete"} <= actions


def test_user_management_asks_for_password_after_15_minutes(app, admin):
    clock.offset = timedelta(minutes=16)
    refused = admin.post(
        "/users/", {"username": "dave", "role": "readonly", "password": NEW_PASSWORD}
    )
    assert refused.status_code == 403
    assert _user(app, "dave") is None
    accepted = admin.post(
        "/users/",
        {
            "username": "dave",
            "role": "readonly",
            "password": NEW_PASSWORD,
            "confirm_password": PASSWORD,
        },
    )
    assert accepted.status_code == 302
    assert _user(app, "dave") is not None


def test_cli_users(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "list"])
    assert "alice\tadmin\tactive" in result.output
    result = runner.invoke(
        args=["users", "create", "erin", "--role", "admin"],
        input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert _user(app, "erin").role == "admin"
    result = runner.invoke(args=["users", "set-role", "erin", "readonly"])
    assert result.exit_code == 0 and _user(app, "erin").role == "readonly"
    result = runner.invoke(args=["users", "reset-password", "erin"], input="short\nshort\n")
    assert result.exit_code != 0 and "at least 12" in result.output
    result = runner.invoke(
        args=["users", "reset-password", "erin"], input=f"{NEW_PASSWORD}x\n{NEW_PASSWORD}x\n"
    )
    assert result.exit_code == 0
    assert _user(app, "erin").must_change_password
    result = runner.invoke(args=["users", "set-role", "nobody", "admin"])
    assert result.exit_code != 0 and "no user" in result.output


def test_disabled_admin_can_be_demoted_while_one_other_admin_is_active(app, admin):
    other_admin = _user(app, "admin")
    assert admin.post(f"/users/{other_admin.id}/disable", {"disabled": "1"}).status_code == 302
    # alice is the only active admin; demoting the disabled admin leaves her so.
    assert admin.post(f"/users/{other_admin.id}/role", {"role": "readonly"}).status_code == 302
    assert _user(app, "admin").role == "readonly"


def test_cli_applies_the_same_last_active_admin_rule(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "set-role", "alice", "readonly"]).exit_code == 0
    # admin is now the last active admin.
    refused = runner.invoke(args=["users", "set-role", "admin", "readonly"])
    assert refused.exit_code == 1
    assert "last active admin cannot be demoted" in refused.output
    assert _user(app, "admin").role == "admin"
    with app.app_context():
        db.session.get(User, _user(app, "alice").id).role = "admin"
        db.session.get(User, _user(app, "admin").id).disabled = True
        db.session.commit()
    # A disabled admin is not an active one: demoting it changes nothing.
    assert runner.invoke(args=["users", "set-role", "admin", "readonly"]).exit_code == 0
    assert _user(app, "admin").role == "readonly"


def test_services_do_not_commit(app):
    from portal.identity import users

    with app.app_context():
        users.add_user("carol", "readonly", NEW_PASSWORD, actor="test")
        db.session.rollback()
        assert db.session.scalar(select(User).where(User.username == "carol")) is None
        assert not db.session.scalars(select(AuditEvent).where(AuditEvent.target == "carol")).all()


def test_cli_create_applies_the_user_name_rule_of_the_page(app):
    runner = app.test_cli_runner()
    for name in ("a", "bad name", ".dot", "x" * 65):
        result = runner.invoke(
            args=["users", "create", name], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
        )
        assert result.exit_code != 0 and "2 to 64 letters" in result.output, name
        assert _user(app, name) is None
    taken = runner.invoke(
        args=["users", "create", "alice"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert taken.exit_code != 0 and "taken" in taken.output


def test_cli_knows_directory_accounts(app):
    add_directory_account(app, "dora")
    runner = app.test_cli_runner()
    assert "dora\tmember\tactive\tldap" in runner.invoke(args=["users", "list"]).output
    refused = runner.invoke(args=["users", "reset-password", "dora"])
    assert refused.exit_code != 0 and "reset the password there" in refused.output


def test_nobody_changes_their_own_role_disables_or_deletes_themselves(app, admin):
    """One rule in the users service, for the page and the API alike; another admin may."""
    alice = _user(app, "alice")
    for path, form, message in (
        (f"/users/{alice.id}/role", {"role": "readonly"}, "You cannot change your own role."),
        (f"/users/{alice.id}/disable", {"disabled": "1"}, "You cannot disable yourself."),
        (f"/users/{alice.id}/delete", {}, "You cannot delete yourself."),
    ):
        refused = admin.post(path, form)
        page = admin.client.get("/users/").get_data(as_text=True)
        assert refused.status_code in (302, 409) and message in (
            refused.get_data(as_text=True) + page
        ), path
    answer = admin.api("PATCH", f"/api/v1/users/{alice.id}", json={"role": "readonly"})
    assert answer.status_code == 409 and answer.json["error"] == "You cannot change your own role."
    alice = _user(app, "alice")
    assert (alice.role, alice.disabled) == ("admin", False)
    # Another admin may change alice's role.
    with app.app_context():
        db.session.add(User(username="dora", role="admin", password_hash=alice.password_hash))
        db.session.commit()
    dora = Portal(client_for(app))
    assert dora.login("dora").status_code == 302
    assert (
        dora.api("PATCH", f"/api/v1/users/{alice.id}", json={"role": "readonly"}).status_code == 200
    )
    assert _user(app, "alice").role == "readonly"


def test_the_oneself_rules_live_in_the_service(app):
    from portal.identity import users

    with app.app_context():
        alice = db.session.scalar(select(User).where(User.username == "alice"))
        for call in (
            lambda: users.change_role(alice, "readonly", by=alice),
            lambda: users.set_disabled(alice, True, by=alice),
            lambda: users.delete_user(alice, by=alice),
        ):
            try:
                call()
            except users.UserRuleError:
                continue
            raise AssertionError("a rule about oneself did not hold")
        db.session.rollback()
