"""Dual control's model layer and services on SQLite and PostgreSQL: rule matching, the
global default, the gate (windows, check-outs held by another), one active check-out per
credential, requests through their life, and what a deleted credential takes with it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from support import PASSWORD, make_app

from portal.control import gate, jobs, policies
from portal.control import requests as control
from portal.environments.service import save_environment
from portal.models import (
    AccessPolicy,
    AccessRequest,
    Credential,
    CredentialCheckout,
    Environment,
    EnvironmentGrant,
    Group,
    GroupMember,
    User,
)
from portal.platform import clock
from portal.platform.extensions import db
from portal.platform.security import hash_password


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def estate(request, tmp_path):
    """A portal on each database with two environments, three credentials and three people."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    app = make_app(tmp_path, **({"DATABASE_URL": url} if url else {}))
    with app.app_context():
        envs = []
        for name in ("sfo", "lax"):
            env, _ = save_environment(
                {
                    "name": name,
                    "manager": {"host": f"{name}.example", "username": "u", "password": "x"},
                }
            )
            envs.append(env)
        db.session.flush()
        for name, role in (("alice", "admin"), ("bob", "readonly"), ("carl", "admin")):
            db.session.add(User(username=name, role=role, password_hash=hash_password(PASSWORD)))
        for env in envs:
            for host, user, rtype, atype in (
                ("esx-1", "root", "ESXI", "USER"),
                ("vc-1", "administrator@vsphere.local", "VCENTER", "SSO"),
                ("esx-1", "svc-backup", "ESXI", "SERVICE"),
            ):
                db.session.add(
                    Credential(
                        environment_id=env.id,
                        source="manager",
                        hostname=host,
                        username=user,
                        resource_type=rtype,
                        account_type=atype,
                        credential_type="SSH",
                    )
                )
        db.session.commit()
        yield app
        db.session.remove()
        db.engine.dispose()


def _cred(env_name: str, username: str) -> Credential:
    env = db.session.scalar(select(Environment).where(Environment.name == env_name))
    return db.session.scalar(
        select(Credential).where(
            Credential.environment_id == env.id, Credential.username == username
        )
    )


def _user(name: str) -> User:
    return db.session.scalar(select(User).where(User.username == name))


def test_rules_match_by_field_wildcard_and_case_and_add_up(estate):
    with estate.app_context():
        sfo = db.session.scalar(select(Environment).where(Environment.name == "sfo"))
        policies.set_rules(
            sfo,
            policies.PolicyIn(
                rules=[
                    {"resource_type": "esxi", "username": "ROOT", "requires": ["approval"]},
                    {"username": "administrator@*", "requires": ["approval"], "break_glass": False},
                    {"account_type": "SERVICE", "requires": ["checkout"]},
                    {"resource_type": "ESXI", "requires": ["checkout"]},
                ]
            ),
            "alice",
        )
        policies.set_rules(None, policies.PolicyIn(rules=[{"requires": ["approval"]}]), "alice")
        db.session.commit()
        creds = db.session.scalars(select(Credential).order_by(Credential.id)).all()
        found = gate.matches_for(creds)
        by_name = {(c.environment_id, c.username): found[c.id] for c in creds}
        root = by_name[(sfo.id, "root")]
        assert root.requires == ("approval", "checkout") and root.break_glass
        sso = by_name[(sfo.id, "administrator@vsphere.local")]
        assert sso.requires == ("approval",) and not sso.break_glass
        # The global default is a minimum: sfo's own rules add to it (approval for all).
        assert by_name[(sfo.id, "svc-backup")].requires == ("approval", "checkout")
        # lax has no rules of its own: the global default (everything needs approval).
        lax = [m for (env_id, _), m in by_name.items() if env_id != sfo.id]
        assert {m.requires for m in lax} == {("approval",)}
        assert len(db.session.scalars(select(AccessPolicy)).all()) == 5


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("root", "ROOT", True),
        ("root", "root2", False),
        ("administrator@*", "Administrator@vsphere.local", True),
        ("*@vsphere.local", "admin@vsphere.local", True),
        ("*@vsphere.local", "admin@vsphere.locals", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "acb", False),
        ("ab*ba", "aba", False),  # head and tail may not overlap
        ("*", "", True),
        ("**", "x", True),
        ("a*a*a", "aaa", True),
        ("a*a*a", "aa", False),
    ],
)
def test_username_patterns_match_as_globs(pattern, value, expected):
    assert policies.glob_match(pattern, value) is expected


