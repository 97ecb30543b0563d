"""The test slapd of ldap_server.py: TLS with its own CA, binds, groups with memberOf, locking."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPBindError, LDAPSocketOpenError, LDAPStartTLSError
from ldap_server import Slapd, SlapdError, slapd_binary, start_slapd

# Each test starts a slapd process: e2e, like every test that starts a server process.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        slapd_binary() is None, reason="slapd is not installed (apt-get install slapd ldap-utils)"
    ),
]

PASSWORD = "Alice-Pa55word"


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    with start_slapd(tmp_path / "slapd") as server:
        yield server


def who_am_i(conn: ldap3.Connection) -> str:
    """The bound identity the server reports (RFC 4532), then the connection is closed."""
    try:
        return conn.extend.standard.who_am_i()
    finally:
        conn.unbind()


def test_ldaps_bind_verifies_the_server_against_its_ca(slapd):
    dn = slapd.add_user("alice", PASSWORD, cn="Alice Example", mail="alice@example.test")
    assert dn == "uid=alice,ou=people,dc=example,dc=test"
    assert slapd.url_ldaps == f"ldaps://127.0.0.1:{slapd.port_ldaps}"
    assert slapd.ca_path.read_text() == slapd.ca_pem
    assert slapd.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    conn = slapd.connect_user("alice", PASSWORD)
    assert conn.server.ssl and conn.server.port == slapd.port_ldaps
    assert who_am_i(conn) == f"dn:{dn}"


def test_starttls_on_the_plain_port(slapd):
    dn = slapd.add_user("alice", PASSWORD)
    conn = slapd.connect_user("alice", PASSWORD, transport="starttls")
    assert conn.tls_started and not conn.server.ssl
    assert conn.server.port == slapd.port_ldap
    assert who_am_i(conn) == f"dn:{dn}"


def test_the_certificate_is_refused_without_the_ca(slapd):
    dn = slapd.add_user("alice", PASSWORD)
    untrusting = slapd.tls(trust_ca=False)
    with pytest.raises(LDAPSocketOpenError, match="CERTIFICATE_VERIFY_FAILED"):
        slapd.connect(dn, PASSWORD, tls=untrusting)
    with pytest.raises(LDAPStartTLSError, match="CERTIFICATE_VERIFY_FAILED"):
        slapd.connect(dn, PASSWORD, transport="starttls", tls=untrusting)


def test_a_wrong_password_or_an_unknown_user_is_refused(slapd):
    slapd.add_user("alice", PASSWORD)
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        slapd.connect_user("alice", "not-the-password")
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        slapd.connect_user("nobody", PASSWORD, transport="starttls")


def test_set_password_replaces_the_password_and_stores_it_hashed(slapd):
    slapd.add_user("alice", PASSWORD)
    slapd.set_password("alice", "Another-Pa55word")
    with pytest.raises(LDAPBindError):
        slapd.connect_user("alice", PASSWORD)
    who_am_i(slapd.connect_user("alice", "Another-Pa55word"))
    slapd.admin.search(
        slapd.user_dn("alice"), "(objectClass=*)", ldap3.BASE, attributes=["userPassword"]
    )
    stored = slapd.admin.response[0]["attributes"]["userPassword"]
    assert len(stored) == 1 and stored[0].startswith("{SSHA}")


def test_the_service_account_reads_users_and_groups_and_anonymous_reads_nothing(slapd):
    alice = slapd.add_user("alice", PASSWORD, mail="alice@example.test")
    group = slapd.add_group("admins", ["alice"])
    conn = slapd.connect(slapd.service_dn, slapd.service_password)
    try:
        conn.search(
            slapd.people_base, "(uid=alice)", attributes=["mail", "memberOf", "userPassword"]
        )
        [entry] = conn.response
        assert entry["dn"] == alice
        assert entry["attributes"]["mail"] == ["alice@example.test"]
        assert entry["attributes"]["memberOf"] == [group]
        assert not entry["attributes"]["userPassword"]  # never readable
        conn.search(slapd.groups_base, f"(member={alice})", attributes=["cn"])
        assert [e["dn"] for e in conn.response] == [group]
    finally:
        conn.unbind()
    anonymous = ldap3.Connection(slapd.server(), auto_bind=True)
    try:
        anonymous.search(slapd.base_dn, "(objectClass=*)")
        assert anonymous.entries == []
    finally:
        anonymous.unbind()


def test_member_of_follows_the_groups(slapd):
    slapd.add_user("alice", PASSWORD)
    slapd.add_user("bob", PASSWORD)
    admins = slapd.add_group("admins", ["alice"])
    assert slapd.member_of("alice") == [admins]
    assert slapd.member_of("bob") == []
    readers = slapd.add_group("readers")  # no member: the placeholder holds the group
    assert slapd.members("readers") == [slapd.placeholder_member]
    slapd.add_member("readers", "bob")
    slapd.add_member("readers", "alice")
    assert slapd.members("readers") == [slapd.user_dn("bob"), slapd.user_dn("alice")]
    assert slapd.member_of("alice") == sorted([admins, readers])
    assert slapd.member_of("bob") == [readers]
    slapd.remove_member("readers", "alice")
    assert slapd.member_of("alice") == [admins]
    slapd.remove_member("readers", "bob")
    assert slapd.member_of("bob") == []
    assert slapd.members("readers") == [slapd.placeholder_member]
    slapd.delete_group("admins")
    assert slapd.member_of("alice") == []


def test_a_locked_user_cannot_bind_until_unlocked(slapd):
    slapd.add_user("alice", PASSWORD)
    slapd.lock_user("alice")
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        slapd.connect_user("alice", PASSWORD)
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        slapd.connect_user("alice", PASSWORD, transport="starttls")
    slapd.unlock_user("alice")
    who_am_i(slapd.connect_user("alice", PASSWORD))
    slapd.unlock_user("alice")  # unlocking an unlocked user changes nothing
    who_am_i(slapd.connect_user("alice", PASSWORD))


def test_a_deleted_user_cannot_bind_and_leaves_their_groups(slapd):
    slapd.add_user("alice", PASSWORD)
    slapd.add_user("bob", PASSWORD)
    slapd.add_group("admins", ["alice", "bob"])
    slapd.add_group("solo", ["alice"])
    slapd.delete_user("alice")
    with pytest.raises(LDAPBindError, match="invalidCredentials"):
        slapd.connect_user("alice", PASSWORD)
    # refint updates the groups just after the deletion has been answered.
    deadline = time.monotonic() + 5
    while slapd.members("solo") != [slapd.placeholder_member] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slapd.members("admins") == [slapd.user_dn("bob")]
    assert slapd.members("solo") == [slapd.placeholder_member]


def test_two_servers_side_by_side_and_stopped(tmp_path):
    with start_slapd(tmp_path / "one") as one, start_slapd(tmp_path / "two") as two:
        assert {one.port_ldap, one.port_ldaps}.isdisjoint({two.port_ldap, two.port_ldaps})
        assert one.ca_pem != two.ca_pem
        one.add_user("alice", PASSWORD)
        with pytest.raises(LDAPBindError):
            two.connect_user("alice", PASSWORD)
        who_am_i(one.connect_user("alice", PASSWORD))
    assert one.process.returncode is not None and two.process.returncode is not None


def test_a_port_taken_meanwhile_is_retried_on_new_ports(tmp_path, monkeypatch):
    import ldap_server

    real = ldap_server._free_ports
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        offers = [[busy, real(1)[0]]]
        monkeypatch.setattr(
            ldap_server, "_free_ports", lambda n: offers.pop() if offers else real(n)
        )
        with start_slapd(tmp_path) as server:
            assert server.port_ldap != busy
            assert "Address already in use" in server.log
            slapd_answers = server.connect(server.service_dn, server.service_password)
            who_am_i(slapd_answers)


def test_a_failed_start_reports_what_slapd_said(tmp_path, monkeypatch):
    import ldap_server

    monkeypatch.setattr(ldap_server, "SCHEMAS", ("core", "no-such-schema"))
    with pytest.raises(SlapdError, match='could not stat config file ".*/no-such-schema.schema"'):
        start_slapd(tmp_path)
