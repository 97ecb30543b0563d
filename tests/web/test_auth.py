"""Sign-in, forced change, sessions, lockout, CSRF, cookies and headers."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from markupsafe import escape
from sqlalchemy import func, select
from support import PASSWORD, Portal, client_for, make_app

from portal.identity.signin import REFUSED, lock_account
from portal.models import AuditEvent, LoginFailure, User, UserSession
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import verify_password


def _audit(app, action):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_login_page_has_form_and_csrf_meta(anon):
    html = anon.client.get("/login").get_data(as_text=True)
    assert 'name="username"' in html and 'name="password"' in html
    assert 'name="csrf_token"' in html
    assert '<meta name="csrf-token" content="' in html


def test_first_admin_must_change_default_password(tmp_path):
    app = make_app(tmp_path)
    portal = Portal(client_for(app))
    response = portal.login("admin", "admin")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/change-password")
    for path in ("/", "/users/", "/audit/"):
        blocked = portal.client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"].endswith(
            "/change-password"
        )
    too_short = portal.post(
        "/change-password",
        {"current_password": "admin", "new_password": "short", "confirm_password": "short"},
    )
    assert too_short.status_code == 400
    assert "at least 12" in too_short.get_data(as_text=True)
    common = portal.post(
        "/change-password",
        {
            "current_password": "admin",
            "new_password": "password1234",
            "confirm_password": "password1234",
        },
    )
    assert "too common" in common.get_data(as_text=True)
    changed = portal.post(
        "/change-password",
        {"current_password": "admin", "new_password": PASSWORD, "confirm_password": PASSWORD},
    )
    assert changed.status_code == 302
    assert portal.client.get("/").status_code == 200
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "admin"))
        assert not user.must_change_password
        assert user.password_hash.startswith("pbkdf2:")  # the test hasher; production is scrypt


def test_admin_password_from_environment_needs_no_change(tmp_path):
    app = make_app(tmp_path, PORTAL_ADMIN_PASSWORD="a long first password")
    portal = Portal(client_for(app))
    assert portal.login("admin", "admin").status_code == 401
    response = portal.login("admin", "a long first password")
    assert response.headers["Location"].endswith("/")


def test_session_id_changes_at_login_and_logout_revokes(app, anon):
    client = anon.client
    client.get("/login")
    before = client.get_cookie("portal_session")
    anon.login("alice")
    after = client.get_cookie("portal_session")
    assert before is None or before.value != after.value
    assert client.get("/").status_code == 200
    stolen = after.value
    anon.post("/logout")
    assert client.get("/").status_code == 302
    replay = client_for(app)
    replay.set_cookie("portal_session", stolen, domain="localhost")
    response = replay.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert _audit(app, "auth.logout")


def test_idle_and_absolute_timeouts(app, admin):
    assert admin.client.get("/").status_code == 200
    clock.offset = timedelta(minutes=29)
    assert admin.client.get("/").status_code == 200
    clock.offset = timedelta(minutes=29 + 31)
    assert admin.client.get("/").status_code == 302
    other = Portal(client_for(app))
    clock.offset = timedelta(0)
    other.login("alice")
    for minutes in range(20, 12 * 60, 20):
        clock.offset = timedelta(minutes=minutes)
        assert other.client.get("/").status_code == 200
    clock.offset = timedelta(hours=12, minutes=1)
    assert other.client.get("/").status_code == 302


def test_lockout_after_five_failures_holds_across_restart(tmp_path, app):
    portal = Portal(client_for(app))
    for _ in range(5):
        response = portal.login("alice", "wrong password!")
        assert response.status_code == 401
        assert escape(REFUSED) in response.get_data(as_text=True)
    correct = portal.login("alice")
    assert correct.status_code == 401 and escape(REFUSED) in correct.get_data(as_text=True)
    # A new process on the same database (a restart, another worker) keeps the lock.
    again = make_app(tmp_path)
    assert Portal(client_for(again)).login("alice").status_code == 401
    clock.offset = timedelta(minutes=16)
    assert Portal(client_for(again)).login("alice").status_code == 302
    assert _audit(app, "auth.lockout")


def test_per_address_limit_ignores_untrusted_forwarded_for(app):
    portal = Portal(client_for(app))
    for i in range(20):
        portal.login(
            f"nobody{i}",
            "wrong password!",
        )
    blocked = portal.client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": portal.csrf()},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert blocked.status_code == 429
    with app.app_context():
        ips = set(db.session.scalars(select(LoginFailure.ip)))
    assert ips == {"127.0.0.1"}


def test_forwarded_for_honoured_from_trusted_proxy(tmp_path):
    app = make_app(tmp_path, PORTAL_TRUSTED_PROXIES="127.0.0.1")
    portal = Portal(client_for(app))
    token = portal.csrf()
    portal.client.post(
        "/login",
        data={"username": "x", "password": "y", "csrf_token": token},
        headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
    )
    with app.app_context():
        assert db.session.scalar(select(LoginFailure.ip)) == "203.0.113.9"


def test_failed_login_username_cannot_forge_log_lines(app, anon):
    anon.login("evil\r\n2026-01-01 INFO forged", "x")
    event = _audit(app, "auth.login")[-1]
    assert "\n" not in event.actor and "\r" not in event.actor
    assert "\\r\\n" in event.actor


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"]
)
def test_next_redirect_stays_on_site(anon, target):
    response = anon.login("alice", next=target)
    assert response.headers["Location"] == "/"


def test_next_redirect_to_local_path(anon):
    response = anon.login("alice", next="/audit/?actor=bob")
    assert response.headers["Location"] == "/audit/?actor=bob"


def test_csrf_required_on_forms_and_json(app, admin):
    response = admin.client.post("/logout")
    assert response.status_code == 400
    json_refused = admin.client.post("/users/", json={"username": "x"})
    assert json_refused.status_code == 400
    cross = admin.client.post(
        "/logout",
        data={"csrf_token": admin.csrf_token_for_session()},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert admin.client.get("/").status_code == 200


def test_cookie_flags(anon):
    anon.login("alice")
    header = [h for h in anon.client.get("/").headers.getlist("Set-Cookie")]
    login_response = anon.login("alice")
    cookies = login_response.headers.getlist("Set-Cookie") + header
    session_cookie = next(c for c in cookies if c.startswith("portal_session="))
    lowered = session_cookie.lower()
    assert "secure" in lowered and "httponly" in lowered and "samesite=lax" in lowered
    assert "path=/" in lowered and "domain=" not in lowered


def test_security_headers_everywhere(anon, admin):
    for client, path in (
        (anon.client, "/login"),
        (admin.client, "/"),
        (anon.client, "/healthz"),
        (anon.client, "/static/css/portal.css"),
        (anon.client, "/nope"),
    ):
        response = client.get(path)
        headers = response.headers
        response.close()
        csp = headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        max_age = int(headers["Strict-Transport-Security"].split("max-age=")[1].split(";")[0])
        assert max_age >= 15724800
        assert headers["Referrer-Policy"]
        assert "Server" not in headers
    assert admin.client.get("/").headers["Cache-Control"] == "no-store"


def test_trace_refused(anon):
    assert anon.client.open("/", method="TRACE").status_code == 405


@pytest.mark.own_database  # the health check opens connections of its own
def test_healthz(anon):
    response = anon.client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok" and response.json["database"] == "ok"


@pytest.mark.own_database  # threads on connections of their own
def test_healthz_reports_broken_database(app, anon, tmp_path):
    with app.app_context():
        db.engine.dispose()
    db_file = tmp_path / "data" / "vcf_credentials.db"
    db_file.unlink()
    db_file.mkdir()  # a directory where the file was: SQLite cannot open it
    response = anon.client.get("/healthz")
    assert response.status_code == 503
    assert response.json["failing"] == ["database"]


def test_user_sessions_recorded(app, admin):
    with app.app_context():
        rows = db.session.scalars(select(UserSession)).all()
    assert any(r.revoked_at is None for r in rows)


def _wrong_guess(app, i: int) -> int:
    """One sign-in as alice with a wrong password, from a browser of its own."""
    portal = Portal(client_for(app))
    token = portal.csrf()
    return portal.client.post(
        "/login",
        data={"username": "alice", "password": f"wrong guess {i}", "csrf_token": token},
    ).status_code


@pytest.mark.own_database  # threads on connections of their own
def test_parallel_guesses_are_bounded(app):
    from concurrent.futures import ThreadPoolExecutor

    guess = partial(_wrong_guess, app)

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(guess, range(16)))
    assert codes == [401] * 16, codes
    with app.app_context():
        checked = db.session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.action == "auth.login", AuditEvent.outcome == "failure"
            )
        )
    assert checked <= 5, checked  # at most five passwords were actually checked
    assert Portal(client_for(app)).login("alice").status_code == 401  # and the account is locked
    assert _audit(app, "auth.lockout")


@pytest.mark.own_database  # threads on connections of their own
def test_parallel_correct_sign_ins_do_not_lock_the_account(app):
    from concurrent.futures import ThreadPoolExecutor

    signed_in = [Portal(client_for(app)) for _ in range(3)]
    for portal in signed_in:
        portal.login("alice")

    def sign_in(_):
        return Portal(client_for(app)).login("alice").status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(sign_in, range(12)))
    assert codes == [302] * 12, codes
    assert not _audit(app, "auth.lockout")
    assert all(p.client.get("/").status_code == 200 for p in signed_in)  # sessions kept
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        assert user.failed_logins == 0 and user.locked_until is None and user.login_checks == 0


def test_refusals_do_not_tell_whether_an_account_exists_or_is_locked(app):
    for _ in range(5):
        Portal(client_for(app)).login("alice", "wrong password!")
    locked = Portal(client_for(app)).login("alice")
    unknown = Portal(client_for(app)).login("nobody-here")
    disabled_or_wrong = Portal(client_for(app)).login("bob", "wrong password!")
    for response in (locked, unknown, disabled_or_wrong):
        assert response.status_code == 401
        assert escape(REFUSED) in response.get_data(as_text=True)
        assert "locked" not in response.get_data(as_text=True).replace(escape(REFUSED), "")


@pytest.mark.own_database  # threads on connections of their own
def test_parallel_guesses_per_address_are_bounded(app):
    from concurrent.futures import ThreadPoolExecutor

    def guess(i):
        portal = Portal(client_for(app))
        token = portal.csrf()
        return portal.client.post(
            "/login", data={"username": f"user{i}", "password": "wrong", "csrf_token": token}
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(guess, range(40)))
    assert codes.count(401) <= 20 and codes.count(429) >= 20, codes


def test_wrong_reauth_passwords_lock_the_account(app, admin):
    for _ in range(4):
        refused = admin.api(
            "POST",
            "/api/v1/environments/definitions/export",
            json={"include_passwords": True, "confirm_password": "nope"},
        )
        assert refused.status_code == 403
    admin.api(
        "POST",
        "/api/v1/environments/definitions/export",
        json={"include_passwords": True, "confirm_password": "nope"},
    )
    assert admin.client.get("/").status_code == 302  # signed out
    assert Portal(client_for(app)).login("alice").status_code == 401  # locked
    assert _audit(app, "auth.lockout")


def test_wrong_current_password_counts_too(app, admin):
    for _ in range(5):
        admin.post(
            "/change-password",
            {"current_password": "bad", "new_password": "x" * 14, "confirm_password": "x" * 14},
        )
    assert admin.client.get("/").status_code == 302
    assert Portal(client_for(app)).login("alice").status_code == 401


def test_signing_in_again_ends_the_previous_session(app, admin):
    with app.app_context():
        before = db.session.scalars(
            select(UserSession).where(UserSession.revoked_at.is_(None))
        ).all()
    admin.login("alice")
    with app.app_context():
        live = db.session.scalars(select(UserSession).where(UserSession.revoked_at.is_(None))).all()
    assert len(live) == len(before)


def test_background_refreshes_do_not_keep_a_session_alive(admin):
    background = {"X-Portal-Background": "1"}
    for minutes in (10, 20, 29):
        clock.offset = timedelta(minutes=minutes)
        assert admin.client.get("/api/v1/environments", headers=background).status_code == 200
    clock.offset = timedelta(minutes=31)
    assert admin.client.get("/api/v1/environments", headers=background).status_code == 401


def test_a_refused_sign_in_keeps_the_user_name_escaped_and_never_the_password(anon):
    refused = anon.login('alice"><script>x</script>', "typed-secret-1")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 401
    assert 'value="alice&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in html
    assert "typed-secret-1" not in html
    assert 'id="password" name="password" type="password" required autofocus' in html
    fresh = anon.client.get("/login").get_data(as_text=True)
    assert 'value=""' in fresh and 'name="username" value="" required autofocus' in fresh


@pytest.mark.own_database  # threads on connections of their own
def test_one_lockout_is_one_record(app):
    """Parallel wrong passwords lock the account once per window: one audit record (which
    the metric counts) and one alert, however the requests interleave."""
    from concurrent.futures import ThreadPoolExecutor

    guess = partial(_wrong_guess, app)

    for window in range(4):
        clock.offset = timedelta(minutes=16 * window)  # the previous lock has run out
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(guess, range(12))) == {401}
        assert len(_audit(app, "auth.lockout")) == window + 1
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        lock_account(user)  # already locked: nothing more is recorded
        db.session.commit()
    assert len(_audit(app, "auth.lockout")) == 4


@pytest.mark.own_database  # threads on connections of their own
def test_parallel_password_changes_exactly_one_wins(app):
    """Six windows change one password at once: one succeeds, the others say it changed
    meanwhile (or find their session ended by the winner); only the winner's works."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    windows = [Portal(client_for(app)) for _ in range(6)]
    for window in windows:
        assert window.login("bob").status_code == 302
    tokens = [window.csrf_token_for_session() for window in windows]
    start = threading.Barrier(len(windows))

    def change(i):
        start.wait()
        new = f"A brand new passphrase {i}"
        data = {
            "csrf_token": tokens[i],
            "current_password": PASSWORD,
            "new_password": new,
            "confirm_password": new,
        }
        return windows[i].client.post("/change-password", data=data)

    with ThreadPoolExecutor(max_workers=len(windows)) as pool:
        answers = list(pool.map(change, range(len(windows))))
    won = [i for i, a in enumerate(answers) if a.status_code == 302 and a.location == "/"]
    assert len(won) == 1, [(a.status_code, a.location) for a in answers]
    for i, answer in enumerate(answers):
        if i != won[0]:
            # 409: changed meanwhile; or the winner had ended this session already: the form
            # expired (400) or the sign-in page (302).
            ended = answer.status_code == 400 or "/login" in (answer.location or "")
            assert answer.status_code == 409 or ended, (
                answer.status_code,
                answer.get_data(as_text=True)[:300],
            )
    with app.app_context():
        stored = db.session.scalar(select(User).where(User.username == "bob")).password_hash
    works = [
        i for i in range(len(windows)) if verify_password(stored, f"A brand new passphrase {i}")
    ]
    assert works == won
    assert (
        Portal(client_for(app)).login("bob", f"A brand new passphrase {won[0]}").status_code == 302
    )