def test_username_patterns_take_linear_time_and_few_stars():
    # A pattern and a value that make a backtracking matcher take exponential time.
    started = time.perf_counter()
    assert not policies.glob_match("a*a*a*a*a*a*a*a*b", "a" * 5000)
    assert time.perf_counter() - started < 0.5
    policies.Rule(username="*a*a*a*a*a*a*a*", requires=["approval"])  # 8: the most allowed
    with pytest.raises(ValidationError, match="at most 8"):
        policies.Rule(username="a*" * 9, requires=["approval"])


def test_the_gate_windows_and_a_checkout_held_by_another(estate):
    with estate.app_context():
        sfo = db.session.scalar(select(Environment).where(Environment.name == "sfo"))
        root, bob, alice, carl = _cred("sfo", "root"), _user("bob"), _user("alice"), _user("carl")
        assert gate.needs(bob, root) == []  # no rule yet (and the answer is cached)
        policies.set_rules(
            sfo, policies.PolicyIn(rules=[{"username": "root", "requires": ["approval"]}]), "alice"
        )
        assert gate.needs(bob, root) == ["approval"]
        req = control.create(bob, root, control.AccessRequestIn(reason="disk", minutes=15))
        with pytest.raises(control.RequestError) as own:
            control.approve(bob, req, None)
        assert own.value.status == 403
        control.approve(alice, req, "go")
        db.session.commit()
        assert gate.needs(bob, root) == []
        assert gate.needs(carl, root) == ["approval"]  # the window is bob's alone
        # Another person's check-out: exclusive, whatever the policy says.
        db.session.add(
            CredentialCheckout(
                credential_id=root.id,
                environment_id=sfo.id,
                holder_id=carl.id,
                holder_name="carl",
                due_at=clock.now() + timedelta(minutes=30),
            )
        )
        db.session.commit()
        assert gate.needs(bob, root) == ["checkout"]
        details = gate.refusal_details(root, ["checkout"])
        assert details["held_by"] == "carl" and details["until"].endswith("Z")
        assert gate.needs(carl, root) == ["approval"]
        # At most one active check-out per credential, on both databases.
        db.session.add(
            CredentialCheckout(
                credential_id=root.id,
                environment_id=sfo.id,
                holder_id=bob.id,
                holder_name="bob",
                due_at=clock.now() + timedelta(minutes=30),
            )
        )
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()
        # The export's view: the same answer for many at once.
        rows = db.session.scalars(select(Credential).where(Credential.environment_id == sfo.id))
        assert gate.withheld(bob, rows) == {root.id: ["checkout"]}


def test_requests_end_by_themselves_and_go_with_their_credential(estate):
    with estate.app_context():
        policies.set_rules(None, policies.PolicyIn(rules=[{"requires": ["approval"]}]), "alice")
        bob, alice = _user("bob"), _user("alice")
        root, sso = _cred("lax", "root"), _cred("lax", "administrator@vsphere.local")
        asked = control.create(bob, root, control.AccessRequestIn(reason="a", minutes=5))
        glass = control.create(
            bob, sso, control.AccessRequestIn(reason="b", minutes=5, break_glass=True)
        )
        db.session.commit()
        assert [r["state"] for r in control.listing(alice, "pending", False)] == ["pending"]
        # alice decides bob's pending request and reviews his break-glass window.
        assert control.inbox_counts(alice) == (1, 1) and control.inbox_count(alice) == 2
        assert control.inbox_count(bob) == 0
        assert "alice" in control.approvers(root.environment_id, besides=bob.id)
        clock.offset += timedelta(days=2)
        try:
            assert jobs.close_expired() == {"expired": 1, "closed": 1}
        finally:
            clock.offset -= timedelta(days=2)
        db.session.expire_all()
        assert db.session.get(AccessRequest, asked.id).state == "expired"
        assert db.session.get(AccessRequest, glass.id).state == "closed"
        assert _cred("lax", "administrator@vsphere.local").rotation_due_reason == "break_glass"
        # A break-glass window closed by a new password still owes a rotation: the new
        # password may have been set by the requester while the window was open.
        sso_id = _cred("lax", "administrator@vsphere.local").id
        db.session.get(Credential, sso_id).rotation_due_since = None
        again = control.create(
            bob,
            db.session.get(Credential, sso_id),
            control.AccessRequestIn(reason="c", minutes=5, break_glass=True),
        )
        db.session.get(Credential, sso_id).last_changed_at = clock.now() + timedelta(seconds=1)
        db.session.commit()
        assert jobs.close_expired()["closed"] == 1
        assert db.session.get(AccessRequest, again.id).closed_reason == "credential changed"
        assert db.session.get(Credential, sso_id).rotation_due_reason == "break_glass"
        assert db.session.get(Credential, sso_id).rotation_due_since is not None
        # And so does one ended by hand after the password changed.
        db.session.get(Credential, sso_id).rotation_due_since = None
        third = control.create(
            bob,
            db.session.get(Credential, sso_id),
            control.AccessRequestIn(reason="d", minutes=5, break_glass=True),
        )
        db.session.get(Credential, sso_id).last_changed_at = clock.now() + timedelta(seconds=2)
        control.revoke(bob, third, None)
        db.session.commit()
        assert db.session.get(Credential, sso_id).rotation_due_since is not None
        events = db.session.scalars(select(AccessRequest.id)).all()
        assert len(events) == 4
        db.session.delete(_cred("lax", "root"))
        db.session.commit()
        left = db.session.scalars(select(AccessRequest.id).order_by(AccessRequest.id)).all()
        assert left == [glass.id, again.id, third.id]


