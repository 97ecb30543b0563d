"""What a directory entry or a refused bind says about the account, apart from the password:
disabled, expired or locked (Active Directory's userAccountControl, accountExpires and the
sub-codes of invalidCredentials; OpenLDAP's password policy), and Active Directory's
primary group, which no member list names."""

from __future__ import annotations

import datetime as dt
import re

# Active Directory: userAccountControl bit 2 is ACCOUNTDISABLE.
_AD_DISABLED = 0x2
# OpenLDAP ppolicy: pwdAccountLockedTime with this value locks until an administrator unlocks.
_PERMANENT_LOCK = b"000001010000Z"
# Active Directory's accountExpires: FILETIME (100 ns since 1601); this value means never.
_AD_NEVER = 0x7FFFFFFFFFFFFFFF
_AD_EPOCH = dt.datetime(1601, 1, 1)


class AccountState(Exception):
    """The directory took the password as right but will not let the account in for now
    (Active Directory: must change the password, password or account expired, disabled,
    locked). Not a wrong password: `reason` says what to do."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# Active Directory's sub-codes of invalidCredentials ("... AcceptSecurityContext error, data
# 773, v4563"). 52e is a wrong password: that one stays a wrong password.
AD_ACCOUNT_STATES = {
    "530": "Sign-in is not allowed at this time for your account (logon hours).",
    "531": "Your account may not sign in from this computer (workstation restriction).",
    "532": "Your password has expired. Change it (in Windows or with your directory's tools), "
    "then sign in.",
    "533": "Your account is disabled in the directory. Ask an administrator.",
    "701": "Your account has expired in the directory. Ask an administrator.",
    "773": "You must change your password before signing in. Change it (in Windows or with your "
    "directory's tools), then sign in.",
    "775": "Your account is locked in the directory. Wait, or ask an administrator.",
}
_AD_DATA = re.compile(r"\bdata ([0-9a-f]{3}),", re.IGNORECASE)


def account_state(result: dict) -> AccountState | None:
    """The account state an invalidCredentials answer names, or None (a wrong password)."""
    if (result or {}).get("result") != 49:
        return None
    found = _AD_DATA.search(str((result or {}).get("message") or ""))
    if found is None or found.group(1).lower() not in AD_ACCOUNT_STATES:
        return None
    code = found.group(1).lower()
    return AccountState(code, AD_ACCOUNT_STATES[code])


def raw_int(raw: dict, name: str) -> int | None:
    values = raw.get(name) or []
    text = values[0].decode("ascii", "replace").strip() if values else ""
    return int(text) if text.lstrip("-").isdigit() else None


def _expired(raw: dict, now: dt.datetime) -> bool:
    """Active Directory's accountExpires: 100 ns since 1601, 0 or the largest value for never."""
    ticks = raw_int(raw, "accountExpires")
    if ticks is None or ticks <= 0 or ticks >= _AD_NEVER:
        return False
    try:
        return _AD_EPOCH + dt.timedelta(microseconds=ticks // 10) <= now
    except OverflowError:
        return False


def disabled(raw: dict, now: dt.datetime | None = None) -> bool:
    """True when the directory has disabled the account: Active Directory's ACCOUNTDISABLE
    or a passed accountExpires, or an OpenLDAP administrative lock."""
    control = raw_int(raw, "userAccountControl")
    if control is not None and control & _AD_DISABLED:
        return True
    if _expired(raw, now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)):
        return True
    # OpenLDAP's password policy: this value is a lock an administrator set, which only an
    # administrator lifts; other values are temporary lockouts that the bind itself enforces.
    return any(value == _PERMANENT_LOCK for value in raw.get("pwdAccountLockedTime") or [])


def primary_group_sid(raw: dict) -> bytes | None:
    """Active Directory: the SID of the user's primary group (the user's domain SID and the
    primaryGroupID as its last part), or None. A primary group does not list its members in
    `member`, so neither memberOf nor the nested group search finds it."""
    rid = raw_int(raw, "primaryGroupID")
    sids = raw.get("objectSid") or []
    sid = sids[0] if sids and isinstance(sids[0], bytes) else b""
    # Revision, count of sub-authorities, 6 bytes of authority, then 4 bytes each.
    if rid is None or not 0 < rid < 2**32 or len(sid) < 12 or len(sid) != 8 + 4 * sid[1]:
        return None
    return sid[:-4] + rid.to_bytes(4, "little")
