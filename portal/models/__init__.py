"""Database models. Portable SQL only: the same models run on SQLite and PostgreSQL.

One module per area: `people` (users, groups, grants, sessions, second factors, tokens),
`estate` (environments, endpoints, credentials, history, sync runs, actions), `records`
(audit, metadata, notifications); `base` holds the shared names."""

from .base import GROUP_SOURCES, LEVELS, ROLE_RANK, ROLES, SIGN_IN_SOURCES, SOURCES, utcnow
from .estate import (
    AttentionFinding,
    Credential,
    CredentialAction,
    CredentialActionItem,
    Endpoint,
    Environment,
    PasswordHistory,
    SyncRun,
)
from .people import (
    ApiToken,
    EnvironmentGrant,
    Group,
    GroupMember,
    LoginFailure,
    Passkey,
    RateWindow,
    RecoveryCode,
    SignInProvider,
    User,
    UserSession,
)
from .records import (
    AuditCheckpoint,
    AuditDestination,
    AuditEvent,
    CredentialSighting,
    NotificationChannel,
    NotificationDelivery,
    NotificationOutbox,
    PortalMeta,
)

__all__ = [
    "AttentionFinding",
    "ApiToken",
    "AuditCheckpoint",
    "AuditDestination",
    "AuditEvent",
    "Credential",
    "CredentialAction",
    "CredentialActionItem",
    "CredentialSighting",
    "Endpoint",
    "Environment",
    "EnvironmentGrant",
    "GROUP_SOURCES",
    "Group",
    "GroupMember",
    "LEVELS",
    "LoginFailure",
    "NotificationChannel",
    "NotificationDelivery",
    "NotificationOutbox",
    "Passkey",
    "PasswordHistory",
    "PortalMeta",
    "ROLES",
    "ROLE_RANK",
    "RateWindow",
    "RecoveryCode",
    "SIGN_IN_SOURCES",
    "SOURCES",
    "SignInProvider",
    "SyncRun",
    "User",
    "UserSession",
    "utcnow",
]
