"""How an LDAP entry's attributes are read: who it is for good (objectGUID, entryUUID, the DN)
and whether the directory has disabled it (Active Directory's flags and expiry, OpenLDAP's
administrative lock). The directory itself is exercised in tests/test_directory_ldap.py."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from portal.identity.directory import account_state as states
from portal.identity.directory.account_state import disabled
from portal.identity.directory.ldap import _stable_id

NOW = dt.datetime(2026, 12, 4, 12, 0)


def _filetime(when: dt.datetime) -> bytes:
    return str(int((when - dt.datetime(1601, 1, 1)).total_seconds() * 10_000_000)).encode()


def test_the_stable_id_prefers_the_directorys_own_ids():
    guid = uuid.uuid4()
    assert _stable_id("CN=x,DC=corp", {"objectGUID": [guid.bytes_le]}) == f"objectGUID:{guid}"
    assert (
        _stable_id("uid=x,dc=example", {"entryUUID": [b"0C84736C-8479-1041-8177-4134661CE834"]})
        == "entryUUID:0c84736c-8479-1041-8177-4134661ce834"
    )
    assert _stable_id("UID=x, DC=Example", {}) == "dn:uid=x,dc=example"


def test_active_directory_flags_and_expiry():
    assert disabled({"userAccountControl": [b"514"]}, NOW)  # NORMAL_ACCOUNT | ACCOUNTDISABLE
    assert not disabled({"userAccountControl": [b"512"]}, NOW)
    past, future = NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30)
    assert disabled({"accountExpires": [_filetime(past)]}, NOW)
    assert not disabled({"accountExpires": [_filetime(future)]}, NOW)
    assert not disabled({"accountExpires": [b"0"]}, NOW)
    assert not disabled({"accountExpires": [b"9223372036854775807"]}, NOW)
    assert not disabled({"accountExpires": [b"garbage"]}, NOW)


def test_openldap_administrative_lock_only():
    assert disabled({"pwdAccountLockedTime": [b"000001010000Z"]}, NOW)
    # A temporary lockout (a time) is the bind's business: the account is not disabled.
    assert not disabled({"pwdAccountLockedTime": [b"20261204115500Z"]}, NOW)
    assert not disabled({}, NOW)


def test_a_dn_longer_than_the_column_is_named_by_its_digest():
    long_dn = "uid=x," + ",".join(f"ou=unit{n}" for n in range(80)) + ",dc=example"
    named = _stable_id(long_dn, {})
    assert named.startswith("dn-sha256:") and len(named) < 100
    assert named == _stable_id(long_dn.upper(), {})  # the same entry, however spelled


# Active Directory's answer to a bind: invalidCredentials, the reason in "data ...".
AD_BIND = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {}, v4563"


@pytest.mark.parametrize("code", ["773", "701", "532", "533"])
def test_active_directory_account_states_are_not_wrong_passwords(code):
    result = {"result": 49, "description": "invalidCredentials", "message": AD_BIND.format(code)}
    state = states.account_state(result)
    assert state is not None and state.code == code
    assert state.reason == states.AD_ACCOUNT_STATES[code]


def test_a_wrong_password_stays_a_wrong_password():
    assert states.account_state({"result": 49, "message": AD_BIND.format("52e")}) is None
    assert states.account_state({"result": 49, "message": ""}) is None  # OpenLDAP: nothing more
    assert states.account_state({"result": 0, "message": "data 773,"}) is None
