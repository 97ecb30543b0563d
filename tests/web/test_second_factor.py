"""Second factor in process: authenticator app, recovery codes, the sign-in step, the policy,
admin and command-line reset, and secrets kept out of the database file and the logs."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select
from support import PASSWORD, Portal, client_for

from portal.models import AuditEvent, RecoveryCode, User
from portal.platform import clock
from portal.platform.extensions import db


def _code(secret: str, steps_ahead: int = 0) -> str:
    moment = clock.now().replace(tzinfo=clock.UTC) + timedelta(seconds=30 * steps_ahead)
    return pyotp.TOTP(secret).at(moment)


def _mid_step(ahead: timedelta) -> timedelta:
    """A clock offset of about `ahead` that puts now 5 s into a 30-second TOTP step, so a
    code made now is still of the same step when the portal checks it."""
    moment = clock.now() - clock.offset + ahead
    return ahead + timedelta(seconds=5 - moment.timestamp() % 30)


def _enrol(portal: Portal) -> tuple[str, list[str]]:
    started = portal.api("POST", "/api/v1/me/second-factor/totp", json={"password": PASSWORD})
    assert started.status_code == 200, started.json
    secret = started.json["secret"]
    assert started.json["otpauth_uri"].startswith("otpauth://totp/")
    confirmed = portal.api(
        "POST", "/api/v1/me/second-factor/totp/confirm", json={"code": _code(secret)}
    )
    assert confirmed.status_code == 200, confirmed.json
    return secret, confirmed.json["recovery_codes"]


def _audit(app, action: str, outcome: str = "success") -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.action == action, AuditEvent.outcome == outcome
            )
        )


def _verify(portal: Portal, code: str):
    return portal.client.post("/login/verify", data={"code": code, "csrf_token": portal.csrf()})


@pytest.fixture
def enrolled(app, readonly):
    """bob (read-only) with a confirmed authenticator app: (secret, recovery codes). The clock
    is held 5 s into a TOTP step, so a test's code of "now" is the one the confirmation used
    and a test's step forward is a step the confirmation did not use."""
    clock.offset = _mid_step(timedelta(0))
    return _enrol(readonly)


def test_enrolment_needs_the_password_and_a_right_first_code(app, readonly):
    wrong = readonly.api("POST", "/api/v1/me/second-factor/totp", json={"password": "nope"})
    assert wrong.status_code == 403
    started = readonly.api("POST", "/api/v1/me/second-factor/totp", json={"password": PASSWORD})
    secret = started.json["secret"]
    refused = readonly.api("POST", "/api/v1/me/second-factor/totp/confirm", json={"code": "000000"})
    assert refused.status_code == 409 and "not correct" in refused.json["error"]
    listed = readonly.api("GET", "/api/v1/me/second-factor").json
    assert listed["totp"] == {"enabled": False, "confirmed_at": None, "pending": True}
    confirmed = readonly.api(
        "POST", "/api/v1/me/second-factor/totp/confirm", json={"code": _code(secret)}
    )
    codes = confirmed.json["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}", c) for c in codes)
    listed = readonly.api("GET", "/api/v1/me/second-factor").json
    assert listed["totp"]["enabled"] and not listed["totp"]["pending"]
    assert listed["recovery_codes_left"] == 10
    assert secret not in str(listed)
    assert _audit(app, "user.second_factor.enrol") == 1
    assert _audit(app, "user.second_factor.confirm") == 1
    assert _audit(app, "user.second_factor.confirm", "failure") == 1