def _decide_elsewhere(app, req_id: int, step, who: str, reason: str | None) -> None:
    """Another person's request, on a session of its own (its own application context),
    committed."""
    with app.app_context():
        step(_user(who), db.session.get(AccessRequest, req_id), reason)
        db.session.commit()


@pytest.mark.parametrize(
    ("first", "second", "final"),
    [
        ((control.deny, "carl", "no"), (control.approve, "alice", None), "denied"),
        ((control.approve, "carl", None), (control.deny, "alice", "no"), "approved"),
        ((control.revoke, "bob", None), (control.approve, "alice", None), "cancelled"),
        ((control.approve, "carl", None), (control.revoke, "bob", None), "approved"),
    ],
    ids=["deny-then-approve", "approve-then-deny", "cancel-then-approve", "approve-then-cancel"],
)
def test_two_decisions_at_once_the_second_loses_with_409(estate, first, second, final):
    with estate.app_context():
        policies.set_rules(None, policies.PolicyIn(rules=[{"requires": ["approval"]}]), "alice")
        root = _cred("sfo", "root")
        req = control.create(_user("bob"), root, control.AccessRequestIn(reason="a", minutes=5))
        db.session.commit()
        # This session read the request while it was pending...
        stale = db.session.get(AccessRequest, req.id)
        assert stale.state == "pending"
        people = {name: _user(name) for name in ("alice", "bob", "carl")}
        # ...and another person's session decided (or ended) it meanwhile.
        step, who, reason = first
        _decide_elsewhere(estate, req.id, step, who, reason)
        step, who, reason = second
        with pytest.raises(control.RequestError) as lost:
            step(people[who], stale, reason)
        assert lost.value.status == 409
        db.session.rollback()
        db.session.expire_all()
        after = db.session.get(AccessRequest, req.id)
        assert after.state == final
        assert after.decider_name == (None if first[1] == "bob" else first[1])


