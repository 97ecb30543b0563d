"""Sign-in through a directory (LDAP, Active Directory) or an OpenID Provider.

options.py: the stored settings; ldap.py and oidc.py: the protocol clients (no database);
accounts.py: the portal accounts they sign in, their groups, and the periodic check.
"""