def test_sign_in_asks_for_the_code_and_nothing_answers_before_it(app, enrolled):
    secret, _ = enrolled
    portal = Portal(client_for(app))
    response = portal.login("bob")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login/verify")
    assert portal.client.get("/").status_code == 302  # not signed in yet
    assert portal.client.get("/api/v1/me").status_code == 401
    assert portal.client.get("/api/v1/environments").status_code == 401
    page = portal.client.get("/login/verify").get_data(as_text=True)
    assert 'name="code"' in page and "csrf_token" in page
    # The code that confirmed the app was used: it is refused (replay), not counted as wrong.
    assert _verify(portal, _code(secret)).status_code == 401
    assert _audit(app, "auth.second_factor", "replayed") == 1
    assert _audit(app, "auth.second_factor", "failure") == 0
    clock.offset += timedelta(seconds=30)
    done = _verify(portal, _code(secret))
    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert portal.client.get("/api/v1/me").json["username"] == "bob"
    # The same code again, in another sign-in: refused.
    again = Portal(client_for(app))
    again.login("bob")
    assert _verify(again, _code(secret)).status_code == 401


def test_a_code_one_step_either_side_is_accepted_two_are_not(app, enrolled):
    secret, _ = enrolled
    clock.offset = _mid_step(timedelta(minutes=2))
    portal = Portal(client_for(app))
    portal.login("bob")
    assert _verify(portal, _code(secret, steps_ahead=2)).status_code == 401
    assert _verify(portal, _code(secret, steps_ahead=-2)).status_code == 401
    assert _verify(portal, _code(secret, steps_ahead=-1)).status_code == 302


def test_the_step_expires_after_five_minutes(app, enrolled):
    secret, _ = enrolled
    portal = Portal(client_for(app))
    portal.login("bob")
    clock.offset += timedelta(minutes=5, seconds=31)
    expired = _verify(portal, _code(secret))
    assert expired.status_code == 302 and expired.headers["Location"].startswith("/login")
    assert portal.client.get("/api/v1/me").status_code == 401


def test_wrong_codes_lock_the_account_like_wrong_passwords(app, enrolled):
    secret, _ = enrolled
    portal = Portal(client_for(app))
    portal.login("bob")
    for _ in range(4):
        assert _verify(portal, "123456").status_code == 401
    locked = _verify(portal, "123456")
    assert locked.status_code == 302 and locked.headers["Location"].startswith("/login")
    assert _audit(app, "auth.lockout", "failure") == 1
    clock.offset += timedelta(seconds=60)
    assert Portal(client_for(app)).login("bob").status_code == 401  # locked, password right


def test_a_right_password_does_not_reset_the_count_of_wrong_codes(app, enrolled):
    for _ in range(2):
        portal = Portal(client_for(app))
        portal.login("bob")
        for _ in range(2):
            _verify(portal, "123456")
    portal = Portal(client_for(app))
    assert portal.login("bob").status_code == 302  # four wrong codes so far
    _verify(portal, "123456")
    assert _audit(app, "auth.lockout", "failure") == 1


def test_a_recovery_code_works_once_and_is_audited(app, enrolled):
    _, codes = enrolled
    portal = Portal(client_for(app))
    portal.login("bob")
    done = _verify(portal, codes[3].upper().replace("-", " "))
    assert done.status_code == 302
    page = portal.client.get("/").get_data(as_text=True)
    assert "recovery code; 9 left" in page
    assert _audit(app, "auth.recovery_code") == 1
    again = Portal(client_for(app))
    again.login("bob")
    assert _verify(again, codes[3]).status_code == 401
    with app.app_context():
        left = db.session.scalar(
            select(func.count(RecoveryCode.id)).where(RecoveryCode.used_at.is_(None))
        )
    assert left == 9


