"""Names and values shared by the tables: roles, levels, sources, the stored time."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..platform import clock
from ..platform.extensions import db

if TYPE_CHECKING:
    # What type checkers see: SQLAlchemy's declarative base (keyword constructor, __table__);
    # at run time the same class as Flask-SQLAlchemy's db.Model.
    from ..platform.extensions import Base as Model
else:
    Model = db.Model

# Global roles, lowest first: a user's effective role is the highest of their own and their
# groups' (portal/access/grants.py).
ROLES = ("member", "auditor", "readonly", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
# Levels of a grant on one environment, lowest first: `approve` is reveal and may approve
# others' requests for access to sensitive credentials (dual control); manage implies it.
LEVELS = ("view", "reveal", "approve", "manage")
# Where credentials come from: SDDC Manager, the VCF Installer's spec, and (VCF 9) VCF
# Operations fleet management for the management appliances.
SOURCES = ("manager", "installer", "fleet")
# Where an account signs in: a local password, an LDAP / Active Directory bind, or an OpenID
# Provider. Directory and OIDC accounts are created at their first sign-in.
SIGN_IN_SOURCES = ("local", "ldap", "oidc")
# A group is managed on the Users page ("local"), or filled at each sign-in from the groups the
# LDAP directory ("ldap") or the OpenID Provider ("oidc") names: each source fills only its own.
GROUP_SOURCES = ("local", "ldap", "oidc")


def utcnow() -> datetime:
    """Current UTC time, naive, as stored in the database."""
    return clock.now()