def test_an_admin_sees_a_locked_user_and_unlocks_them(app, admin):
    for _ in range(5):
        assert Portal(client_for(app)).login("bob", "wrong password!").status_code == 401
    listed = {u["username"]: u for u in admin.client.get("/api/v1/users").json["items"]}
    assert listed["bob"]["locked_until"].endswith("Z")
    assert listed["alice"]["locked_until"] is None
    page = admin.client.get("/users/").get_data(as_text=True)
    assert "locked until" in page and "Unlock" in page
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob")).id
    assert admin.post(f"/users/{bob}/unlock").status_code == 302
    assert Portal(client_for(app)).login("bob").status_code == 302
    assert _audit(app, "user.unlock")[0].actor == "alice"
    again = admin.api("POST", f"/api/v1/users/{bob}/unlock")
    assert again.status_code == 409  # not locked any more
    for _ in range(5):
        Portal(client_for(app)).login("bob", "wrong password!")
    unlocked = admin.api("POST", f"/api/v1/users/{bob}/unlock")
    assert unlocked.status_code == 200 and unlocked.json["locked_until"] is None
    assert Portal(client_for(app)).login("bob").status_code == 302


def test_a_forced_password_change_offers_no_link_that_bounces_and_states_the_rule(app, admin):
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        bob.must_change_password = True
        db.session.commit()
    forced = Portal(client_for(app))
    forced.login("bob")
    page = forced.client.get("/change-password").get_data(as_text=True)
    header = page.split("</header>")[0]
    for path in ("/", "/preferences", "/account/security"):
        assert f'href="{path}"' not in header, path  # each would send them back here
    assert "Sign out" in header
    assert "hard to guess" in page and "user name" in page
    weak = forced.post(
        "/change-password",
        {
            "current_password": PASSWORD,
            "new_password": "password1234",
            "confirm_password": "password1234",
        },
    )
    assert weak.status_code == 400