def test_regenerating_codes_needs_the_password_and_ends_the_old_ones(app, readonly, enrolled):
    _, old = enrolled
    assert (
        readonly.api(
            "POST", "/api/v1/me/second-factor/recovery-codes", json={"password": "nope"}
        ).status_code
        == 403
    )
    new = readonly.api(
        "POST", "/api/v1/me/second-factor/recovery-codes", json={"password": PASSWORD}
    ).json["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    portal = Portal(client_for(app))
    portal.login("bob")
    assert _verify(portal, old[0]).status_code == 401
    assert _verify(portal, new[0]).status_code == 302


def test_removing_the_app_needs_the_password(app, readonly, enrolled):
    refused = readonly.api("DELETE", "/api/v1/me/second-factor/totp", json={"password": "x"})
    assert refused.status_code == 403
    removed = readonly.api("DELETE", "/api/v1/me/second-factor/totp", json={"password": PASSWORD})
    assert removed.status_code == 204
    assert Portal(client_for(app)).login("bob").headers["Location"] == "/"
    assert _audit(app, "user.second_factor.remove") == 1


def test_policy_everyone_forces_enrolment_first(app, admin, readonly):
    _enrol(admin)
    policy = admin.api(
        "PATCH", "/api/v1/settings/security", json={"require_second_factor": "everyone"}
    )
    assert policy.status_code == 200 and policy.json == {"require_second_factor": "everyone"}
    assert _audit(app, "settings.security") == 1
    portal = Portal(client_for(app))
    portal.login("bob")
    blocked = portal.client.get("/")
    assert blocked.status_code == 302 and blocked.headers["Location"] == "/account/security"
    assert portal.api("GET", "/api/v1/environments").status_code == 403
    assert portal.api("GET", "/api/v1/me").json["second_factor_required"] is True
    page = portal.client.get("/account/security").get_data(as_text=True)
    assert "requires a second factor" in page
    secret, _ = _enrol(portal)
    assert portal.client.get("/").status_code == 200
    # The last factor cannot be removed while the policy requires one.
    kept = portal.api("DELETE", "/api/v1/me/second-factor/totp", json={"password": PASSWORD})
    assert kept.status_code == 409 and "policy" in kept.json["error"]


def test_policy_admins_leaves_readonly_users_alone(app, admin, readonly):
    secret, _ = _enrol(admin)
    admin.api("PATCH", "/api/v1/settings/security", json={"require_second_factor": "admins"})
    assert readonly.client.get("/").status_code == 200
    with app.app_context():
        second = db.session.scalar(select(User).where(User.username == "admin"))
        second.role, second.must_change_password = "admin", False
        second.password_hash = db.session.scalar(
            select(User.password_hash).where(User.username == "bob")
        )
        db.session.commit()
    other_admin = Portal(client_for(app))
    assert other_admin.login("admin").headers["Location"] == "/"
    assert other_admin.client.get("/").headers["Location"] == "/account/security"


def test_policy_value_is_checked(admin):
    bad = admin.api("PATCH", "/api/v1/settings/security", json={"require_second_factor": "all"})
    assert bad.status_code == 422
    assert admin.api("GET", "/api/v1/settings/security").json == {"require_second_factor": "none"}


def test_admin_reset_lets_the_user_enrol_again(app, admin, enrolled):
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob")).id
    reset = admin.post(f"/users/{bob}/reset-second-factor")
    assert reset.status_code == 302
    _enrol(admin)
    admin.api("PATCH", "/api/v1/settings/security", json={"require_second_factor": "everyone"})
    assert _audit(app, "user.second_factor.reset") == 1
    portal = Portal(client_for(app))
    assert portal.login("bob").headers["Location"] == "/"  # no code asked
    assert portal.client.get("/").headers["Location"] == "/account/security"  # enrol again


def test_command_line_reset_for_the_locked_out_last_admin(app):
    from portal.cli import reset_second_factor

    admin = Portal(client_for(app))
    admin.login("alice")
    _enrol(admin)
    for _ in range(5):  # and then lost the phone, and locked the account trying
        locked_out = Portal(client_for(app))
        if locked_out.login("alice").status_code == 302:
            _verify(locked_out, "000000")
    result = app.test_cli_runner().invoke(reset_second_factor, ["alice"])
    assert result.exit_code == 0, result.output
    assert Portal(client_for(app)).login("alice").headers["Location"] == "/"


def test_the_security_page_sets_up_an_app_with_a_qr_code_drawn_here(app, readonly):
    refused = readonly.post("/account/security/totp", data={"password": "wrong one"})
    assert refused.status_code == 403
    page = readonly.post("/account/security/totp", data={"password": PASSWORD})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in html
    key = re.search(r'<code class="secret-key"[^>]*>([A-Z2-7 ]+)</code>', html).group(1)
    secret = key.replace(" ", "")
    assert secret not in re.sub(r"<code class=\"secret-key\"[^>]*>[^<]*</code>", "", html)
    wrong = readonly.post("/account/security/totp/confirm", data={"code": "000000"})
    assert wrong.status_code == 400 and "not correct" in wrong.get_data(as_text=True)
    done = readonly.post("/account/security/totp/confirm", data={"code": _code(secret)})
    codes = re.findall(r"<li><code>([a-z2-9-]+)</code></li>", done.get_data(as_text=True))
    assert len(codes) == 10
    security = readonly.client.get("/account/security").get_data(as_text=True)
    assert "10 unused recovery codes" in security and secret not in security


@pytest.mark.own_database  # reads the database file
def test_totp_secrets_and_recovery_codes_are_never_stored_or_logged_in_clear(
    tmp_path, app, readonly, enrolled
):
    secret, codes = enrolled
    portal = Portal(client_for(app))
    portal.login("bob")
    _verify(portal, codes[0])
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("vcf_credentials.db*"))
    logs = b"".join(p.read_bytes() for p in tmp_path.rglob("*.log"))
    assert blobs
    for text in [secret, *codes, *(c.replace("-", "") for c in codes)]:
        for encoding in ("utf-8", "utf-16-le"):
            assert text.encode(encoding) not in blobs, "a second-factor secret is in the database"
            assert text.encode(encoding) not in logs, "a second-factor secret is in a log"