def test_two_approvers_at_the_same_moment_one_wins(estate):
    """Truly concurrent: the second UPDATE waits for the first transaction, then finds the
    request no longer pending."""
    with estate.app_context():
        policies.set_rules(None, policies.PolicyIn(rules=[{"requires": ["approval"]}]), "alice")
        req = control.create(
            _user("bob"), _cred("sfo", "root"), control.AccessRequestIn(reason="a", minutes=5)
        )
        db.session.commit()
        req_id = req.id
    outcomes: dict[str, object] = {}
    started = threading.Barrier(2)

    def decide(who: str, step, reason: str | None) -> None:
        with estate.app_context():
            mine = db.session.get(AccessRequest, req_id)
            assert mine.state == "pending"
            started.wait(timeout=10)
            try:
                step(_user(who), mine, reason)
                time.sleep(0.3)  # hold the row a moment: the other one is waiting now
                db.session.commit()
                outcomes[who] = "won"
            except control.RequestError as exc:
                db.session.rollback()
                outcomes[who] = exc.status
            finally:
                db.session.remove()

    threads = [
        threading.Thread(target=decide, args=("alice", control.approve, None)),
        threading.Thread(target=decide, args=("carl", control.deny, "no")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(map(str, outcomes.values())) == ["409", "won"], outcomes
    with estate.app_context():
        final = db.session.get(AccessRequest, req_id)
        winner = next(who for who, outcome in outcomes.items() if outcome == "won")
        assert final.decider_name == winner
        assert final.state == ("approved" if winner == "alice" else "denied")


def test_reasons_are_trimmed_and_refuse_control_characters_and_a_ticket_is_one_line():
    assert control.DecisionIn(reason="  looks fine \n").reason == "looks fine"
    assert control.DecisionIn(reason="   ").reason is None  # a denial then asks for one
    assert control.DecisionIn(reason="two\nlines").reason == "two\nlines"
    for bad in ("bell\a", "escape\x1b[31m", "del\x7f"):
        with pytest.raises(ValidationError, match="no control characters"):
            control.DecisionIn(reason=bad)
    asked = control.AccessRequestIn(reason=" why ", minutes=5, ticket="  CHG-1 ")
    assert (asked.reason, asked.ticket) == ("why", "CHG-1")
    assert control.AccessRequestIn(reason="why", minutes=5, ticket="  ").ticket is None
    for ticket in ("CHG-1\nINJECTED", "CHG\t1"):
        with pytest.raises(ValidationError, match="one line"):
            control.AccessRequestIn(reason="why", minutes=5, ticket=ticket)


def test_approvers_are_read_in_one_query_and_match_the_approve_level(estate):
    with estate.app_context():
        sfo = db.session.scalar(select(Environment).where(Environment.name == "sfo"))
        lax = db.session.scalar(select(Environment).where(Environment.name == "lax"))
        people = {}
        for name, role, disabled in (
            ("dave", "member", False),  # approve on sfo through a group
            ("erin", "member", False),  # approve on lax, a grant of her own
            ("fay", "readonly", False),  # reveal only: never an approver
            ("gus", "member", False),  # admin through a group's role
            ("hal", "admin", True),  # disabled
        ):
            people[name] = User(
                username=name, role=role, disabled=disabled, password_hash=hash_password(PASSWORD)
            )
            db.session.add(people[name])
        ops, admins = Group(name="ops", role="member"), Group(name="admins", role="admin")
        db.session.add_all([ops, admins])
        db.session.flush()
        db.session.add_all(
            [
                GroupMember(group_id=ops.id, user_id=people["dave"].id),
                GroupMember(group_id=admins.id, user_id=people["gus"].id),
                EnvironmentGrant(environment_id=sfo.id, group_id=ops.id, level="approve"),
                EnvironmentGrant(environment_id=lax.id, user_id=people["erin"].id, level="manage"),
                EnvironmentGrant(environment_id=lax.id, user_id=people["fay"].id, level="reveal"),
            ]
        )
        db.session.commit()
        bob_id, ids = _user("bob").id, {"sfo": sfo.id, "lax": lax.id}
        statements = []

        def count(*_args):
            statements.append(1)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            found = {
                name: control.approvers(env_id, besides=bob_id) for name, env_id in ids.items()
            }
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert found == {
            "sfo": ["admin", "alice", "carl", "dave", "gus"],
            "lax": ["admin", "alice", "carl", "erin", "gus"],
        }
        assert len(statements) == 2  # one per environment
        everyone = db.session.scalars(select(User).where(User.disabled.is_(False))).all()
        for env in (sfo, lax):
            expected = sorted(u.username for u in everyone if control.may_approve(u, env.id))
            assert control.approvers(env.id) == expected
        assert "alice" not in control.approvers(sfo.id, besides=_user("alice").id)


def test_a_matcher_gives_what_combine_gives_and_remembers_within_its_bound(monkeypatch):
    """Exports and pages match each distinct combination of fields once; the answers are
    combine's, and a hostile estate of distinct user names cannot grow the memory unbounded."""
    from types import SimpleNamespace

    from portal.control import policies
    from portal.models import AccessPolicy

    rules = [
        AccessPolicy(resource_type="ESXI", username="root", requires="approval", break_glass=True),
        AccessPolicy(username="svc-*", requires="checkout", break_glass=False),
    ]
    calls = []
    real = policies.combine
    monkeypatch.setattr(policies, "combine", lambda r, c: calls.append(c) or real(r, c))
    monkeypatch.setattr(policies, "MATCHER_MEMORY", 3)
    match = policies.matcher(rules)

    def cred(rtype, user):
        return SimpleNamespace(
            resource_type=rtype, credential_type="SSH", account_type="USER", username=user
        )

    cases = [("ESXI", "root"), ("ESXI", "svc-vcf"), ("VCENTER", "root"), ("ESXI", "root")]
    for rtype, user in cases * 3:
        assert match(cred(rtype, user)) == real(rules, cred(rtype, user))
    assert match(cred("ESXI", "root")).requires == ("approval",)
    assert match(cred("ESXI", "svc-vcf")) == policies.Match(("checkout",), False)
    assert len(calls) == 3  # three distinct combinations, each combined once
    for n in range(10):
        match(cred("ESXI", f"user{n}"))
        match(cred("ESXI", f"user{n}"))
    assert len(calls) == 3 + 20  # past its bound it combines again rather than remember more
