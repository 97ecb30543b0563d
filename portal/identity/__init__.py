"""Identity: who someone is and how they prove it. Local users and their passwords
(`users`, `signin`: lockout and throttling), server-side sessions (`sessions`), second
factors (`second_factor`), API tokens (`tokens`), and directory sign-in (`directory`: LDAP,
Active Directory, OpenID Connect).
"""