def test_guessable_passwords_are_refused_with_the_reason(app, admin):
    form = {"current_password": PASSWORD, "new_password": "adminadminadmin"}
    form["confirm_password"] = form["new_password"]
    response = admin.post("/change-password", data=form)
    assert response.status_code == 400
    assert "Too easy to guess" in response.get_data(as_text=True)


def test_an_admin_without_a_factor_cannot_require_one_of_themselves(app, admin):
    refused = admin.api(
        "PATCH", "/api/v1/settings/security", json={"require_second_factor": "admins"}
    )
    assert refused.status_code == 409 and "your own second factor" in refused.json["error"]
    page = admin.post("/settings/security", data={"require_second_factor": "everyone"})
    assert page.status_code == 409
    _enrol(admin)
    assert (
        admin.api(
            "PATCH", "/api/v1/settings/security", json={"require_second_factor": "admins"}
        ).status_code
        == 200
    )


@pytest.mark.own_database  # threads on connections of their own
def test_parallel_sign_ins_with_one_right_code_count_no_wrong_code(app, enrolled):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    secret, _ = enrolled
    clock.offset += timedelta(seconds=30)  # a step the confirmation did not use
    portals = [Portal(client_for(app)) for _ in range(10)]
    for portal in portals:
        assert portal.login("bob").status_code == 302
    tokens = [portal.csrf() for portal in portals]
    code = _code(secret)
    start = threading.Barrier(len(portals))

    def verify(i):
        start.wait()
        return portals[i].client.post("/login/verify", data={"code": code, "csrf_token": tokens[i]})

    with ThreadPoolExecutor(max_workers=len(portals)) as pool:
        answers = list(pool.map(verify, range(len(portals))))
    assert sorted(a.status_code for a in answers) == [302] + [401] * 9
    assert "used already" in next(a for a in answers if a.status_code == 401).get_data(True)
    assert _audit(app, "auth.second_factor", "failure") == 0
    assert _audit(app, "auth.second_factor", "replayed") == 9
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        assert bob.failed_logins == 0 and bob.locked_until is None


def test_setting_up_a_factor_ends_the_users_other_sessions(app, readonly):
    elsewhere = Portal(client_for(app))
    assert elsewhere.login("bob").status_code == 302
    assert elsewhere.client.get("/api/v1/me").status_code == 200
    _enrol(readonly)
    assert elsewhere.client.get("/api/v1/me").status_code == 401  # ended
    assert readonly.client.get("/api/v1/me").status_code == 200  # the one that set it up
